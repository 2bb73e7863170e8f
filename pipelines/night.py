"""The commands of one night of `retain` run as shards: the one list every orchestrator runs.

The Ray driver (pipelines/ray/nightly.py) and the Airflow DAG (pipelines/airflow/) build
their tasks from `steps()`; the Argo Workflow (pipelines/argo/nightly.yaml) is rendered
from it by `python3 pipelines/render.py`, and `make test` checks the rendered file is
current. So the three cannot drift apart. Plain Python, no dependencies.

A night of N shards (README, "Shards"):

    train                                   once: every model, and what shards need of the night
    features                                per shard K, beside the training
    score, grace, candidates                per shard K, after the training (and its features)
    prices                                  after every shard's candidates
    interventions                           per shard, after prices and its scores
    commit                                  after everything: one _SUCCESS per table
    monitor                                 after the commit: the night's checks, once, service-wide
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One `retain` invocation: `argv` follows the binary; `after` names the steps it waits for."""

    name: str
    argv: list = field(hash=False)
    after: list = field(hash=False, default_factory=list)
    # The shard it works on, or None for a step of the whole night.
    shard: int | None = None
    # What it needs: "night" steps take a whole machine's share, shard steps one core.
    kind: str = "shard"


def steps(as_of: str, shards: int, common: list | None = None, run_id: str | None = None) -> list:
    """The night's steps in an order that respects `after`. `common` (e.g. ["--config",
    "nightly.toml"]) is appended to every command, and `--run-id run_id` when given: the
    night's one id, under which a readout finds the plan `commit` publishes."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    common = list(common or []) + (["--run-id", run_id] if run_id else [])
    day = ["--as-of", as_of]

    def cmd(*args):
        return list(args) + day + common

    out = [Step("train", cmd("train"), kind="night")]
    for k in range(shards):
        shard = ["--shard", f"{k}/{shards}"]
        # Features need only the inputs: they run beside the training.
        out.append(Step(f"features-{k}", cmd("features") + shard, [], k))
        out.append(Step(f"score-{k}", cmd("score") + shard, ["train", f"features-{k}"], k))
        out.append(Step(f"grace-{k}", cmd("grace") + shard, ["train"], k))
        out.append(Step(f"candidates-{k}", cmd("candidates") + shard, ["train", f"features-{k}"], k))
    out.append(Step("prices", cmd("prices") + ["--shards", str(shards)], [f"candidates-{k}" for k in range(shards)], kind="night"))
    for k in range(shards):
        shard = ["--shard", f"{k}/{shards}"]
        out.append(Step(f"interventions-{k}", cmd("interventions") + shard, ["prices", f"score-{k}"], k))
    finals = [f"{s}-{k}" for k in range(shards) for s in ("grace", "interventions")]
    out.append(Step("commit", cmd("commit") + ["--shards", str(shards)], finals, kind="night"))
    out.append(Step("monitor", cmd("monitor"), ["commit"], kind="night"))
    return out
