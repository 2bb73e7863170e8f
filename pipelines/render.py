#!/usr/bin/env python3
"""Render the night of shards (pipelines/night.py) for the orchestrators that want a file:

    python3 pipelines/render.py            write pipelines/argo/nightly.yaml and
                                           pipelines/airflow/retain_nightly.py
    python3 pipelines/render.py --check    exit 1 if either differs from a fresh render

Both run exactly the commands the Ray driver runs (one list, `night.steps`), for SHARDS
shards; `make test` runs --check, so an edit of the list that is not rendered fails.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import night  # noqa: E402

SHARDS = 4
# Placeholders the orchestrator fills: the night's date, its run id and the pipeline config.
AS_OF = "{{as_of}}"
RUN_ID = "{{run_id}}"
CONFIG = "/etc/retain/nightly.toml"
HERE = os.path.dirname(os.path.abspath(__file__))


def argo(steps):
    """An Argo Workflow: one DAG task per step, each the `retain` container."""
    lines = [
        "# Rendered by pipelines/render.py from pipelines/night.py: do not edit by hand.",
        "# A night of retain as shards on Argo Workflows: the commands the Ray driver runs.",
        "apiVersion: argoproj.io/v1alpha1",
        "kind: Workflow",
        "metadata:",
        "  generateName: retain-nightly-",
        "spec:",
        "  entrypoint: night",
        "  arguments:",
        "    parameters:",
        "      - name: as_of",
        "  templates:",
        "    - name: retain",
        "      inputs:",
        "        parameters:",
        "          - name: args",
        "          - name: cpu",
        "          - name: memory",
        "      # Exit 75 is a temporary failure: retried; any other failure is final.",
        "      retryStrategy:",
        "        limit: 2",
        "        expression: \"asInt(lastRetry.exitCode) == 75\"",
        "      container:",
        "        image: retain:latest",
        "        command: [sh, -c]",
        "        args: [\"exec retain {{inputs.parameters.args}}\"]",
        "        resources:",
        "          requests: {cpu: \"{{inputs.parameters.cpu}}\", memory: \"{{inputs.parameters.memory}}\"}",
        "    - name: night",
        "      dag:",
        "        tasks:",
    ]
    for s in steps:
        args = " ".join(s.argv).replace(AS_OF, "{{workflow.parameters.as_of}}").replace(RUN_ID, "{{workflow.name}}")
        cpu, memory = ("2", "8Gi") if s.kind == "night" else ("1", "2Gi")
        lines += [
            f"          - name: {s.name}",
            "            template: retain",
        ]
        if s.after:
            lines.append(f"            dependencies: {json.dumps(s.after)}")
        lines += [
            "            arguments:",
            "              parameters:",
            f"                - {{name: args, value: {json.dumps(args)}}}",
            f"                - {{name: cpu, value: \"{cpu}\"}}",
            f"                - {{name: memory, value: \"{memory}\"}}",
        ]
    return "\n".join(lines) + "\n"


def airflow(steps):
    """An Airflow DAG: one BashOperator per step."""
    out = [
        '"""Rendered by pipelines/render.py from pipelines/night.py: do not edit by hand.',
        "",
        "A night of retain as shards on Airflow: the commands the Ray driver runs, with the",
        "night's date from the run's logical date and the run's id as the night's. A failed",
        "task is retried twice (BashOperator cannot retry on retain's exit 75 alone;",
        "rerunning a retain command is always safe).",
        '"""',
        "",
        "import pendulum",
        "from airflow import DAG",
        "from airflow.operators.bash import BashOperator",
        "",
        "with DAG(",
        '    dag_id="retain_nightly",',
        '    schedule="30 2 * * *",',
        '    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),',
        "    catchup=False,",
        "    max_active_runs=1,",
        ") as dag:",
        "    tasks = {}",
    ]
    for s in steps:
        cmd = "retain " + " ".join(s.argv).replace(AS_OF, "{{ ds }}").replace(RUN_ID, "{{ run_id }}")
        pool_slots = 2 if s.kind == "night" else 1
        out += [
            f"    tasks[{s.name!r}] = BashOperator(",
            f"        task_id={s.name!r},",
            f"        bash_command={cmd!r},",
            "        retries=2,",
            "        retry_exponential_backoff=True,",
            f"        pool_slots={pool_slots},",
            "    )",
        ]
        for d in s.after:
            out.append(f"    tasks[{d!r}] >> tasks[{s.name!r}]")
    return "\n".join(out) + "\n"


def rendered():
    steps = night.steps(AS_OF, SHARDS, ["--config", CONFIG], RUN_ID)
    return {
        os.path.join(HERE, "argo", "nightly.yaml"): argo(steps),
        os.path.join(HERE, "airflow", "retain_nightly.py"): airflow(steps),
    }


def main(argv):
    stale = []
    for path, text in rendered().items():
        if "--check" in argv:
            if not os.path.exists(path) or open(path).read() != text:
                stale.append(path)
        else:
            with open(path, "w") as f:
                f.write(text)
    if stale:
        print("not rendered from pipelines/night.py: " + ", ".join(stale) + " (run python3 pipelines/render.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
