//! The labelled snapshots' feature distributions, saved with the model: what `monitor`
//! compares each night's features with.
//!
//! Why at training time: the reference of a drift check is what the model learned from,
//! and only the train stage holds those rows. Every feature is kept as counts on ten
//! weighted quantile bins of the training rows (categories by value), so tonight's
//! features, or each shard's, are counted on the same bins (`distribution`). The training
//! rows of sampled snapshots carry weights (`labelled::training_snapshot`); the weighted
//! counts estimate the whole snapshots'.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::data::TrainingData;
use crate::distribution::{Binned, Categories, Histogram};
use crate::error::{Error, PolarsContext, Result};
use crate::features::FEATURES;
use crate::models::FeatureKind;

/// The attachment's name in the model artifact.
pub(crate) const FEATURE_REFERENCE: &str = "feature_reference";

/// Quantile bins per numeric feature.
const BINS: usize = 10;

/// The reference of every feature, over the validation and training snapshots, as JSON.
pub(super) fn of(data: &TrainingData) -> Result<Vec<u8>> {
    let frames = [&data.valid, &data.train];
    let weights: Vec<f64> = frames
        .iter()
        .map(|df| match df.column("weight") {
            Ok(w) => Ok(w.cast(&DataType::Float64).ctx("weight")?.f64().ctx("weight")?.into_no_null_iter().collect()),
            Err(_) => Ok(vec![1.0; df.height()]),
        })
        .collect::<Result<Vec<Vec<f64>>>>()?
        .concat();
    let mut reference = BTreeMap::new();
    for f in FEATURES {
        let column = |df: &DataFrame| df.column(f.name).ctx(format!("the reference of feature {}", f.name)).cloned();
        let binned = match f.kind {
            FeatureKind::Numeric => {
                let mut values: Vec<Option<f64>> = Vec::with_capacity(weights.len());
                for df in frames {
                    let c = column(df)?.cast(&DataType::Float64).ctx(f.name)?;
                    values.extend(c.f64().ctx(f.name)?.iter());
                }
                Binned::Numeric(Histogram::of_quantiles(&values, Some(&weights), BINS))
            }
            FeatureKind::Categorical => {
                let mut values: Vec<Option<String>> = Vec::with_capacity(weights.len());
                for df in frames {
                    let c = column(df)?.cast(&DataType::String).ctx(f.name)?;
                    values.extend(c.str().ctx(f.name)?.iter().map(|v| v.map(str::to_string)));
                }
                Binned::Categorical(Categories::of(values.iter().map(|v| v.as_deref()), Some(&weights)))
            }
        };
        reference.insert(f.name.to_string(), binned);
    }
    serde_json::to_vec(&reference).map_err(Error::internal)
}
