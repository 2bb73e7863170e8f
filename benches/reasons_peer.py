"""The peer of the score stage's reasons: Python LightGBM's own TreeSHAP contributions
(`Booster.predict(X, pred_contrib=True)`) on the same model and rows `retain run` used.

    python reasons_peer.py OUT SNAPSHOT THREADS

Reads OUT/models/snapshot=SNAPSHOT/model.json (the churn champion and its encoder),
the champion's LightGBM text model, and the features table OUT/features/snapshot=SNAPSHOT,
encodes the rows as retain's native encoding does (numbers as they are, missing as NaN;
categories as the index of their value among the encoder's, the count of values for any
other, NaN when missing), and times the contributions alone with THREADS threads. Prints
one JSON line: rows, columns, seconds, CPU seconds.
"""

import json
import sys
import time

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq

out, snapshot, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = json.load(open(f"{out}/models/snapshot={snapshot}/model.json"))
churn = next(t for t in model["targets"] if t["target"] == "churn")
champion = next(c for c in churn["candidates"] if c["family"] == churn["champion"])
if champion["family"] != "gbdt":
    sys.exit(f"the churn champion is {champion['family']}: no TreeSHAP to compare")
table = pq.read_table(f"{out}/features/snapshot={snapshot}")
columns = champion["encoder"]["columns"]
x = np.empty((table.num_rows, len(columns)), dtype=np.float64)
for j, c in enumerate(columns):
    values = table.column(c["feature"]).to_pylist()
    kind = c["kind"]
    if kind["type"] == "raw":
        x[:, j] = [np.nan if v is None else float(v) for v in values]
    elif kind["type"] == "codes":
        index = {v: i for i, v in enumerate(kind["values"])}
        x[:, j] = [np.nan if v is None else index.get(str(v), len(index)) for v in values]
    else:
        sys.exit(f"unexpected encoding {kind['type']} for a GBDT model")
booster = lgb.Booster(model_file=f"{out}/models/snapshot={snapshot}/{champion['file']}")
wall, cpu = time.perf_counter(), time.process_time()
contributions = booster.predict(x, pred_contrib=True, num_threads=threads)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
assert contributions.shape == (table.num_rows, len(columns) + 1), contributions.shape
print(json.dumps({"program": "python-lightgbm", "rows": table.num_rows, "columns": len(columns),
                  "seconds": wall, "cpu_seconds": cpu, "lightgbm": lgb.__version__}))
