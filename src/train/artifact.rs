//! The stored model: `models/snapshot=S/` holds one file per fitted model (LightGBM's
//! native text model, the logistic coefficients as JSON), named by a hash of its content,
//! then `model.json`, written last, which lists them and makes the artifact complete.
//!
//! Committed like a table: a save never overwrites a file an earlier `model.json` lists
//! (same name, same content), so a kill at any point leaves either the earlier artifact or
//! the new one, never a mix; files no manifest lists (a killed save's) are deleted after
//! the manifest lands. The save holds the folder's write lease, as a table commit does.

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::features::feature_schema_hash;
use crate::models::{Fitted, ModelArtifact, cores};
use crate::storage::Storage;

pub(super) const MODEL_TABLE: &str = "models";
const MANIFEST: &str = "model.json";

pub(super) fn model_dir(s: NaiveDate) -> String {
    format!("{MODEL_TABLE}/snapshot={s}")
}

/// Store the model files, then the manifest (which makes the artifact complete), then the
/// models report.
/// A fitted model's file is named by its content (`churn.gbdt-<hash>.txt`): the names
/// are set here, as the files are written.
pub(crate) fn save(output: &Storage, s: NaiveDate, artifact: &mut ModelArtifact) -> Result<()> {
    let fresh = artifact.reused_from.is_none();
    let dir = model_dir(s);
    output.under_lease(&dir, |lease| {
        if fresh {
            for t in &mut artifact.targets {
                for c in &mut t.candidates {
                    let bytes = c.fitted()?.to_file()?;
                    c.file = content_named(&c.family.file_name(t.target), &bytes);
                    output.write_bytes(&format!("{}/{}", artifact.dir, c.file), bytes.into())?;
                }
            }
        }
        for (name, bytes) in std::mem::take(&mut artifact.pending) {
            let file = content_named(&format!("{name}.json"), &bytes);
            output.write_bytes(&format!("{dir}/{file}"), bytes.into())?;
            artifact.attachments.insert(name, file);
        }
        let body = serde_json::to_vec_pretty(artifact).map_err(Error::internal)?;
        output.write_bytes(&format!("{dir}/{MANIFEST}"), body.into())?;
        // What the manifest does not list: the files of an earlier fit, or of a killed save.
        let listed = |name: &str| {
            name == MANIFEST
                || (fresh && artifact.targets.iter().flat_map(|t| &t.candidates).any(|c| c.file == name))
                || artifact.attachments.values().any(|f| f == name)
        };
        output.remove_unlisted(&dir, lease, listed)
    })?;
    let report = super::report::models_html(artifact, s);
    output.write_bytes(&format!("reports/snapshot={s}/models.html"), report.into_bytes().into())
}

/// `churn.gbdt.txt` and its content → `churn.gbdt-<hash>.txt`.
fn content_named(file: &str, bytes: &[u8]) -> String {
    let digest = xxhash_rust::xxh3::xxh3_64(bytes);
    match file.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}-{digest:016x}.{ext}"),
        None => format!("{file}-{digest:016x}"),
    }
}

fn read_manifest(output: &Storage, s: NaiveDate) -> Result<Option<ModelArtifact>> {
    let rel = format!("{}/{MANIFEST}", model_dir(s));
    if !output.exists(&rel)? {
        return Ok(None);
    }
    let bytes = output.read_bytes(&rel)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::data(format!("{}/{rel} is not a model artifact this version can read: {e}", output.uri())))
}

/// The newest model trained for a snapshot at or before `s`, if any.
pub(super) fn latest_model(output: &Storage, s: NaiveDate) -> Result<Option<ModelArtifact>> {
    let mut dates: Vec<NaiveDate> = output
        .list_dirs(MODEL_TABLE)?
        .iter()
        .filter_map(|d| d.strip_prefix("snapshot=").and_then(|d| d.parse().ok()))
        .filter(|d| *d <= s)
        .collect();
    dates.sort();
    match dates.last() {
        Some(&d) => read_manifest(output, d).or(Ok(None)),
        None => Ok(None),
    }
}

/// Read the fitted models an artifact lists from its folder.
pub(super) fn load_models(output: &Storage, mut artifact: ModelArtifact) -> Result<ModelArtifact> {
    let threads = cores();
    for t in &mut artifact.targets {
        for c in &mut t.candidates {
            let rel = format!("{}/{}", artifact.dir, c.file);
            let bytes = output.read_bytes(&rel)?;
            c.model = Some(Fitted::from_file(c.family, &bytes, threads)?);
        }
    }
    Ok(artifact)
}

/// Load the artifact trained for snapshot `s`, refusing one built on another feature schema.
pub(crate) fn load(output: &Storage, s: NaiveDate) -> Result<ModelArtifact> {
    let rel = format!("{}/{MANIFEST}", model_dir(s));
    let artifact = read_manifest(output, s)?.ok_or_else(|| {
        Error::data(format!(
            "no model for snapshot {s} at {}/{rel}: run `retain train --as-of {s}` first",
            output.uri()
        ))
    })?;
    if artifact.feature_schema_hash != feature_schema_hash() {
        return Err(Error::data(format!(
            "the model at {}/{rel} was trained on feature schema {} but this build computes schema {}: retrain it",
            output.uri(),
            artifact.feature_schema_hash,
            feature_schema_hash()
        )));
    }
    load_models(output, artifact)
}

/// The attachment `name` saved with the model of snapshot `s` (see
/// [`ModelArtifact::attachments`]); a missing one is an input error.
pub(crate) fn attachment(output: &Storage, s: NaiveDate, artifact: &ModelArtifact, name: &str) -> Result<Vec<u8>> {
    let file = artifact.attachments.get(name).ok_or_else(|| {
        Error::data(format!(
            "the model of snapshot {s} under {} has no `{name}` models, which a shard needs: run `retain train --as-of \
             {s}` (or `retain run`) with this version first",
            output.uri()
        ))
    })?;
    Ok(output.read_bytes(&format!("{}/{file}", model_dir(s)))?.to_vec())
}
