#!/usr/bin/env bash
# The nightly run at production size: `retain run` with the default configuration on
# worlds of 100k and 1M users × 180 days (`retain synth`, generated once into .bench/ and
# reused), under /usr/bin/time -v. Prints Markdown rows for BENCHMARKS.md: per stage the
# wall and CPU seconds and the peak resident memory sampled during the stage (from the run
# manifest), then the whole run as /usr/bin/time saw it, and the quality figures the run
# reports (churn champion's validation AUC, ECE and log loss; the plan's expected churn
# prevented; the off-policy values of the plan and of risk-ranked targeting). The score
# stage's TreeSHAP contributions are compared with Python LightGBM's own
# (`predict(pred_contrib=True)`, benches/reasons_peer.py) on the same model and rows, in
# the same session.
#
#   make bench-nightly                     # 100k and 1M users
#   SIZES=100000 make bench-nightly        # only 100k
#   SEED=3 SIZES=100000 make bench-nightly # another world
#   PEER=0 SIZES=1000000 make bench-nightly # without the Python peer (10 minutes at 1M)
#   WARM=1 make bench-nightly              # and the next night, with the feature store filled
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes="${SIZES:-100000 1000000}"
days="${DAYS:-180}"
seed="${SEED:-7}"
start="${START:-2026-05-25}"
as_of="$(date -u -d "$start + $((days - 1)) days" +%F)"
work="${BENCH_DIR:-$root/.bench}"
mkdir -p "$work"

venv="$work/venv-models"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "lightgbm==4.7.0" "scikit-learn==1.9.1" "pandas==3.1.1" "numpy==2.4.6" "pyarrow==26.0.1"
fi
(cd "$root" && cargo build --release --bin retain) >&2
retain="$root/target/release/retain"
commit="$(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- src || echo '+')"

# Markdown rows of one night: per stage from the manifest, the whole run from /usr/bin/time,
# then the quality figures. Arguments: manifest, time log, users, commit, night (cold/warm).
report() {
    python3 - "$@" <<'PY'
import json, re, sys
manifest, timing, users, commit, night = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
m = json.load(open(manifest))
t = open(timing).read()
def field(name):
    return re.search(re.escape(name) + r": (.*)", t).group(1).strip()
wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
rss_gb = int(field("Maximum resident set size (kbytes)")) / 1048576
size = f"{users // 1000}k" if users < 1_000_000 else f"{users / 1e6:g}M"
if night != "cold":
    size += f" ({night})"
cmd = f"SIZES={users} make bench-nightly" if night == "cold" else f"WARM=1 SIZES={users} make bench-nightly"
for s in m["stages"]:
    peak = s.get("peak_rss_bytes")
    print(f"| {commit} | {size} | {s['stage']} | {s['seconds']:.1f} s | {s['cpu_seconds']:.1f} s | "
          f"{peak / 2**30:.2f} GB | `{cmd}` |" if peak else f"| {commit} | {size} | {s['stage']} | {s['seconds']:.1f} s | {s['cpu_seconds']:.1f} s | – | `{cmd}` |")
print(f"| {commit} | {size} | **whole run** (/usr/bin/time) | **{wall:.0f} s** | **{cpu:.0f} s** | **{rss_gb:.2f} GB** | `{cmd}` |")
d = m["details"]
churn = next(t for t in d["model"]["targets"] if t["target"] == "churn")
champ = next(c for c in churn["candidates"] if c["family"] == churn["champion"])
v = champ["validation"]
iv = d["interventions"]
pol = {p["policy"]: p for p in (iv.get("evaluation") or {}).get("policies", [])}
dr = lambda name: f"{pol[name]['dr']['per_1000']:.2f}" if name in pol else "–"
store = m.get("feature_store") or {}
reused = sum(1 for u in store.values() if any(x.startswith("reused") for x in u))
print(f"\nfeature store ({size}): {reused} of {len(store)} snapshots read back from it")
print(f"\nquality ({size}): churn champion {churn['champion']} AUC {v['auc']:.4f}, ECE {v['ece']:.4f}, "
      f"log loss {v['log_loss']:.4f}; plan {iv['planned']} users, expected churn prevented "
      f"{iv['expected_churn_reduction']:.1f}; DR per 1,000: uplift {dr('uplift')}, risk-ranked {dr('risk_ranked')}\n")
PY
}

for users in $sizes; do
    world="$work/world-${users}x${days}-seed${seed}"
    if [[ ! -d "$world/users" ]]; then
        echo "bench: generating $users users × $days days (seed $seed) into $world" >&2
        "$retain" synth --users "$users" --days "$days" --seed "$seed" --start "$start" --output "$world" >&2
    fi
    out="$work/night-${users}"
    rm -rf "$out"
    echo "bench: retain run --as-of $as_of on $users users" >&2
    /usr/bin/time -v -o "$work/night-${users}.time" \
        env RETAIN_LOG_FORMAT=json "$retain" run --as-of "$as_of" --input "$world" --output "$out" \
        2>"$work/night-${users}.log"
    report "$out/runs/snapshot=$as_of/run.json" "$work/night-${users}.time" "$users" "$commit" cold
    ours=$(grep '"reasons explained"' "$work/night-${users}.log" | python3 -c 'import sys, json
f = json.loads(sys.stdin.readline())["fields"]
print("%.1f %.1f" % (f["contribution_seconds"], f["words_seconds"]))')
    peer="– – –"
    [[ "${PEER:-1}" == 0 ]] || peer=$("$venv/bin/python" "$root/benches/reasons_peer.py" "$out" "$as_of" "$(nproc)" |
        python3 -c 'import sys, json
p = json.loads(sys.stdin.read())
print("%.1f %.1f %d" % (p["seconds"], p["cpu_seconds"], p["rows"]))') || peer="– – –"
    read -r ours_model ours_words <<<"$ours"
    read -r peer_wall peer_cpu peer_rows <<<"$peer"
    echo "reasons ($users users, $peer_rows rows): retain's TreeSHAP ${ours_model} s + words ${ours_words} s; Python LightGBM pred_contrib ${peer_wall} s (${peer_cpu} s CPU)"
    echo
    [[ "${WARM:-0}" == 1 ]] || continue
    # The next night in the steady state: every earlier night kept its own snapshot in the
    # feature store, so tonight finds every past snapshot it needs there, and tonight's
    # own is new. The cold night above kept the whole populations it aggregated; the
    # snapshots it built for some users only are what earlier nights' `retain features`
    # would have kept; then tonight's own is removed, and the models are refitted.
    manifest="$out/runs/snapshot=$as_of/run.json"
    for d in $(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
print(" ".join(d for d, u in m["feature_store"].items() if not any(x.endswith("kept them") for x in u)))' "$manifest"); do
        echo "bench: keeping snapshot $d as its night would have" >&2
        RETAIN_LOG=warn "$retain" features --as-of "$d" --input "$world" --output "$out" >&2
    done
    rm -rf "$out/feature_store/snapshot=$as_of"
    echo "bench: retain run --retrain --as-of $as_of on $users users, feature store filled" >&2
    /usr/bin/time -v -o "$work/night-${users}-warm.time" \
        env RETAIN_LOG_FORMAT=json "$retain" run --retrain --as-of "$as_of" --input "$world" --output "$out" \
        2>"$work/night-${users}-warm.log"
    report "$manifest" "$work/night-${users}-warm.time" "$users" "$commit" warm
done
