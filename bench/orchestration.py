"""dagster_overhead_s (`topics` topics) and dagster_overhead_s_200 (`topics_200` topics): Dagster's price.

A Dagster run: `generation_job` executed in process (as `bulkgen generate` and `bulkgen run` do)
over one partition range of the topics, i.e. one single-run backfill, on a SQLite instance in a
temp DAGSTER_HOME (the CLI's own instance configuration), after the fix asset ran there (the gate
reads it). The same generation called directly: `generate_conversations` with the same topics,
generator (template, no delay) and settings. Each on a fresh clone of the fixed database, in
pairs, `repeats` times; the median of the per-pair differences is the overhead. The first pair
also carries the process's first Dagster run (nothing is warmed up beforehand).

Beside them, the same job shape over the same partitions with an asset that does nothing at all
(`null_asset_s`): Dagster's own bookkeeping for that many partitions (the run, and a planned and a
materialization event per partition), which no asset code can go below. And that floor for the
larger range under each instance storage Dagster offers (`null_asset_s_by_storage`): SQLite (the
CLI's), PostgreSQL (the production instance's, on the benchmark's own server), PostgreSQL with
batched event writes (DAGSTER_EVENT_BATCH_SIZE), and with one planned event per run instead of one
per partition (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS, which also stops Dagster marking
the partitions of a failed run failed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import dagster as dg
import psycopg

from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from bench.common import Server, median, timed, topic_keys
from pipelines.definitions import defs
from pipelines.local_instance import LOCAL_INSTANCE_CONFIG
from assets.partitions import topics as topic_partitions
from resources.conversation_store import ConversationStore
from resources.database import TargetDatabase
from resources.generators import TemplateGenerator

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
BATCHED = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}
STORAGES = {  # name -> (PostgreSQL storage?, environment)
    "sqlite": (False, {}),
    "postgres": (True, {}),
    "postgres_batched_events": (True, BATCHED),
    "postgres_batched_events_one_planned_event": (
        True, {**BATCHED, "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"}),
}

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)

    @dg.asset(partitions_def=topic_partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def null_topic_asset(context) -> dg.MaterializeResult:
        """Materializes its partitions doing nothing: the floor of Dagster's own price."""
        return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})


NULL_JOB = dg.Definitions(
    assets=[null_topic_asset],
    jobs=[dg.define_asset_job("null_job", selection=[null_topic_asset], executor_def=dg.in_process_executor)],
).resolve_job_def("null_job")


def measure(server: Server, fixed: str, workdir: Path, *, topics: int, topics_200: int, repeats: int) -> dict:
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(LOCAL_INSTANCE_CONFIG, home / "dagster.yaml")
    keys = topic_keys(max(topics, topics_200))
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(topic_partitions.name, keys)  # in order: any prefix is one range
            small = _pairs(server, fixed, workdir, instance, keys[:topics], repeats)
            large = _pairs(server, fixed, workdir, instance, keys[:topics_200], repeats)
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    by_storage = {name: _null_on(server, workdir / f"home-{name}", keys[:topics_200], repeats, postgres, env)
                  for name, (postgres, env) in STORAGES.items()}
    return {
        "dagster_overhead_s": small["overhead_s"],
        "dagster_overhead_s_200": large["overhead_s"],
        "raw": {f"topics_{topics}": small, f"topics_{topics_200}": large,
                f"null_asset_s_by_storage_{topics_200}": by_storage},
    }


def _null_on(server: Server, home: Path, keys: list[str], repeats: int, postgres: bool, env: dict) -> float:
    """Median seconds of the do-nothing asset over `keys` on a new instance with that storage and environment."""
    home.mkdir(parents=True)
    config = LOCAL_INSTANCE_CONFIG.read_text()
    database = None
    if postgres:
        database = server.create(prefix="bench_dagster")
        info = psycopg.conninfo.conninfo_to_dict(server.dsn(database))
        config += f"\nstorage:\n  postgres:\n    postgres_url: postgresql+psycopg2://{info['user']}@/{database}?host={info['host']}\n"
    (home / "dagster.yaml").write_text(config)
    try:
        with _environment(env), dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(topic_partitions.name, keys)
            return median([_null(instance, keys) for _ in range(repeats)])
    finally:
        if database:
            server.drop(database)


@contextlib.contextmanager
def _environment(values: dict):
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _pairs(server: Server, fixed: str, workdir: Path, instance, keys: list[str], repeats: int) -> dict:
    dagster_s, direct_s, null_s = [], [], []
    for rep in range(repeats):
        dagster_s.append(_one(server, fixed, workdir / f"dagster-{len(keys)}-{rep}", keys, instance))
        direct_s.append(_one(server, fixed, workdir / f"direct-{len(keys)}-{rep}", keys, None))
        null_s.append(_null(instance, keys))
    differences = [d - g for d, g in zip(dagster_s, direct_s)]
    return {"overhead_s": median(differences), "topics": len(keys), "items": len(keys) * 24,
            "dagster_s": dagster_s, "direct_s": direct_s, "differences_s": differences,
            "null_asset_s": median(null_s), "null_asset_runs_s": null_s}


def _null(instance, keys: list[str]) -> float:
    """Seconds for a run of the do-nothing asset over `keys`."""
    seconds, result = timed(lambda: NULL_JOB.execute_in_process(
        instance=instance, run_config=QUIET,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}))
    if len(result.asset_materializations_for_node("null_topic_asset")) != len(keys):
        raise RuntimeError("the null asset did not materialize every partition")
    return seconds


def _one(server: Server, fixed: str, root: Path, keys: list[str], instance) -> float:
    """Seconds for one generation over `keys`: a Dagster run when `instance` is given, else the direct call."""
    name = server.create(fixed)
    dsn = server.dsn(name)
    store = ConversationStore(root=str(root))
    generator = TemplateGenerator(delay_ms=0)
    try:
        server.settle()
        if instance is None:
            def run():
                with psycopg.connect(dsn, autocommit=True) as conn:
                    result = generate_conversations(conn, keys, generator, store, JobSettings(), label="bench direct")
                return result.status == "completed"
        else:
            def run():
                result = defs.resolve_job_def("generation_job").execute_in_process(
                    instance=instance,
                    tags={"dagster/asset_partition_range_start": keys[0],
                          "dagster/asset_partition_range_end": keys[-1]},
                    resources={"database": TargetDatabase(url=dsn), "conversation_store": store,
                               "generator": generator},
                    run_config=QUIET,
                    raise_on_error=False,
                )
                materialized = result.asset_materializations_for_node("topic_conversations")
                return result.success and len(materialized) == len(keys)
        seconds, ok = timed(run)
        if not ok:
            what = "Dagster run" if instance else "direct generation"
            raise RuntimeError(f"the {what} over {len(keys)} topics failed")
        with psycopg.connect(dsn) as conn:
            (done,) = conn.execute("SELECT count(*) FROM batch_items WHERE status = 'completed'").fetchone()
        if done != len(keys) * 24:
            raise RuntimeError(f"{done} items completed, {len(keys) * 24} expected")
        return seconds
    finally:
        server.drop(name)
        shutil.rmtree(root, ignore_errors=True)
