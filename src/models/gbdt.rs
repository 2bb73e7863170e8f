//! Gradient-boosted trees: LightGBM through `lightgbm3` (a measured choice: on 1M rows ×
//! 40 features it matched Python LightGBM's AUC and speed with less memory).
//!
//! Training goes through `lightgbm3-sys` because the safe API cannot mark columns as
//! categorical (a dataset parameter that must be given when the dataset is built) and
//! cannot save the best iteration found by early stopping. Prediction uses the safe API on
//! the stored native text model, which also opens in Python LightGBM; TreeSHAP
//! contributions are read from that same text by [`TreeShap`], which gives LightGBM's
//! values for a fraction of its cost.

use std::ffi::{CStr, CString, c_void};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use lightgbm3_sys as sys;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::classifier::Classifier;
use super::treeshap::TreeShap;
use crate::error::{Error, Result};

/// LightGBM settings used for every fit (`[training.gbdt]` in the config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtParams {
    pub num_rounds: u32,
    pub learning_rate: f64,
    pub num_leaves: u32,
    pub min_data_in_leaf: u32,
    pub feature_fraction: f64,
    pub bagging_fraction: f64,
    pub lambda_l2: f64,
    pub early_stopping_rounds: u32,
    /// LightGBM's seed (bagging and feature sampling). Unset, the pipeline derives it from
    /// the run's `seed` ([`lightgbm_seed`]); a fit no run reaches (`retain table`) uses
    /// [`DEFAULT_SEED`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A linear model in each leaf, with this ridge penalty (LightGBM's `linear_tree`):
    /// for effects that change smoothly with a number, which steps of a few leaves fit
    /// coarsely. Not a setting of the pipeline's models, whose trees TreeSHAP explains.
    #[serde(skip)]
    pub linear_leaves: Option<f64>,
}

/// The seed of fits that no run's seed reaches (`retain table`, which has no `--seed`).
pub(crate) const DEFAULT_SEED: u64 = 7;

/// LightGBM's seed for a run's `seed`: LightGBM reads seeds as 32-bit signed integers, so
/// the run's seed is taken modulo 2³¹.
pub(crate) fn lightgbm_seed(seed: u64) -> u64 {
    seed % (1 << 31)
}

impl GbdtParams {
    /// Check every setting's range before any work, so a bad value is a configuration
    /// error (exit 78) and never a failure inside LightGBM hours into a night.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let in_unit = |name: &str, v: f64| -> std::result::Result<(), String> {
            if v > 0.0 && v <= 1.0 { Ok(()) } else { Err(format!("training.gbdt.{name} must be in (0, 1], got {v}")) }
        };
        if !(1..=100_000).contains(&self.num_rounds) {
            return Err(format!("training.gbdt.num_rounds must be in 1..=100000, got {}", self.num_rounds));
        }
        in_unit("learning_rate", self.learning_rate)?;
        if !(2..=131_072).contains(&self.num_leaves) {
            return Err(format!("training.gbdt.num_leaves must be in 2..=131072, got {}", self.num_leaves));
        }
        if self.min_data_in_leaf == 0 {
            return Err("training.gbdt.min_data_in_leaf must be at least 1".into());
        }
        in_unit("feature_fraction", self.feature_fraction)?;
        in_unit("bagging_fraction", self.bagging_fraction)?;
        if !(self.lambda_l2 >= 0.0 && self.lambda_l2.is_finite()) {
            return Err(format!("training.gbdt.lambda_l2 must be a finite number ≥ 0, got {}", self.lambda_l2));
        }
        Ok(())
    }
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            num_rounds: 400,
            learning_rate: 0.05,
            num_leaves: 31,
            min_data_in_leaf: 50,
            feature_fraction: 0.8,
            bagging_fraction: 0.8,
            lambda_l2: 1.0,
            early_stopping_rounds: 30,
            seed: None,
            linear_leaves: None,
        }
    }
}

