//! The data contract of `shared/contract.md`, as data: the input tables the pipeline
//! reads and the output tables it writes, with their columns, types, nullability and
//! allowed values.
//!
//! Why a table of definitions rather than checks spread over the stages: the generator
//! (`synth`), the validator (`validate`), the readers and the writers all have to agree on
//! the same contract, and a column added here is seen by all of them.

use polars::prelude::*;

/// The logical type of a contract column. Physical variations the contract allows
/// (Utf8 / LargeUtf8 / Utf8View strings, wider integers) are accepted on read and
/// normalised to the listed type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Date,
    /// timestamp[us, UTC]
    Timestamp,
    Bool,
    I8,
    I16,
    I32,
    I64,
    F64,
    /// list<string>
    ListStr,
    /// list<float64>
    ListF64,
}

impl Kind {
    pub fn dtype(self) -> DataType {
        match self {
            Kind::Str => DataType::String,
            Kind::Date => DataType::Date,
            Kind::Timestamp => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
            Kind::Bool => DataType::Boolean,
            Kind::I8 => DataType::Int8,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::F64 => DataType::Float64,
            Kind::ListStr => DataType::List(Box::new(DataType::String)),
            Kind::ListF64 => DataType::List(Box::new(DataType::Float64)),
        }
    }

