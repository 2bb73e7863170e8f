#!/usr/bin/env bash
# Benchmark of the churn models of `retain train` against Python LightGBM and scikit-learn
# LogisticRegression (benches/models_peer.py, in a venv with pinned versions), on the same
# labelled rows and the same time split. benches/models.rs builds the rows as `retain
# train --as-of AS_OF` does, writes them for the peer, and fits both families; the peer
# fits its own. Each fit is timed alone with every core. Checks that both sides saw the
# same rows, and prints Markdown rows for BENCHMARKS.md (fit wall and CPU time, validation
# AUC, the AUC difference to Python LightGBM, and each process's peak RSS).
#
#   make bench-models                        # 1M users × 180 days
#   USERS=50000 make bench-models            # smaller
#   WORLD=/path/to/world make bench-models   # reuse a generated world (AS_OF: its last day)
#   REUSE_ROWS=1 make bench-models           # refit on the rows the last run built for the same
#                                            # world and AS_OF (building them takes minutes)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
users="${USERS:-1000000}"
days="${DAYS:-180}"
start="${START:-2026-05-25}"
as_of="${AS_OF:-$(date -u -d "$start + $((days - 1)) days" +%F)}"
work="${BENCH_DIR:-$root/.bench}"
world="${WORLD:-$work/world-${users}x${days}}"
venv="$work/venv-models"
out="$work/models"
mkdir -p "$work"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "lightgbm==4.7.0" "scikit-learn==1.9.1" "pandas==3.1.1" "numpy==2.4.6" "pyarrow==26.0.1"
fi
if [[ ! -d "$world/users" ]]; then
    (cd "$root" && cargo build --release --bin retain) >&2
    echo "bench: generating $users users × $days days into $world" >&2
    "$root/target/release/retain" synth --users "$users" --days "$days" --seed 3 --start "$start" --output "$world" >&2
fi
bench="$(cd "$root" && cargo build --release --bench models --message-format=json-render-diagnostics |
    "$venv/bin/python" -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "models" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$bench" ]] || { echo "bench: the models bench binary was not built" >&2; exit 1; }

# LightGBM's OpenMP threads wait passively in both programs (retain's main sets it too).
export OMP_WAIT_POLICY=passive

run() { # label, command…: JSON lines to $work/<label>.jsonl; prints max_rss_kb
    local log="$work/models-$1.time"
    /usr/bin/time -v -o "$log" "${@:2}" >"$work/models-$1.jsonl" 2> >(tee "$work/models-$1.stderr" >&2)
    awk -F': ' '/Maximum resident set size/ {print $2}' "$log"
}

reuse=()
if [[ -n "${REUSE_ROWS:-}" && -f "$out/valid.parquet" && "$(cat "$out/source" 2>/dev/null)" == "$world $as_of" ]]; then
    reuse=(--reuse-rows)
else
    rm -rf "$out"
fi
echo "bench: retain (rows of $world as of $as_of)" >&2
r_rss=$(run retain "$bench" "$world" "$as_of" "$out" "${reuse[@]}")
echo "$world $as_of" >"$out/source"
echo "bench: Python peer" >&2
p_rss=$(run python "$venv/bin/python" "$root/benches/models_peer.py" "$out")

"$venv/bin/python" - "$work/models-retain.jsonl" "$work/models-python.jsonl" "$world" "$r_rss" "$p_rss" <<'PY'
import sys, json, datetime, glob, os
retain = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
peer = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
world, r_rss, p_rss = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
assert len(retain) == 2 and len(peer) == 2, (retain, peer)
rows = {(m["rows"], m["valid_rows"]) for m in retain + peer}
assert len(rows) == 1, f"the two programs fitted on different rows: {rows}"
by = {(m["program"] == "retain", m["model"]): m for m in retain + peer}
for model in ("lightgbm", "logistic"):
    assert by[(True, model)]["features"] == by[(False, model)]["features"], f"{model}: different design widths"
import pyarrow.parquet as pq
user_files = glob.glob(os.path.join(world, "users", "**", "*.parquet"), recursive=True)
users = sum(pq.ParquetFile(f).metadata.num_rows for f in user_files)
days = len(glob.glob(os.path.join(world, "activity", "dt=*")))
ref = by[(False, "lightgbm")]["auc"]
date = datetime.datetime.now(datetime.timezone.utc).date()
train_rows, valid_rows = rows.pop()
print(f"bench: both programs fitted {train_rows} training rows and validated on {valid_rows}", file=sys.stderr)
for m in retain + peer:
    program = m["program"].replace("python lightgbm", "Python LightGBM").replace("python", "Python")
    program = "retain (release)" if program == "retain" else program
    model = "LightGBM" if m["model"] == "lightgbm" else "L2 logistic"
    if m.get("best_iteration"):
        model += f", {m['best_iteration']} rounds"
    if m.get("n_iter"):
        model += f", {m['n_iter']} iterations" + ("" if m.get("converged", True) else " (not converged)")
    rss = r_rss if m["program"] == "retain" else p_rss
    diff = round(m["auc"] - ref, 4) + 0.0
    print(f"| {date} | {users} users × {days} days | {program} | {model} | {m['rows']:,} × {m['features']} | "
          f"{m['fit_seconds']:.1f} s | {m['fit_cpu_seconds']:.1f} s | {m['auc']:.4f} | {diff:+.4f} | {rss / 1048576:.2f} GB |")
PY