/// A fitted booster, kept as LightGBM's own text model (the `.txt` file of the artifact).
#[derive(Debug, Clone)]
pub struct GbdtModel {
    pub model: String,
    /// The boosting round kept by early stopping.
    pub best_iteration: u32,
    /// Threads LightGBM's prediction uses, for the models [`TreeShap`] cannot read (the
    /// walk of the others runs on the rayon pool; each row's prediction is the same on
    /// any number of threads).
    pub predict_threads: usize,
    /// The model's trees, read the first time a row is predicted or explained (None:
    /// trees [`TreeShap`] cannot read, such as linear ones; LightGBM predicts those).
    trees: OnceLock<Option<Arc<TreeShap>>>,
}

/// Saved as LightGBM's text model alone; read back with prediction on every core.
impl Serialize for GbdtModel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.model.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GbdtModel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        GbdtModel::from_text(&text, cores).map_err(serde::de::Error::custom)
    }
}

fn check(ret: i32, what: &str) -> Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        // SAFETY: LightGBM returns a pointer to a NUL-terminated thread-local message.
        let msg = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) }.to_string_lossy().into_owned();
        Err(Error::internal(format!("LightGBM {what}: {msg}")))
    }
}

struct Dataset(sys::DatasetHandle);

impl Drop for Dataset {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed once.
        unsafe { sys::LGBM_DatasetFree(self.0) };
    }
}

struct Booster(sys::BoosterHandle);

impl Drop for Booster {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterCreate and is freed once.
        unsafe { sys::LGBM_BoosterFree(self.0) };
    }
}

fn set_field(ds: &Dataset, name: &str, values: &[f32]) -> Result<()> {
    let field = CString::new(name).map_err(Error::internal)?;
    // SAFETY: `values` has one f32 per row of the dataset.
    check(
        unsafe {
            sys::LGBM_DatasetSetField(
                ds.0,
                field.as_ptr(),
                values.as_ptr() as *const c_void,
                values.len() as i32,
                sys::C_API_DTYPE_FLOAT32 as i32,
            )
        },
        &format!("setting {name}"),
    )
}

fn dataset(
    x: &Array2<f64>,
    y: &[f32],
    weights: Option<&[f64]>,
    params: &str,
    reference: Option<&Dataset>,
) -> Result<Dataset> {
    let x = x.as_standard_layout();
    let flat = x.as_slice().ok_or_else(|| Error::internal("design matrix is not contiguous"))?;
    let params = CString::new(params).map_err(Error::internal)?;
    let mut handle = std::ptr::null_mut();
    // SAFETY: `flat` is a row-major f64 buffer of nrows × ncols that outlives the call
    // (LightGBM copies it into its own bins); `handle` receives a new dataset.
    check(
        unsafe {
            sys::LGBM_DatasetCreateFromMat(
                flat.as_ptr() as *const c_void,
                sys::C_API_DTYPE_FLOAT64 as i32,
                x.nrows() as i32,
                x.ncols() as i32,
                1,
                params.as_ptr(),
                reference.map_or(std::ptr::null_mut(), |r| r.0),
                &mut handle,
            )
        },
        "building a dataset",
    )?;
    let ds = Dataset(handle);
    set_field(&ds, "label", y)?;
    if let Some(w) = weights {
        let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        set_field(&ds, "weight", &w)?;
    }
    Ok(ds)
}

/// What a booster learns: a probability (binary log loss), a mean (squared error), or a
/// mean share of targets in [0, 1] (cross-entropy: active days as a share of a window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    Binary,
    Regression,
    CrossEntropy,
}

/// Training rows for a fit: the design matrix, the targets (0/1 for [`Objective::Binary`])
/// and optional per-row weights.
pub struct Rows<'a> {
    pub x: &'a Array2<f64>,
    pub y: &'a [f64],
    pub weights: Option<&'a [f64]>,
}

