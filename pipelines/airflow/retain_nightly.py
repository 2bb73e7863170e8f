"""Rendered by pipelines/render.py from pipelines/night.py: do not edit by hand.

A night of retain as shards on Airflow: the commands the Ray driver runs, with the
night's date from the run's logical date and the run's id as the night's. A failed
task is retried twice (BashOperator cannot retry on retain's exit 75 alone;
rerunning a retain command is always safe).
"""

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="retain_nightly",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
) as dag:
    tasks = {}
    tasks['train'] = BashOperator(
        task_id='train',
        bash_command='retain train --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }}',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=2,
    )
    tasks['features-0'] = BashOperator(
        task_id='features-0',
        bash_command='retain features --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 0/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['score-0'] = BashOperator(
        task_id='score-0',
        bash_command='retain score --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 0/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['score-0']
    tasks['features-0'] >> tasks['score-0']
    tasks['grace-0'] = BashOperator(
        task_id='grace-0',
        bash_command='retain grace --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 0/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['grace-0']
    tasks['candidates-0'] = BashOperator(
        task_id='candidates-0',
        bash_command='retain candidates --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 0/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['candidates-0']
    tasks['features-0'] >> tasks['candidates-0']
    tasks['features-1'] = BashOperator(
        task_id='features-1',
        bash_command='retain features --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 1/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['score-1'] = BashOperator(
        task_id='score-1',
        bash_command='retain score --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 1/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['score-1']
    tasks['features-1'] >> tasks['score-1']
    tasks['grace-1'] = BashOperator(
        task_id='grace-1',
        bash_command='retain grace --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 1/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['grace-1']
    tasks['candidates-1'] = BashOperator(
        task_id='candidates-1',
        bash_command='retain candidates --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 1/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['candidates-1']
    tasks['features-1'] >> tasks['candidates-1']
    tasks['features-2'] = BashOperator(
        task_id='features-2',
        bash_command='retain features --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 2/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['score-2'] = BashOperator(
        task_id='score-2',
        bash_command='retain score --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 2/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['score-2']
    tasks['features-2'] >> tasks['score-2']
    tasks['grace-2'] = BashOperator(
        task_id='grace-2',
        bash_command='retain grace --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 2/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['grace-2']
    tasks['candidates-2'] = BashOperator(
        task_id='candidates-2',
        bash_command='retain candidates --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 2/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['candidates-2']
    tasks['features-2'] >> tasks['candidates-2']
    tasks['features-3'] = BashOperator(
        task_id='features-3',
        bash_command='retain features --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 3/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['score-3'] = BashOperator(
        task_id='score-3',
        bash_command='retain score --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 3/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['score-3']
    tasks['features-3'] >> tasks['score-3']
    tasks['grace-3'] = BashOperator(
        task_id='grace-3',
        bash_command='retain grace --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 3/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['grace-3']
    tasks['candidates-3'] = BashOperator(
        task_id='candidates-3',
        bash_command='retain candidates --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 3/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['train'] >> tasks['candidates-3']
    tasks['features-3'] >> tasks['candidates-3']
    tasks['prices'] = BashOperator(
        task_id='prices',
        bash_command='retain prices --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shards 4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=2,
    )
    tasks['candidates-0'] >> tasks['prices']
    tasks['candidates-1'] >> tasks['prices']
    tasks['candidates-2'] >> tasks['prices']
    tasks['candidates-3'] >> tasks['prices']
    tasks['interventions-0'] = BashOperator(
        task_id='interventions-0',
        bash_command='retain interventions --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 0/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['prices'] >> tasks['interventions-0']
    tasks['score-0'] >> tasks['interventions-0']
    tasks['interventions-1'] = BashOperator(
        task_id='interventions-1',
        bash_command='retain interventions --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 1/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['prices'] >> tasks['interventions-1']
    tasks['score-1'] >> tasks['interventions-1']
    tasks['interventions-2'] = BashOperator(
        task_id='interventions-2',
        bash_command='retain interventions --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 2/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['prices'] >> tasks['interventions-2']
    tasks['score-2'] >> tasks['interventions-2']
    tasks['interventions-3'] = BashOperator(
        task_id='interventions-3',
        bash_command='retain interventions --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shard 3/4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=1,
    )
    tasks['prices'] >> tasks['interventions-3']
    tasks['score-3'] >> tasks['interventions-3']
    tasks['commit'] = BashOperator(
        task_id='commit',
        bash_command='retain commit --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }} --shards 4',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=2,
    )
    tasks['grace-0'] >> tasks['commit']
    tasks['interventions-0'] >> tasks['commit']
    tasks['grace-1'] >> tasks['commit']
    tasks['interventions-1'] >> tasks['commit']
    tasks['grace-2'] >> tasks['commit']
    tasks['interventions-2'] >> tasks['commit']
    tasks['grace-3'] >> tasks['commit']
    tasks['interventions-3'] >> tasks['commit']
    tasks['monitor'] = BashOperator(
        task_id='monitor',
        bash_command='retain monitor --as-of {{ ds }} --config /etc/retain/nightly.toml --run-id {{ run_id }}',
        retries=2,
        retry_exponential_backoff=True,
        pool_slots=2,
    )
    tasks['commit'] >> tasks['monitor']
