#!/usr/bin/env bash
# Benchmark of `retain features` against the same features computed by a plain Python
# Polars script (benches/features_peer.py), on a world of USERS users × DAYS days from
# `retain synth`. Records wall time and peak RSS of both, checks that they computed the
# same table, and prints Markdown rows for BENCHMARKS.md. CPU time (user + system, both
# cores) is recorded next to wall time: on a shared machine it is the steadier figure.
#
#   make bench-features                  # 1M users × 180 days
#   USERS=100000 make bench-features     # smaller
#   WORLD=/path/to/world make bench-features   # reuse a generated world
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
users="${USERS:-1000000}"
days="${DAYS:-180}"
start="${START:-2026-05-25}"
as_of="$(date -u -d "$start + $((days - 1)) days" +%F)"
work="${BENCH_DIR:-$root/.bench}"
world="${WORLD:-$work/world-${users}x${days}}"
venv="$work/venv"
mkdir -p "$work"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "polars==2.1.0"
fi
(cd "$root" && cargo build --release --bin retain) >&2
retain="$root/target/release/retain"

if [[ ! -d "$world/users" ]]; then
    echo "bench: generating $users users × $days days into $world" >&2
    "$retain" synth --users "$users" --days "$days" --seed 3 --start "$start" --output "$world" >&2
fi

measure() { # label, command…: prints "wall_seconds cpu_seconds max_rss_kb"
    local log="$work/$1.time"
    /usr/bin/time -v -o "$log" "${@:2}" >/dev/null 2>"$work/$1.stderr"
    local wall cpu rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {print s}' "$log")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    echo "$wall $cpu $rss"
}

rm -rf "$work/out"
read -r r_wall r_cpu r_rss < <(measure retain env OMP_WAIT_POLICY=passive RETAIN_LOG=warn "$retain" features --as-of "$as_of" --input "$world" --output "$work/out")
read -r p_wall p_cpu p_rss < <(measure python "$venv/bin/python" "$root/benches/features_peer.py" "$world" "$as_of" "$work/peer.parquet")

"$venv/bin/python" - "$work/out/features/snapshot=$as_of" "$work/peer.parquet" <<'PY'
import sys, polars as pl
a = pl.read_parquet(sys.argv[1] + "/*.parquet"); b = pl.read_parquet(sys.argv[2])
assert a.height == b.height, (a.height, b.height)
j = a.join(b, on="user_id", suffix="_p")
bad = []
for c in b.columns:
    if c == "user_id" or c not in a.columns: continue
    x, y = j[c], j[c + "_p"]
    if x.dtype.is_numeric():
        d = ((x.cast(pl.Float64) - y.cast(pl.Float64)).abs() > 1e-9 * (1 + x.cast(pl.Float64).abs())).fill_null(False)
    else:
        d = (x != y).fill_null(False)
    d = d | (x.is_null() != y.is_null())
    if d.sum(): bad.append((c, int(d.sum())))
assert not bad, bad
print(f"bench: the two feature tables agree ({a.height} rows, {len(b.columns) - 1} features)", file=sys.stderr)
PY

printf '| %s | %s users × %s days | retain features (release) | %.1f s | %.1f s | %.2f GB |\n' "$(date -u +%F)" "$users" "$days" "$r_wall" "$r_cpu" "$(echo "$r_rss / 1048576" | bc -l)"
printf '| %s | %s users × %s days | Python Polars 2.1.0 peer | %.1f s | %.1f s | %.2f GB |\n' "$(date -u +%F)" "$users" "$days" "$p_wall" "$p_cpu" "$(echo "$p_rss / 1048576" | bc -l)"
