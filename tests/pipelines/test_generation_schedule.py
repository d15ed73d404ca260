"""The daily generation schedule: one run request whose partition range covers exactly the active topics."""

import dagster as dg
import psycopg

from assets.partitions import active_topics, add_topic_partitions, topics
from pipelines.schedules import daily_generation_schedule
from resources.database import TargetDatabase


def _covered(instance, request: dg.RunRequest) -> list[str]:
    order = instance.get_dynamic_partitions(topics.name)
    start = order.index(request.tags["dagster/asset_partition_range_start"])
    return order[start: order.index(request.tags["dagster/asset_partition_range_end"]) + 1]


def test_one_run_over_exactly_the_active_topics(legacy_db):
    with dg.instance_for_test() as instance, psycopg.connect(legacy_db, autocommit=True) as conn:
        add_topic_partitions(instance, conn)
        keys = list(active_topics(conn))
        # A topic in the middle of the partitions turned inactive; a new one has no partition yet.
        conn.execute("UPDATE training_topics SET is_active = false WHERE topic_key = %s", [keys[5]])
        conn.execute("INSERT INTO training_topics (topic_key, name) VALUES ('crypto_taxes', 'Crypto taxes')")
        context = dg.build_schedule_context(instance=instance, resources={"database": TargetDatabase(url=legacy_db)})
        (request,) = daily_generation_schedule.evaluate_tick(context).run_requests
        covered = _covered(instance, request)
    assert sorted(covered) == sorted([*keys[:5], *keys[6:], "crypto_taxes"])
    assert keys[5] not in covered
    assert daily_generation_schedule.job_name == "verified_generation_job"
    assert daily_generation_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    schedule = daily_generation_schedule
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "UTC")


def test_skips_without_active_topics(legacy_db):
    with dg.instance_for_test() as instance, psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("UPDATE training_topics SET is_active = false")
        context = dg.build_schedule_context(instance=instance, resources={"database": TargetDatabase(url=legacy_db)})
        data = daily_generation_schedule.evaluate_tick(context)
    assert data.run_requests == [] and data.skip_message == "no active training topics"
