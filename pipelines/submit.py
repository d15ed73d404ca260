"""Runs through the instance's queue: `bulkgen run --submit`, one run per group of topics.

Each run is created from the code location (`pipelines.definitions`) as the UI creates it and submitted to
the instance's run coordinator; the daemon launches it with the instance's run launcher (a process
per run by default, a Kubernetes job with dagster-k8s's K8sRunLauncher), so runs for different topics
execute at once on separate workers, sharing the application database, the conversation store and
the API's limits. Each run gets its share of the limits (the limits divided by the runs the queue
lets run at once): a run needs no state beyond its own to stay within them.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from resources.limits import share_of

LIMIT_SETTINGS = ("requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute")


def runs_at_once(instance: dg.DagsterInstance, runs: int) -> int:
    """How many of `runs` the instance's queue lets execute at the same time."""
    queue = instance.get_concurrency_config().run_queue_config
    limit = queue.max_concurrent_runs if queue is not None else None
    return max(1, min(runs, limit) if limit is not None and limit >= 0 else runs)


def shared_limits(settings: dict, generator_defaults: dict, at_once: int) -> dict:
    """The generator's settings with each per-minute limit divided between `at_once` runs."""
    shared = dict(settings)
    for name in LIMIT_SETTINGS:
        limit = settings.get(name, generator_defaults.get(name))
        if limit:
            shared[name] = share_of(limit, at_once)
    return shared


def run_config(generator: str, settings: dict, generation: dict) -> dict:
    config: dict = {"resources": {"generator": {"config": {"kind": generator, "settings": settings}}}}
    if generation:
        config["ops"] = {"topic_conversations": {"config": generation}}
    return config


def submit_runs(instance: dg.DagsterInstance, job_name: str, ranges: Sequence[dg.PartitionKeyRange],
                config: dict) -> list[str]:
    """Submit one run of `job_name` per partition range to the instance's queue; their run ids."""
    from dagster import __version__
    from dagster._cli.job import _create_run
    from dagster._cli.workspace.cli_target import (
        WorkspaceOpts,
        get_code_location_from_workspace,
        get_remote_job_from_remote_repo,
        get_remote_repository_from_code_location,
        get_workspace_from_cli_opts,
    )

    opts = WorkspaceOpts(module_name=("pipelines.definitions",))  # the code location, wherever it is installed
    run_ids = []
    with get_workspace_from_cli_opts(instance, version=__version__, workspace_opts=opts) as workspace:
        location = get_code_location_from_workspace(workspace, None)
        repository = get_remote_repository_from_code_location(location, None)
        job = get_remote_job_from_remote_repo(repository, job_name)
        for key_range in ranges:
            tags = {"dagster/asset_partition_range_start": key_range.start,
                    "dagster/asset_partition_range_end": key_range.end, "bulkgen/submitted": "cli"}
            run = _create_run(instance=instance, code_location=location, remote_repo=repository, remote_job=job,
                              run_config=config, tags=tags, op_selection=None, run_id=None)
            instance.submit_run(run.run_id, workspace)
            run_ids.append(run.run_id)
    return run_ids