impl GbdtModel {
    /// Fit on training rows with early stopping on validation rows (binary log loss).
    /// `categorical` lists the columns holding category codes; `threads` bounds LightGBM.
    pub fn fit(
        x: &Array2<f64>,
        y: &[i32],
        x_valid: &Array2<f64>,
        y_valid: &[i32],
        categorical: &[usize],
        params: &GbdtParams,
        threads: usize,
    ) -> Result<Self> {
        let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        let yv: Vec<f64> = y_valid.iter().map(|&v| f64::from(v)).collect();
        Self::fit_rows(
            Objective::Binary,
            &Rows { x, y: &y, weights: None },
            &Rows { x: x_valid, y: &yv, weights: None },
            categorical,
            params,
            threads,
        )
    }

    /// Fit `objective` on weighted rows, stopping early on the (weighted) validation loss.
    pub fn fit_rows(
        objective: Objective,
        train: &Rows,
        valid: &Rows,
        categorical: &[usize],
        params: &GbdtParams,
        threads: usize,
    ) -> Result<Self> {
        let threads = threads.max(1);
        // Every LightGBM call of the fit, from the datasets to the saved model, inside the gate.
        with_thread_count(threads, || {
            let cats = categorical.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
            // Linear leaves need the raw values kept in the dataset, so the dataset is told too.
            let linear = match params.linear_leaves {
                Some(lambda) => format!(" linear_tree=true linear_lambda={lambda}"),
                None => String::new(),
            };
            let dataset_params = format!(
                "max_bin=255 verbosity=-1 seed={seed} num_threads={threads}{cat}{linear}",
                seed = params.seed.unwrap_or(DEFAULT_SEED),
                threads = threads.max(1),
                cat = if cats.is_empty() { String::new() } else { format!(" categorical_feature={cats}") }
            );
            let to_f32 = |v: &[f64]| v.iter().map(|&y| y as f32).collect::<Vec<f32>>();
            let train_ds = dataset(train.x, &to_f32(train.y), train.weights, &dataset_params, None)?;
            let valid_ds = dataset(valid.x, &to_f32(valid.y), valid.weights, &dataset_params, Some(&train_ds))?;
            let (objective, metric) = match objective {
                Objective::Binary => ("binary", "binary_logloss"),
                Objective::Regression => ("regression", "l2"),
                Objective::CrossEntropy => ("cross_entropy", "cross_entropy"),
            };
            let booster_params = format!(
                "objective={objective} metric={metric} learning_rate={lr} num_leaves={leaves} \
                 min_data_in_leaf={min_leaf} feature_fraction={ff} bagging_fraction={bf} bagging_freq=1 \
                 lambda_l2={l2} num_threads={threads} seed={seed} deterministic=true force_col_wise=true \
                 verbosity=-1{linear}",
                lr = params.learning_rate,
                leaves = params.num_leaves,
                min_leaf = params.min_data_in_leaf,
                ff = params.feature_fraction,
                bf = params.bagging_fraction,
                l2 = params.lambda_l2,
                threads = threads.max(1),
                seed = params.seed.unwrap_or(DEFAULT_SEED),
            );
            let booster_params = CString::new(booster_params).map_err(Error::internal)?;
            let mut handle = std::ptr::null_mut();
            // SAFETY: `train_ds` is a live dataset; `handle` receives a new booster.
            check(
                unsafe { sys::LGBM_BoosterCreate(train_ds.0, booster_params.as_ptr(), &mut handle) },
                "creating a booster",
            )?;
            let booster = Booster(handle);
            // SAFETY: `valid_ds` was built with `train_ds` as reference and outlives the booster's use.
            check(unsafe { sys::LGBM_BoosterAddValidData(booster.0, valid_ds.0) }, "adding validation data")?;

            let (mut best, mut best_loss, mut since_best) = (0u32, f64::INFINITY, 0u32);
            for iteration in 1..=params.num_rounds {
                let mut finished = 0;
                // SAFETY: a live booster.
                check(unsafe { sys::LGBM_BoosterUpdateOneIter(booster.0, &mut finished) }, "boosting")?;
                if finished != 0 {
                    break;
                }
                let mut out_len = 0;
                let mut loss = [0.0f64; 1];
                // SAFETY: one metric is configured, so one value is written for data index 1.
                check(
                    unsafe { sys::LGBM_BoosterGetEval(booster.0, 1, &mut out_len, loss.as_mut_ptr()) },
                    "evaluating",
                )?;
                if loss[0] < best_loss - 1e-12 {
                    (best, best_loss, since_best) = (iteration, loss[0], 0);
                } else {
                    since_best += 1;
                    if since_best >= params.early_stopping_rounds {
                        break;
                    }
                }
            }
            let best = best.max(1);
            let model = save_model(&booster, best)?;
            Ok(GbdtModel { model, best_iteration: best, predict_threads: threads, trees: OnceLock::new() })
        })
    }