    /// Whether a physical type found in a file can be read as this kind.
    pub(crate) fn accepts(self, found: &DataType) -> bool {
        use DataType as D;
        match self {
            Kind::Str => matches!(found, D::String),
            Kind::Date => matches!(found, D::Date),
            Kind::Timestamp => matches!(found, D::Datetime(_, _)),
            Kind::Bool => matches!(found, D::Boolean),
            Kind::I8 => found.is_integer(),
            Kind::I16 => found.is_integer(),
            Kind::I32 => found.is_integer(),
            Kind::I64 => found.is_integer(),
            Kind::F64 => found.is_float() || found.is_integer(),
            Kind::ListStr => matches!(found, D::List(inner) if matches!(**inner, D::String)),
            Kind::ListF64 => matches!(found, D::List(inner) if inner.is_float()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    /// Allowed values for enumerated string columns; empty when free.
    pub values: &'static [&'static str],
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind, nullable: false, values: &[] }
}
const fn nullable(name: &'static str, kind: Kind) -> Column {
    Column { name, kind, nullable: true, values: &[] }
}
const fn one_of(name: &'static str, values: &'static [&'static str]) -> Column {
    Column { name, kind: Kind::Str, nullable: false, values }
}
const fn nullable_one_of(name: &'static str, values: &'static [&'static str]) -> Column {
    Column { name, kind: Kind::Str, nullable: true, values }
}

/// How an input table is laid out in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `<root>/<table>/…parquet`: one snapshot, read whole.
    Whole,
    /// `<root>/<table>/dt=YYYY-MM-DD/*.parquet`, `dt` the UTC date of `time_column`.
    Daily { time_column: &'static str },
}

#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub layout: Layout,
    /// Column that must be unique, if any.
    pub key: Option<&'static str>,
    pub columns: &'static [Column],
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The contract's schema, in the contract's column order.
    pub fn schema(&self) -> Schema {
        self.columns.iter().map(|c| Field::new(c.name.into(), c.kind.dtype())).collect()
    }

    /// Cast the contract's columns to their canonical types (wider integers narrowed,
    /// string views and large strings to String, timestamps to µs UTC) and keep only them.
    pub(crate) fn normalize(&self, lf: LazyFrame) -> LazyFrame {
        lf.select(
            self.columns.iter().map(|c| polars::prelude::col(c.name).strict_cast(c.kind.dtype())).collect::<Vec<_>>(),
        )
    }
}

/// True where `column` holds one of `values`.
pub(crate) fn in_set(column: &str, values: &[&str]) -> Expr {
    polars::prelude::col(column).is_in(lit(Series::new("values".into(), values)).implode(false), false)
}

pub(crate) const PLATFORMS: &[&str] = &["ios", "android", "web", "desktop"];
pub(crate) const EVENT_TYPES: &[&str] = &[
    "trial_start",
    "subscribe",
    "renew",
    "cancel",
    "payment_failed",
    "payment_recovered",
    "expire",
    "plan_change",
    "refund",
];
pub(crate) const PLANS: &[&str] = &["free", "premium_individual", "premium_duo", "premium_family", "premium_student"];
pub(crate) const PAYMENT_METHODS: &[&str] = &["card", "paypal", "carrier_billing", "gift_card", "other"];
pub(crate) const FAILURE_REASONS: &[&str] =
    &["insufficient_funds", "expired_card", "card_declined", "processing_error", "fraud_suspected"];
pub(crate) const MESSAGE_TYPES: &[&str] =
    &["premium_education", "winback_offer", "payment_update_reminder", "content_nudge"];
/// The channels a message goes out on; budgets and plans index them in this order.
pub const CHANNELS: [&str; 3] = ["push", "email", "in_app"];
pub(crate) const ARMS: &[&str] = &["treatment", "holdout"];
pub(crate) const GROUPS: &[&str] = &["treatment", "holdout"];

/// Billing events that set premium status (the latest of these decides it).
pub(crate) const STATUS_EVENTS: &[&str] = &["trial_start", "subscribe", "renew", "payment_recovered", "expire"];

pub(crate) const USERS: Table = Table {
    name: "users",
    layout: Layout::Whole,
    key: Some("user_id"),
    columns: &[
        col("user_id", Kind::Str),
        col("signup_date", Kind::Date),
        col("country", Kind::Str),
        nullable("timezone", Kind::Str),
        nullable("birth_year", Kind::I16),
        one_of("signup_platform", PLATFORMS),
        col("push_opt_in", Kind::Bool),
        col("email_opt_in", Kind::Bool),
    ],
};

pub(crate) const ACTIVITY: Table = Table {
    name: "activity",
    layout: Layout::Daily { time_column: "date" },
    key: None,
    columns: &[
        col("user_id", Kind::Str),
        col("date", Kind::Date),
        col("ms_played", Kind::I64),
        col("streams", Kind::I32),
        col("skips", Kind::I32),
        col("unique_tracks", Kind::I32),
        col("sessions", Kind::I32),
        col("searches", Kind::I32),
        col("saves", Kind::I32),
        col("podcast_ms", Kind::I64),
        one_of("platform", PLATFORMS),
        nullable("peak_hour", Kind::I8),
    ],
};

pub(crate) const BILLING: Table = Table {
    name: "billing",
    layout: Layout::Daily { time_column: "ts" },
    key: Some("event_id"),
    columns: &[
        col("event_id", Kind::Str),
        col("user_id", Kind::Str),
        col("ts", Kind::Timestamp),
        one_of("event_type", EVENT_TYPES),
        one_of("plan", PLANS),
        nullable("amount", Kind::F64),
        nullable("currency", Kind::Str),
        nullable_one_of("payment_method", PAYMENT_METHODS),
        nullable_one_of("failure_reason", FAILURE_REASONS),
        nullable("attempt", Kind::I16),
        nullable("grace_days", Kind::I16),
        nullable("period_end", Kind::Date),
    ],
};

pub(crate) const MESSAGES: Table = Table {
    name: "messages",
    layout: Layout::Daily { time_column: "ts" },
    key: Some("message_id"),
    columns: &[
        col("message_id", Kind::Str),
        col("user_id", Kind::Str),
        col("ts", Kind::Timestamp),
        col("campaign_id", Kind::Str),
        one_of("message_type", MESSAGE_TYPES),
        one_of("channel", &CHANNELS),
        one_of("arm", ARMS),
        col("propensity", Kind::F64),
        col("delivered", Kind::Bool),
        nullable("opened_at", Kind::Timestamp),
        col("clicked", Kind::Bool),
        col("unsubscribed", Kind::Bool),
    ],
};

pub(crate) const INPUTS: &[Table] = &[USERS, ACTIVITY, BILLING, MESSAGES];

pub const SCORES: Table = Table {
    name: "scores",
    layout: Layout::Whole,
    key: Some("user_id"),
    columns: &[
        col("user_id", Kind::Str),
        col("snapshot_date", Kind::Date),
        col("churn_probability", Kind::F64),
        col("model", Kind::Str),
        col("risk_decile", Kind::I8),
        col("top_reasons", Kind::ListStr),
    ],
};

pub const INTERVENTIONS: Table = Table {
    name: "interventions",
    layout: Layout::Whole,
    key: Some("user_id"),
    columns: &[
        col("user_id", Kind::Str),
        col("snapshot_date", Kind::Date),
        one_of("action", MESSAGE_TYPES),
        one_of("channel", &CHANNELS),
        col("send_at", Kind::Timestamp),
        col("expected_uplift", Kind::F64),
        col("churn_probability", Kind::F64),
        col("priority", Kind::I32),
        one_of("group", GROUPS),
        col("reason", Kind::Str),
    ],
};

pub const GRACE: Table = Table {
    name: "grace",
    layout: Layout::Whole,
    key: Some("user_id"),
    columns: &[
        col("user_id", Kind::Str),
        col("snapshot_date", Kind::Date),
        col("failure_ts", Kind::Timestamp),
        one_of("failure_reason", FAILURE_REASONS),
        col("recommended_grace_days", Kind::I16),
        col("p_recover", Kind::F64),
        col("expected_net_value", Kind::F64),
        col("curve", Kind::ListF64),
    ],
};

pub(crate) const DECISIONS: &[&str] = &["ship", "stop", "keep testing", "invalid"];
pub(crate) const ROLES: &[&str] = &["success", "guardrail"];

/// One row per (campaign_id, message_type, channel, metric) read out at S; the columns after
/// `decision` are this project's own (README, "Readouts").
pub const READOUTS: Table = Table {
    name: "readouts",
    layout: Layout::Whole,
    key: None,
    columns: &[
        col("campaign_id", Kind::Str),
        one_of("message_type", MESSAGE_TYPES),
        one_of("channel", &CHANNELS),
        col("metric", Kind::Str),
        one_of("role", ROLES),
        col("n_treatment", Kind::I64),
        col("n_holdout", Kind::I64),
        nullable("mean_treatment", Kind::F64),
        nullable("mean_holdout", Kind::F64),
        nullable("effect", Kind::F64),
        nullable("ci_low", Kind::F64),
        nullable("ci_high", Kind::F64),
        nullable("p_value", Kind::F64),
        nullable("variance_reduction", Kind::F64),
        nullable("srm_p_value", Kind::F64),
        col("window_closed", Kind::Bool),
        one_of("decision", DECISIONS),
        col("snapshot_date", Kind::Date),
        col("first_send", Kind::Date),
        col("sequential", Kind::Bool),
        nullable("margin", Kind::F64),
        nullable("mde", Kind::F64),
        nullable("expected_effect", Kind::F64),
    ],
};

pub(crate) const STATUSES: &[&str] = &["ok", "warn", "alert"];

/// One row per check at S (README, "Monitoring", lists the checks); `snapshot_date` is this
/// project's own column.
pub const MONITOR: Table = Table {
    name: "monitor",
    layout: Layout::Whole,
    key: None,
    columns: &[
        col("check", Kind::Str),
        col("subject", Kind::Str),
        col("statistic", Kind::Str),
        nullable("value", Kind::F64),
        nullable("threshold", Kind::F64),
        one_of("status", STATUSES),
        col("baseline", Kind::Str),
        col("snapshot_date", Kind::Date),
    ],
};

/// Input rows set aside under `inputs.quarantine_share` (README, "What every command
/// checks"): one row per rule a row breaks. `row` is the whole input row as text
/// (`column=value, …`); `user_id` and `value` are null where the row has none.
pub const QUARANTINE: Table = Table {
    name: "quarantine",
    layout: Layout::Whole,
    key: None,
    columns: &[
        col("table", Kind::Str),
        nullable("user_id", Kind::Str),
        col("column", Kind::Str),
        col("rule", Kind::Str),
        nullable("value", Kind::Str),
        col("row", Kind::Str),
        col("snapshot_date", Kind::Date),
    ],
};
