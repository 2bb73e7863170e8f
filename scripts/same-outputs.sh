#!/usr/bin/env bash
# The no-behaviour-change check of a refactor: two output roots of `retain run` for the same
# snapshot (e.g. one from the previous commit's binary, one from this one) must hold the
# same table bytes. Compares every table folder's parts, its `_SUCCESS` (run id aside), the
# model files and the HTML reports; the manifests' timings, run ids and roots may differ.
#
#   scripts/same-outputs.sh OUT_A OUT_B SNAPSHOT
#
# Exit 0 when the outputs are the same, 1 (with the differing files named) otherwise.
set -euo pipefail
a="$1"; b="$2"; s="$3"
status=0
for t in features scores interventions grace; do
  da="$a/$t/snapshot=$s"; db="$b/$t/snapshot=$s"
  if ! diff -r -x _SUCCESS "$da" "$db" >/dev/null; then echo "differs: $t parts"; status=1; fi
  if ! diff <(grep -v '"run_id"' "$da/_SUCCESS") <(grep -v '"run_id"' "$db/_SUCCESS") >/dev/null; then
    echo "differs: $t/_SUCCESS"; status=1
  fi
done
# Model files (model.json aside: it records fit durations) and the reports (models.html
# shows fit durations too).
for f in "$a/models/snapshot=$s"/*; do
  n=$(basename "$f")
  [ "$n" = model.json ] && continue
  cmp -s "$f" "$b/models/snapshot=$s/$n" || { echo "differs: models/$n"; status=1; }
done
for r in interventions grace; do
  cmp -s "$a/reports/snapshot=$s/$r.html" "$b/reports/snapshot=$s/$r.html" || { echo "differs: reports/$r.html"; status=1; }
done
python3 - "$a/runs/snapshot=$s/run.json" "$b/runs/snapshot=$s/run.json" <<'PY' || status=1
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in ("fit_seconds", "seconds")}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
if strip(a["details"]) != strip(b["details"]):
    print("differs: run.json details (durations aside)")
    sys.exit(1)
PY
[ $status = 0 ] && echo "same outputs for $s"
exit $status