    /// A stored text model; it must load in LightGBM.
    ///
    /// A stored model that LightGBM loads but whose trees cannot be explained (linear
    /// trees, several trees per iteration) is refused here, not when its first row is.
    pub(crate) fn from_text(text: &str, threads: usize) -> Result<Self> {
        let booster = with_thread_count(threads.max(1), || lightgbm3::Booster::from_string(text))
            .map_err(|e| Error::data(format!("the stored LightGBM model does not load: {e}")))?;
        let trees = OnceLock::from(Some(Arc::new(TreeShap::from_text(text)?)));
        Ok(GbdtModel {
            model: text.to_string(),
            best_iteration: booster.num_iterations().max(0) as u32,
            predict_threads: threads.max(1),
            trees,
        })
    }

    /// The model's trees as [`TreeShap`] reads them, once (None when it cannot).
    fn trees(&self) -> Option<&TreeShap> {
        self.trees.get_or_init(|| TreeShap::from_text(&self.model).ok().map(Arc::new)).as_deref()
    }

    fn booster(&self) -> Result<lightgbm3::Booster> {
        lightgbm3::Booster::from_string(&self.model)
            .map_err(|e| Error::data(format!("the stored LightGBM model does not load: {e}")))
    }

    /// The number of threads prediction may use.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.predict_threads = threads.max(1);
        self
    }
}

/// LightGBM keeps the thread count of its latest call in one process-wide variable, and
/// sizes per-thread buffers by it when a dataset is built or a prediction starts: a call
/// that gives another count while one is running makes it push rows from more threads
/// than it has buffers for (a segfault in SparseBin::Push, seen when training's candidates
/// fitted with one thread each while a finished one predicted its validation rows with
/// two). So calls with different counts never overlap: a call waits until every running
/// call shares its count. Calls with the same count still run side by side, and nothing
/// inside a call waits for another.
struct ThreadCountGate {
    /// The count of the running calls and how many there are.
    running: Mutex<(usize, usize)>,
    finished: Condvar,
}

static LIGHTGBM_CALLS: ThreadCountGate = ThreadCountGate { running: Mutex::new((0, 0)), finished: Condvar::new() };

/// Run `call` (which hands LightGBM `threads`) once no call with another count runs.
fn with_thread_count<T>(threads: usize, call: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let mut running = LIGHTGBM_CALLS.running.lock().unwrap_or_else(|p| p.into_inner());
            running.1 -= 1;
            if running.1 == 0 {
                LIGHTGBM_CALLS.finished.notify_all();
            }
        }
    }
    let mut running = LIGHTGBM_CALLS.running.lock().unwrap_or_else(|p| p.into_inner());
    while running.1 > 0 && running.0 != threads {
        running = LIGHTGBM_CALLS.finished.wait(running).unwrap_or_else(|p| p.into_inner());
    }
    *running = (threads, running.1 + 1);
    drop(running);
    let _leave = Leave;
    call()
}

