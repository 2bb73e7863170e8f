"""The peer of benches/models.rs: the same churn models as a careful analyst would fit them
with Python LightGBM and scikit-learn, on the rows `retain` wrote.

    python models_peer.py OUTDIR

Reads OUTDIR/train.parquet, OUTDIR/valid.parquet and OUTDIR/features.json (feature names
and kinds, and the settings `retain` used), then fits, each timed on its own:

- LightGBM with retain's parameters (learning rate, leaves, min_data_in_leaf, feature and
  bagging fractions with bagging_freq=1, lambda_l2, seed, deterministic, col-wise, the
  same thread count), categoricals as pandas categories (LightGBM categorical splits),
  missing values left missing, early stopping on the validation rows' binary log loss;
- scikit-learn LogisticRegression (lbfgs, max_iter = retain's max_iterations) on the
  encoding retain's `Mode::Standardized` uses: numerics imputed with the training median,
  a missing indicator where training had missing values, standardised with the training
  mean and (population) standard deviation; categories seen at least 20 times in training
  one-hot encoded, the most frequent as the all-zero baseline, at most 30 columns each.
  retain minimises sum(log loss) + l2/2 * |w|^2 (intercept free); scikit-learn minimises
  C * sum(log loss) + 1/2 * |w|^2 (intercept free with lbfgs), so C = 1 / l2.

Prints one JSON line per model, like the Rust side. `fit_seconds` is the fit only (for
LightGBM: building its datasets from the data frames, then training); `encode_seconds`
is preparing the frames or matrices; reading the files is not timed. `fit_cpu_seconds` is
the process's CPU time (all threads) during the fit.
"""

import json
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

MIN_CATEGORY_ROWS = 20
MAX_CATEGORIES = 30


def main():
    outdir = sys.argv[1]
    meta = json.load(open(os.path.join(outdir, "features.json")))
    threads = int(meta["threads"])
    # numpy's BLAS (scikit-learn) gets the same cores as LightGBM; set before importing them.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import lightgbm as lgb
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    label = meta["label"]
    feats = meta["features"]
    numeric = [f["name"] for f in feats if f["kind"] == "numeric"]
    categorical = [f["name"] for f in feats if f["kind"] == "categorical"]
    names = [f["name"] for f in feats]
    train = pq.read_table(os.path.join(outdir, "train.parquet")).to_pandas()
    valid = pq.read_table(os.path.join(outdir, "valid.parquet")).to_pandas()
    y, yv = train[label].to_numpy(), valid[label].to_numpy()

    # LightGBM: categories as pandas categories (the training set's), numerics as floats.
    t0 = time.perf_counter()
    xt = train[names].copy()
    xv = valid[names].copy()
    for c in numeric:
        xt[c] = xt[c].astype("float64")
        xv[c] = xv[c].astype("float64")
    for c in categorical:
        xt[c] = xt[c].astype("category")
        xv[c] = pd.Categorical(xv[c], categories=xt[c].cat.categories)
    encode = time.perf_counter() - t0
    g = meta["gbdt"]
    params = {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": g["learning_rate"],
        "num_leaves": g["num_leaves"],
        "min_data_in_leaf": g["min_data_in_leaf"],
        "feature_fraction": g["feature_fraction"],
        "bagging_fraction": g["bagging_fraction"],
        "bagging_freq": 1,
        "lambda_l2": g["lambda_l2"],
        "max_bin": 255,
        "seed": g["seed"],
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
    }
    t0, c0 = time.perf_counter(), time.process_time()
    dtrain = lgb.Dataset(xt, label=y, categorical_feature=categorical, free_raw_data=True)
    dvalid = lgb.Dataset(xv, label=yv, reference=dtrain)
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=g["num_rounds"],
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(g["early_stopping_rounds"], verbose=False)],
    )
    fit, cpu = time.perf_counter() - t0, time.process_time() - c0
    p = booster.predict(xv, num_iteration=booster.best_iteration, num_threads=threads)
    print(json.dumps({
        "program": f"python lightgbm {lgb.__version__}", "model": "lightgbm", "fit_seconds": fit,
        "fit_cpu_seconds": cpu, "encode_seconds": encode, "auc": roc_auc_score(yv, p), "rows": len(y),
        "valid_rows": len(yv),
        "features": xt.shape[1], "best_iteration": booster.best_iteration, "threads": threads,
    }), flush=True)
    del dtrain, dvalid, booster, xt, xv

    # Logistic regression on retain's standardised encoding, computed with numpy/pandas.
    t0 = time.perf_counter()
    cols_t, cols_v = [], []
    for c in numeric:
        a = train[c].astype("float64").to_numpy()
        b = valid[c].astype("float64").to_numpy()
        a = np.where(np.isfinite(a), a, np.nan)
        b = np.where(np.isfinite(b), b, np.nan)
        present = a[~np.isnan(a)]
        if present.size == 0:
            continue
        median = np.sort(present)[present.size // 2]  # retain's (upper) median
        ai, bi = np.where(np.isnan(a), median, a), np.where(np.isnan(b), median, b)
        mean = ai.mean()
        std = ai.std()
        std = std if std * std > 1e-12 else 1.0
        cols_t.append((ai - mean) / std)
        cols_v.append((bi - mean) / std)
        if present.size < a.size:
            cols_t.append(np.isnan(a).astype("float64"))
            cols_v.append(np.isnan(b).astype("float64"))
    for c in categorical:
        counts = train[c].value_counts(dropna=True)
        frequent = sorted(((v, n) for v, n in counts.items() if n >= MIN_CATEGORY_ROWS), key=lambda t: (-t[1], t[0]))
        a, b = train[c].to_numpy(), valid[c].to_numpy()
        for value, _ in frequent[1 : 1 + MAX_CATEGORIES]:
            cols_t.append((a == value).astype("float64"))
            cols_v.append((b == value).astype("float64"))
    lt, lv = np.column_stack(cols_t), np.column_stack(cols_v)
    encode = time.perf_counter() - t0
    with threadpool_limits(limits=threads):
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lr = LogisticRegression(C=1.0 / meta["l2"], solver="lbfgs", max_iter=meta["max_iterations"])
            lr.fit(lt, y)
        fit, cpu = time.perf_counter() - t0, time.process_time() - c0
    p = lr.predict_proba(lv)[:, 1]
    converged = not any("converge" in str(w.message).lower() for w in caught)
    print(json.dumps({
        "program": f"python scikit-learn {sklearn.__version__}", "model": "logistic", "fit_seconds": fit,
        "fit_cpu_seconds": cpu, "encode_seconds": encode, "auc": roc_auc_score(yv, p), "rows": len(y),
        "valid_rows": len(yv),
        "features": lt.shape[1], "best_iteration": None, "threads": threads, "n_iter": int(lr.n_iter_[0]),
        "converged": converged, "C": 1.0 / meta["l2"],
    }), flush=True)


if __name__ == "__main__":
    main()
