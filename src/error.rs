//! One error type for the whole pipeline, and the exit codes orchestrators branch on.
//!
//! Every failure is classified by what the caller should do about it, not by which
//! library raised it: fix the data (65), fix the configuration (78), retry later (75),
//! look at the storage (74), or report a bug (70). The classification is the contract documented in the README;
//! the message carries the context (table, file, column, row) a person needs to act.

use std::fmt;

/// Exit codes, following sysexits(3) where one fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every requested output is complete.
    Ok = 0,
    /// The command line could not be parsed (clap's own code).
    Usage = 2,
    /// Every output is complete, and a monitor check reached the level of `--fail-on`.
    Alerted = 3,
    /// The input data breaks the contract.
    DataErr = 65,
    /// A bug or an unexpected internal state.
    Software = 70,
    /// The storage refused an operation for a reason a retry will not fix (an object that
    /// already exists or changed under a conditional write, an operation the backend does
    /// not support).
    IoErr = 74,
    /// A temporary failure (storage unreachable after retries): safe to retry.
    TempFail = 75,
    /// The configuration is invalid (bad key, bad value, bad credentials).
    Config = 78,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing or contradictory command-line argument that clap cannot catch.
    #[error("usage: {0}")]
    Usage(String),

    /// Input data that breaks the contract.
    #[error("bad input data: {0}")]
    Data(String),

    /// Configuration that cannot be used.
    #[error("bad configuration: {0}")]
    Config(String),

    /// Storage that could not be reached or answered with a transient failure.
    #[error("storage unavailable: {context}: {source}")]
    Unavailable {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A storage operation that failed for a non-transient reason.
    #[error("storage: {context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: object_store::Error,
    },

    /// A failure inside the dataframe engine while computing a stage.
    #[error("{context}: {}", first_paragraph(&source.to_string()))]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },

    /// Anything that should not happen.
    #[error("internal error: {0}")]
    Internal(String),

    /// The night is complete, and monitor checks reached the `--fail-on` level.
    #[error("monitor: {0}")]
    Alerted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Polars appends the whole query plan to some errors; a person needs the first lines.
pub(crate) fn first_paragraph(text: &str) -> String {
    let head = text.split("\n\nResolved plan").next().unwrap_or(text);
    let head = head.split("\n\n").next().unwrap_or(head);
    if head.len() > 800 { format!("{}…", &head[..head.floor_char_boundary(800)]) } else { head.to_string() }
}

impl Error {
    pub fn data(msg: impl fmt::Display) -> Self {
        Error::Data(msg.to_string())
    }

    pub fn config(msg: impl fmt::Display) -> Self {
        Error::Config(msg.to_string())
    }

    pub(crate) fn internal(msg: impl fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }

    /// Classify an object_store error: missing objects are bad input, credentials and
    /// permissions are configuration, everything else (network, 5xx, timeouts after
    /// object_store's own retries) is temporary.
    pub(crate) fn from_store(context: impl fmt::Display, source: object_store::Error) -> Self {
        use object_store::Error as E;
        let context = context.to_string();
        if names_a_missing_bucket(&source) {
            return Error::Config(format!("{context}: the bucket does not exist ({source})"));
        }
        match source {
            E::NotFound { .. } => Error::Data(format!("{context}: {source}")),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::UnknownConfigurationKey { .. } => {
                Error::Config(format!("{context}: {source}"))
            }
            E::InvalidPath { .. } => Error::Config(format!("{context}: {source}")),
            E::Generic { .. } | E::JoinError { .. } => Error::Unavailable { context, source: Box::new(source) },
            other => Error::Storage { context, source: other },
        }
    }

    /// Classify a polars error raised while reading or computing: I/O failures are
    /// temporary (remote reads), schema and type problems are bad input.
    pub fn from_polars(context: impl fmt::Display, source: polars::error::PolarsError) -> Self {
        use polars::error::PolarsError as P;
        let context = context.to_string();
        match &source {
            P::IO { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                Error::Data(format!("{context}: {source}"))
            }
            P::IO { error, .. } => {
                // Remote reads wrap object_store's error in an io::Error of kind Other.
                let store =
                    error.get_ref().and_then(|e| e.source()).and_then(|s| s.downcast_ref::<object_store::Error>());
                match store {
                    Some(e) if names_a_missing_bucket(e) => {
                        Error::Config(format!("{context}: the bucket does not exist ({source})"))
                    }
                    Some(object_store::Error::NotFound { .. }) => Error::Data(format!("{context}: {source}")),
                    Some(
                        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. },
                    ) => Error::Config(format!("{context}: {source}")),
                    _ => Error::Unavailable { context, source: Box::new(source) },
                }
            }
            P::ColumnNotFound(_) | P::SchemaMismatch(_) | P::SchemaFieldNotFound(_) | P::Duplicate(_) => {
                Error::Data(format!("{context}: {}", first_paragraph(&source.to_string())))
            }
            _ => Error::Polars { context, source },
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Data(_) => ExitCode::DataErr,
            Error::Config(_) => ExitCode::Config,
            Error::Unavailable { .. } => ExitCode::TempFail,
            Error::Storage { .. } => ExitCode::IoErr,
            Error::Polars { .. } | Error::Internal(_) => ExitCode::Software,
            Error::Alerted(_) => ExitCode::Alerted,
        }
    }

    /// A one-line hint printed after the error for a person at a terminal.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Data(_) => Some("run `retain validate --input <URI>` for a full report of the input problems"),
            Error::Alerted(_) => {
                Some("every output is written; the checks are in monitor/ and reports/snapshot=S/index.html")
            }
            Error::Config(_) => Some("run with `--show-config` to see the resolved settings"),
            Error::Unavailable { .. } => Some("the failure is temporary; the same command can be rerun safely"),
            Error::Storage { .. } => Some(
                "the storage refused the operation and a rerun will not change that: check that no other run \
                 writes to the same output root and that the backend supports the operation",
            ),
            _ => None,
        }
    }
}

/// S3 and GCS answer a request to a bucket that does not exist with the error code
/// `NoSuchBucket`. object_store reports it as a generic failure (listing) or as a missing
/// object (reading), and keeps the status in a type it does not export, so the code is
/// found in the message chain.
fn names_a_missing_bucket(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.to_string().contains("<Code>NoSuchBucket</Code>") {
            return true;
        }
        next = e.source();
    }
    false
}

/// Attach stage context to polars results.
pub(crate) trait PolarsContext<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> PolarsContext<T> for polars::error::PolarsResult<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::from_polars(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_refusal_is_not_called_temporary() {
        let refused = object_store::Error::AlreadyExists {
            path: "out/scores/snapshot=2026-11-20/part-0.parquet".into(),
            source: "exists".into(),
        };
        let err = Error::from_store("committing scores", refused);
        assert_eq!(err.exit_code(), ExitCode::IoErr, "{err}");
        assert!(!err.hint().unwrap_or_default().contains("temporary"), "{:?}", err.hint());
        let unreachable = object_store::Error::Generic { store: "S3", source: "connection refused".into() };
        let err = Error::from_store("listing billing", unreachable);
        assert_eq!(err.exit_code(), ExitCode::TempFail);
        assert!(err.hint().unwrap_or_default().contains("temporary"));
    }
}