fn save_model(booster: &Booster, iterations: u32) -> Result<String> {
    let mut size = 0i64;
    // SAFETY: a size query with an empty buffer.
    check(
        unsafe {
            sys::LGBM_BoosterSaveModelToString(booster.0, 0, iterations as i32, 0, 0, &mut size, std::ptr::null_mut())
        },
        "saving the model",
    )?;
    let mut buf = vec![0u8; size as usize];
    // SAFETY: `buf` has the size LightGBM asked for.
    check(
        unsafe {
            sys::LGBM_BoosterSaveModelToString(
                booster.0,
                0,
                iterations as i32,
                0,
                buf.len() as i64,
                &mut size,
                buf.as_mut_ptr() as *mut std::ffi::c_char,
            )
        },
        "saving the model",
    )?;
    while buf.last() == Some(&0) {
        buf.pop();
    }
    String::from_utf8(buf).map_err(Error::internal)
}

impl Classifier for GbdtModel {
    fn name(&self) -> String {
        format!("gbdt-lightgbm/{}", self.best_iteration)
    }

    fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        if x.nrows() == 0 {
            return Vec::new();
        }
        // Our walk of the same trees: LightGBM's numbers, for less CPU (`treeshap`'s docs).
        if let Some(p) = self.trees().and_then(|t| t.predict(x.view())) {
            return p;
        }
        let x = x.as_standard_layout();
        let params = format!("num_threads={}", self.predict_threads);
        with_thread_count(self.predict_threads, || {
            self.booster().and_then(|b| {
                b.predict_with_params(x.as_slice().expect("standard layout"), x.ncols() as i32, true, &params)
                    .map_err(|e| Error::internal(format!("LightGBM prediction: {e}")))
            })
        })
        .expect("a model that loaded at training time predicts")
    }

    /// TreeSHAP by [`TreeShap`]: LightGBM's own values, at a fraction of the cost of its
    /// `predict_contrib` (measured in BENCHMARKS.md).
    fn contributions(&self, x: &Array2<f64>) -> Array2<f64> {
        self.trees().expect("a model fitted here can be explained").contributions(x.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightgbm_calls_with_different_thread_counts_never_overlap() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let inside = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let overlapped = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (inside, overlapped) = (&inside, &overlapped);
                scope.spawn(move || {
                    for k in 0..20 {
                        let mine = (t + k) % 2;
                        with_thread_count(mine + 1, || {
                            inside[mine].fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(300));
                            if inside[1 - mine].load(Ordering::SeqCst) > 0 {
                                overlapped.fetch_add(1, Ordering::SeqCst);
                            }
                            inside[mine].fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        assert_eq!(overlapped.load(Ordering::SeqCst), 0, "a call ran beside one with another thread count");
    }

    #[test]
    fn learns_an_interaction_and_a_category_and_round_trips_as_text() {
        // y = 1 when x0 > 0.5 and the category is 2; x1 is noise.
        let n = 4000;
        let make = |offset: usize| {
            let x = Array2::from_shape_fn((n, 3), |(i, j)| {
                let i = i + offset;
                match j {
                    0 => ((i * 7919) % 1000) as f64 / 1000.0,
                    1 => ((i * 104_729) % 997) as f64 / 997.0,
                    _ => (i % 4) as f64,
                }
            });
            let y: Vec<i32> = (0..n).map(|i| i32::from(x[[i, 0]] > 0.5 && x[[i, 2]] == 2.0)).collect();
            (x, y)
        };
        let (x, y) = make(0);
        let (xv, yv) = make(n);
        let m = GbdtModel::fit(&x, &y, &xv, &yv, &[2], &GbdtParams::default(), 1).unwrap();
        let p = m.predict(&xv);
        let auc = crate::models::metrics::auc(&p, &yv);
        assert!(auc > 0.99, "auc {auc}");
        let c = m.contributions(&xv);
        assert_eq!(c.dim(), (n, 3));
        let noise: f64 = c.column(1).iter().map(|v| v.abs()).sum::<f64>();
        let signal: f64 = c.column(0).iter().map(|v| v.abs()).sum::<f64>();
        assert!(signal > 5.0 * noise, "the informative feature explains more: {signal} vs {noise}");
        assert!(m.model.starts_with("tree"), "a native LightGBM text model");
    }
}
