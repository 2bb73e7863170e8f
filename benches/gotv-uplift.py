"""Multi-arm uplift on the public GOTV experiment: `retain table uplift` against a two-model
logistic regression, on the same held-out halves.

    .bench/venv-models/bin/python benches/gotv-uplift.py [--seeds 5] [--first-seed 1] [--retain target/release/retain]

For each seed the rows of ../shared/data/gotv.csv are split at random into halves A and B.
`retain table uplift --train A --test B --treated "Civic Duty,Hawthorne,Self,Neighbors"
--control Control --outcome voted --positive Yes` writes an uplift per arm for B's rows; the
peer fits, per arm, one logistic regression on A's rows of the arm and one on A's control
rows (one-hot categories, scikit-learn, L2 with C=1), and scores p_arm - p_control. Both are
judged on B by the same Qini: B's rows of the arm and of the control, ordered by the score;
at each fraction f of them (100 steps) the incremental voters
Q(f) = Y_arm(f) - Y_control(f) * N_arm(f) / N_control(f); the Qini is the mean over f of
Q(f) - f * Q(1), divided by the arm's rows (incremental voters per treated voter, x100).
With --starbucks, the same on ../shared/data/starbucks_training.csv (Promotion Yes/No,
purchase), one arm.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def qini(score, arm_rows, outcome, steps=100):
    """Mean gap between the Qini curve and the random line, per treated row, x100."""
    order = np.argsort(-score, kind="stable")
    t = arm_rows[order].astype(float)
    y = outcome[order].astype(float)
    nt, nc = np.cumsum(t), np.cumsum(1 - t)
    yt, yc = np.cumsum(t * y), np.cumsum((1 - t) * y)
    n = len(order)
    gains = []
    for f in np.linspace(0.01, 1.0, steps):
        k = max(int(round(f * n)) - 1, 0)
        q = yt[k] - (yc[k] * nt[k] / nc[k] if nc[k] > 0 else 0.0)
        gains.append((f, q))
    total = gains[-1][1]
    return 100.0 * np.mean([q - f * total for f, q in gains]) / max(nt[-1], 1)


def two_model_lr(a, b, features, arm_col, arm, control, outcome, positive):
    """p(outcome | arm) - p(outcome | control) from two logistic regressions fitted on A."""
    both = pd.get_dummies(pd.concat([a[features], b[features]]), drop_first=False).astype(float)
    xa, xb = both.iloc[: len(a)].to_numpy(), both.iloc[len(a):].to_numpy()
    mean, sd = xa.mean(axis=0), xa.std(axis=0) + 1e-9
    xa, xb = (xa - mean) / sd, (xb - mean) / sd
    y = (a[outcome].astype(str) == positive).to_numpy()
    p = []
    for value in (arm, control):
        rows = (a[arm_col] == value).to_numpy()
        m = LogisticRegression(C=1.0, max_iter=2000).fit(xa[rows], y[rows])
        p.append(m.predict_proba(xb)[:, 1])
    return p[0] - p[1]


def run(args, name, path, arm_col, arms, control, outcome, positive, ignore):
    df = pd.read_csv(path)
    features = [c for c in df.columns if c not in [arm_col, outcome] + ignore]
    results = {arm: {"retain": [], "two-model LR": []} for arm in arms}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rng = np.random.default_rng(seed)
        half = rng.permutation(len(df)) < len(df) // 2
        a, b = df[half].reset_index(drop=True), df[~half].reset_index(drop=True)
        with tempfile.TemporaryDirectory() as tmp:
            pa, pb, out = (os.path.join(tmp, f) for f in ("a.csv", "b.csv", "u.parquet"))
            a.to_csv(pa, index=False)
            b.to_csv(pb, index=False)
            cmd = [args.retain, "table", "uplift", "--train", pa, "--test", pb, "--treatment", arm_col,
                   "--treated", ",".join(arms), "--control", control, "--outcome", outcome, "--output", out]
            if positive is not None:
                cmd += ["--positive", positive]
            if ignore:
                cmd += ["--ignore", ",".join(ignore)]
            subprocess.run(cmd, check=True, env={**os.environ, "RETAIN_LOG": "warn"})
            u = pd.read_parquet(out)
        y = (b[outcome].astype(str) == (positive or "1")).to_numpy()
        for arm in arms:
            rows = b[arm_col].isin([arm, control]).to_numpy()
            treated = (b[arm_col] == arm).to_numpy()[rows]
            column = "uplift" if len(arms) == 1 else f"uplift_{arm}"
            results[arm]["retain"].append(qini(u[column].to_numpy()[rows], treated, y[rows]))
            peer = two_model_lr(a, b, features, arm_col, arm, control, outcome, positive or "1")
            results[arm]["two-model LR"].append(qini(peer[rows], treated, y[rows]))
        print(f"{name} seed {seed}: " + ", ".join(
            f"{arm} {results[arm]['retain'][-1]:.3f} vs {results[arm]['two-model LR'][-1]:.3f}" for arm in arms),
            file=sys.stderr)
    print(f"\n{name}, Qini on held-out halves ({args.seeds} seeds; mean ± sd, x100 per treated row)\n")
    print("| arm | retain | two-model LR | seeds retain wins |")
    print("|---|---|---|---|")
    for arm in arms:
        r, l = np.array(results[arm]["retain"]), np.array(results[arm]["two-model LR"])
        print(f"| {arm} | {r.mean():.3f} ± {r.std(ddof=1):.3f} | {l.mean():.3f} ± {l.std(ddof=1):.3f} | "
              f"{int((r > l).sum())} of {len(r)} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=1, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--retain", default=os.path.join(HERE, "..", "target", "release", "retain"))
    p.add_argument("--starbucks", action="store_true")
    args = p.parse_args()
    run(args, "GOTV", os.path.join(DATA, "gotv.csv"), "treatment",
        ["Civic Duty", "Hawthorne", "Self", "Neighbors"], "Control", "voted", "Yes", [])
    if args.starbucks:
        run(args, "Starbucks", os.path.join(DATA, "starbucks_training.csv"), "Promotion", ["Yes"], "No",
            "purchase", None, ["ID"])


if __name__ == "__main__":
    main()
