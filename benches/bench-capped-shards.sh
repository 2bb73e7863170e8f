#!/usr/bin/env bash
# Unsubscribe caps on a night of shards against one process (not a test). On a synthetic
# world (default 100k users × 240 days, seed 11, effects family "home"; generated once into
# .bench/ and reused) `retain run` makes the night's models and its uncapped plan; the caps
# are set at half of that plan's expected push and e-mail unsubscribes; then `retain
# interventions` plans the capped night in one process, and the same night runs as N
# shards (features, score, candidates per shard; prices; interventions per shard; commit).
# Prints Markdown rows for BENCHMARKS.md: per N, the plan's value, sends and expected
# unsubscribes against the caps and one process's, the merge's and one process's prices.
#
#   make bench-capped-shards                       # 100k users, 4 and 8 shards
#   USERS=50000 SEED=5 FAMILY=turned SHARDS="2 4" make bench-capped-shards
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
users="${USERS:-100000}"
seed="${SEED:-11}"
family="${FAMILY:-home}"
shards="${SHARDS:-4 8}"
as_of=2026-11-20
work="${BENCH_DIR:-$root/.bench}"
world="$work/world-${users}x240-seed${seed}-${family}"
export OMP_WAIT_POLICY=passive
(cd "$root" && cargo build --release --bin retain) >&2
retain="$root/target/release/retain"
commit="$(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- src || echo '+')"
if [[ ! -d "$world/users" ]]; then
    "$retain" synth --users "$users" --days 240 --seed "$seed" --start 2026-03-26 --effects "$family" \
        --output "$world" >&2
fi
mkdir -p "$work"
base_cfg="$work/capped-base.toml"
budget_push=$((users * 1875 / 100000)) budget_email=$((users * 3750 / 100000))
printf '[interventions]\nholdout_fraction = 0.1\nbudget = { push = %d, email = %d, in_app = %d }\n' \
    "$budget_push" "$budget_email" "$budget_email" > "$base_cfg"
base="$work/capped-base-${users}-seed${seed}-${family}"
if [[ ! -f "$base/runs/snapshot=$as_of/run.json" ]]; then
    rm -rf "$base"
    "$retain" run --config "$base_cfg" --as-of "$as_of" --input "$world" --output "$base" >/dev/null 2>"$work/capped-base.log"
fi
caps=$(python3 -c "
import json; p = json.load(open('$base/runs/snapshot=$as_of/run.json'))['details']['interventions']['plan']
print(p['unsubscribes'][0] / 2, p['unsubscribes'][1] / 2)")
read -r cap_push cap_email <<< "$caps"
cfg="$work/capped.toml"
{ cat "$base_cfg"; printf '\n[interventions.unsubscribe_cap]\npush = %s\nemail = %s\n' "$cap_push" "$cap_email"; } > "$cfg"

one="$work/capped-one"
rm -rf "$one" && cp -r "$base" "$one" && rm -rf "$one/interventions"
"$retain" interventions --config "$cfg" --as-of "$as_of" --input "$world" --output "$one" >/dev/null 2>"$work/capped-one.log"
for n in $shards; do
    out="$work/capped-shards-$n"
    rm -rf "$out" && mkdir -p "$out" && cp -r "$base/models" "$out/"
    step() { "$retain" "$@" --config "$cfg" --as-of "$as_of" --output "$out" >/dev/null 2>>"$work/capped-shards.log"; }
    for ((k = 0; k < n; k++)); do
        for command in features score candidates; do step "$command" --input "$world" --shard "$k/$n"; done
    done
    step prices --shards "$n"
    for ((k = 0; k < n; k++)); do step interventions --input "$world" --shard "$k/$n"; done
    step commit --shards "$n"
done

python3 - "$one" "$work" "$as_of" "$users" "$seed" "$family" "$commit" "$cap_push" "$cap_email" $shards <<'PY'
import glob, json, sys
one, work, as_of, users, seed, family, commit, cap_push, cap_email, *shards = sys.argv[1:]
runs = lambda root: f"{root}/runs/snapshot={as_of}"
o = json.load(open(f"{runs(one)}/interventions.json"))["details"]["interventions"]
cmd = f"`USERS={users} SEED={seed} FAMILY={family} SHARDS=\"{' '.join(shards)}\" make bench-capped-shards`"
f = lambda xs: " / ".join(f"{x:.3f}" for x in xs[:2])
print(f"caps (push / email): {float(cap_push):.3f} / {float(cap_email):.3f}\n")
print("| commit | world | plan | value | share of one process | push / email sends | push / email unsubscribes | cap prices (push / email) | command |")
print("|---|---|---|---|---|---|---|---|---|")
world = f"{int(users) // 1000}k × 240 d, seed {seed}, {family}"
by = o["planned_by_channel"]
print(f"| {commit} | {world} | one process | {o['plan']['value']:.3f} | 100% | {by.get('push', 0)} / {by.get('email', 0)} "
      f"| {f(o['plan']['unsubscribes'])} | {f(o['plan']['unsubscribe_prices'])} | {cmd} |")
for n in shards:
    out = f"{work}/capped-shards-{n}"
    p = json.load(open(f"{runs(out)}/prices.json"))
    value, sends, uns = 0.0, {}, [0.0, 0.0, 0.0]
    for m in glob.glob(f"{runs(out)}/interventions.shard-*"):
        i = json.load(open(m))["details"]["interventions"]
        value += i["plan"]["value"]
        uns = [a + b for a, b in zip(uns, i["plan"]["unsubscribes"])]
        for k, v in i["planned_by_channel"].items():
            sends[k] = sends.get(k, 0) + v
    print(f"| {commit} | {world} | {n} shards | {value:.3f} | {100 * value / o['plan']['value']:.3f}% "
          f"| {sends.get('push', 0)} / {sends.get('email', 0)} | {f(uns)} | {f(p['unsubscribe_prices'])} (merge, {p['cuts']} cuts) | {cmd} |")
PY
