#!/usr/bin/env python3
"""A night of `retain` as shards on a Ray cluster.

    pipelines/ray/nightly.py --config FILE --as-of S --shards N [--address ADDR] [--retain PATH]
                             [--input URI] [--output URI] [--retries K]

Runs the steps of `pipelines/night.py` (train; per shard features, score, grace and
candidates; prices; per shard interventions; commit), each as a Ray task that runs one
`retain` subprocess, declaring the CPUs and memory it needs so that Ray never places more
on a node than it holds. A task whose command exits 75 (a temporary failure: storage
unreachable) is retried up to --retries times; any other failure is final. The driver
exits 0 when the night is committed, else 1 naming the failed step (and its shard), whose
exit code it prints: rerunning the driver redoes only the shards that did not finish
(finished shards skip themselves).

`retain` must be on every node (--retain, default: `retain` on PATH). The RETAIN_*
environment variables of the driver (credentials and settings) reach every task.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import night  # noqa: E402  (the one list of a night's commands)
import ray  # noqa: E402

# What each kind of step declares to Ray, per task.
RESOURCES = {
    "night": {"num_cpus": 2, "memory": 8 * 1024**3},
    "shard": {"num_cpus": 1, "memory": 2 * 1024**3},
}
TEMPORARY = 75


class TemporaryFailure(Exception):
    """A command that exited 75: safe to retry."""


class StepFailed(Exception):
    """A command that failed for good: (step, exit code, the end of its stderr)."""

    def __init__(self, step, code, stderr):
        super().__init__(step, code, stderr)
        self.step, self.code, self.stderr = step, code, stderr

    def __str__(self):
        return f"{self.step}: exit {self.code}: {self.stderr.strip()[-2000:]}"


@ray.remote
def run_step(name, argv, cwd, *_after):
    """Run one command in `cwd`; `_after` are the steps it waits for (Ray resolves them first)."""
    started = time.time()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if done.returncode == TEMPORARY:
        raise TemporaryFailure(f"{name}: exit 75: {done.stderr.strip()[-500:]}")
    if done.returncode != 0:
        raise StepFailed(name, done.returncode, done.stderr)
    return {"step": name, "seconds": round(time.time() - started, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--as-of", required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--address", default=None, help="Ray cluster address (default: start or find a local one)")
    p.add_argument("--retain", default="retain", help="the retain binary on every node")
    p.add_argument("--input", default=None)
    p.add_argument("--output", default=None)
    p.add_argument("--retries", type=int, default=2, help="retries of a step that exits 75")
    p.add_argument(
        "--run-id",
        default=None,
        help="the night's id, given to every command (default: night-<as-of>-<UTC time>): "
        "the campaign_id a readout finds the night's plan under",
    )
    p.add_argument("--night-cpus", type=float, default=RESOURCES["night"]["num_cpus"])
    p.add_argument("--shard-memory-gb", type=float, default=RESOURCES["shard"]["memory"] / 1024**3)
    p.add_argument("--night-memory-gb", type=float, default=RESOURCES["night"]["memory"] / 1024**3)
    a = p.parse_args(argv)

    # Local paths as the driver sees them: a task runs in the driver's folder (on a
    # cluster of several machines, the roots are object-store URIs and the config is on
    # every node at the same path).
    common = ["--config", os.path.abspath(a.config)]
    if a.input:
        common += ["--input", a.input]
    if a.output:
        common += ["--output", a.output]
    run_id = a.run_id or f"night-{a.as_of}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    steps = night.steps(a.as_of, a.shards, common, run_id)
    env = {k: v for k, v in os.environ.items() if k.startswith(("RETAIN_", "AWS_", "GOOGLE_"))}
    env.setdefault("RETAIN_LOG_FORMAT", "json")
    ray.init(address=a.address, runtime_env={"env_vars": env}, log_to_driver=False)
    resources = {
        "night": {"num_cpus": a.night_cpus, "memory": int(a.night_memory_gb * 1024**3)},
        "shard": {"num_cpus": 1, "memory": int(a.shard_memory_gb * 1024**3)},
    }
    refs = {}
    for s in steps:
        task = run_step.options(
            name=s.name, max_retries=a.retries, retry_exceptions=[TemporaryFailure], **resources[s.kind]
        )
        refs[s.name] = task.remote(s.name, [a.retain] + s.argv, os.getcwd(), *[refs[d] for d in s.after])
    started = time.time()
    pending = list(refs.values())
    names = {ref: name for name, ref in refs.items()}
    failed = None
    while pending and failed is None:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            done = ray.get(ready[0])
            print(f"done {done['step']} in {done['seconds']} s", flush=True)
        except Exception as e:  # the step's own failure, or a dependency's
            failed = (names[ready[0]], e)
    if failed is not None:
        name, e = failed
        cause = getattr(e, "cause", None) or e
        if isinstance(cause, TemporaryFailure):
            cause = StepFailed(name, TEMPORARY, f"still failing after {a.retries} retries: {cause}")
        step = next((s for s in steps if s.name == getattr(cause, "step", name)), None)
        where = f" (shard {step.shard} of {a.shards})" if step is not None and step.shard is not None else ""
        print(f"night {a.as_of} failed at {getattr(cause, 'step', name)}{where}: {cause}", file=sys.stderr)
        return 1
    print(f"night {a.as_of} committed: {len(steps)} steps, {a.shards} shards, {time.time() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
