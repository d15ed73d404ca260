"""The topic sensor against a real database: each newly active topic gets a partition, once, and nothing else."""

import dagster as dg
import psycopg

from assets.partitions import topic_partition_key, topics
from pipelines.sensors import topic_partitions_sensor
from resources.database import TargetDatabase


def test_adds_exactly_the_newly_active_topics(legacy_db):
    cursor = [None]
    with dg.DagsterInstance.ephemeral() as instance:

        def tick() -> list[str]:
            """One evaluation, its partition requests applied as the daemon applies them; returns the keys added."""
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor[0], resources={"database": TargetDatabase(url=legacy_db)}
            )
            result = topic_partitions_sensor(context)
            cursor[0] = result.cursor
            added = [key for request in result.dynamic_partitions_requests or [] for key in request.partition_keys]
            instance.add_dynamic_partitions(topics.name, added)
            return added

        assert len(tick()) == 20  # the demo's active topics, all new to a first tick
        assert tick() == []
        with psycopg.connect(legacy_db, autocommit=True) as conn:
            conn.execute("INSERT INTO training_topics (topic_key, name, is_active) VALUES"
                         " ('crypto_taxes', 'Crypto taxes', true), ('Pet Insurance...', 'Pet insurance', true),"
                         " ('paused_topic', 'Paused', false)")
        assert sorted(tick()) == ["crypto_taxes", topic_partition_key("Pet Insurance...")]  # the odd key slugged
        assert tick() == []
        with psycopg.connect(legacy_db, autocommit=True) as conn:
            conn.execute("UPDATE training_topics SET is_active = true WHERE topic_key = 'paused_topic'")
        assert tick() == ["paused_topic"]
        assert tick() == []
        assert len(instance.get_dynamic_partitions(topics.name)) == 23
    assert topic_partitions_sensor.default_status == dg.DefaultSensorStatus.STOPPED
