#!/usr/bin/env bash
# A night of shards at production size against one process (not a test): on the 1M-user ×
# 180-day world of bench-nightly (generated once into .bench/ and reused), the Ray driver
# runs the night as N shards (default 4) on a one-node Ray cluster on 127.0.0.1 (this
# machine's 2 cores), then `retain run` runs it in one process into another root. Prints
# Markdown rows for BENCHMARKS.md: per task the wall and CPU seconds and the peak resident
# memory (from each command's manifest), the night's wall time, the sums, and the plan's
# value and sends against one process's.
#
#   make bench-shards                    # 1M users, 4 shards
#   SHARDS=8 USERS=100000 make bench-shards
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
users="${USERS:-1000000}"
shards="${SHARDS:-4}"
days=180
seed="${SEED:-7}"
start=2026-05-25
as_of="$(date -u -d "$start + $((days - 1)) days" +%F)"
work="${BENCH_DIR:-$root/.bench}"
world="$work/world-${users}x${days}-seed${seed}"
bash "$root/scripts/install-ray.sh" >&2
(cd "$root" && cargo build --release --bin retain) >&2
retain="$root/target/release/retain"
commit="$(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- src || echo '+')"
if [[ ! -d "$world/users" ]]; then
    "$retain" synth --users "$users" --days "$days" --seed "$seed" --start "$start" --output "$world" >&2
fi
config="$work/bench-shards.toml"
printf 'input = "%s"\nhorizon_days = 30\n' "$world" > "$config"

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
ray="$root/.ray/venv/bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp="$(mktemp -d /tmp/rayb.XXXX)"
"$ray/ray" start --head --node-ip-address=127.0.0.1 --port "$port" --num-cpus 2 --memory $((20 << 30)) \
    --object-store-memory $((512 << 20)) --include-dashboard=false --disable-usage-stats --temp-dir "$tmp" >&2
trap '"$ray/ray" stop --force >/dev/null 2>&1 || true' EXIT

sharded="$work/out-shards-$users-$shards"
single="$work/out-single-$users"
rm -rf "$sharded" "$single"
t0=$(date +%s.%N)
"$ray/python" "$root/pipelines/ray/nightly.py" --config "$config" --as-of "$as_of" --shards "$shards" \
    --address "127.0.0.1:$port" --retain "$retain" --output "$sharded" \
    --night-cpus 2 --night-memory-gb 12 --shard-memory-gb 4 >&2
t1=$(date +%s.%N)
/usr/bin/time -v "$retain" run --config "$config" --as-of "$as_of" --output "$single" 2> "$work/single-time.log" >&2
t2=$(date +%s.%N)

"$work/venv-models/bin/python" - "$sharded" "$single" "$as_of" "$users" "$shards" "$commit" "$t0" "$t1" "$t2" <<'PY'
import glob, json, os, sys
sharded, single, as_of, users, shards, commit, t0, t1, t2 = sys.argv[1:]
t0, t1, t2 = float(t0), float(t1), float(t2)
size = f"{int(users) / 1e6:g}M" if int(users) >= 1_000_000 else f"{int(users) // 1000}k"
cmd = f"`USERS={users} SHARDS={shards} make bench-shards`"
runs = os.path.join(sharded, "runs", f"snapshot={as_of}")
total_cpu, peak = 0.0, 0
print(f"| commit | users | task | wall | CPU | peak RSS | command |\n|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(runs, "*.json"))):
    m = json.load(open(path))
    name = os.path.basename(path)[:-5]
    if "seconds" not in m:
        continue
    cpu = m.get("cpu_seconds") or 0.0
    rss = m.get("peak_rss_bytes") or 0
    total_cpu += cpu
    peak = max(peak, rss)
    print(f"| {commit} | {size} | {name} | {m['seconds']:.1f} s | {cpu:.1f} s | {rss / 2**30:.2f} GB | {cmd} |")
s = json.load(open(os.path.join(single, "runs", f"snapshot={as_of}", "run.json")))
print(f"| {commit} | {size} | **{shards} shards, the night** | {t1 - t0:.0f} s | {total_cpu:.0f} s (tasks) | {peak / 2**30:.2f} GB (largest task) | {cmd} |")
print(f"| {commit} | {size} | **one process (`retain run`)** | {s['seconds']:.0f} s | {s['cpu_seconds']:.0f} s | {s['peak_rss_bytes'] / 2**30:.2f} GB | {cmd} |")

import pyarrow.parquet as pq
def plan(root):
    d = os.path.join(root, "interventions", f"snapshot={as_of}")
    files = json.load(open(os.path.join(d, "_SUCCESS")))["files"]
    t = pq.read_table([os.path.join(d, f["name"]) for f in files]).to_pydict()
    by = {}
    for c in t["channel"]:
        by[c] = by.get(c, 0) + 1
    return sum(t["expected_uplift"]), by
vs, bs = plan(sharded)
v1, b1 = plan(single)
prices = json.load(open(os.path.join(runs, "prices.json")))
print(f"\nplan value: {shards} shards {vs:.1f}, one process {v1:.1f} ({100 * vs / v1:.2f}%); sends {bs} vs {b1}; "
      f"prices {dict(zip(prices['channels'], [round(p, 5) for p in prices['prices']]))}")
PY
