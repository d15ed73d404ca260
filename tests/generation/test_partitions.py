"""Topic partitions: valid, unique slugs; partitions for active topics only; any selection as one range."""

import dagster as dg
import psycopg
import pytest

from pipelines.cli import main
from assets.partitions import (
    TopicSelectionError,
    active_topics,
    add_topic_partitions,
    select_topics,
    selection_range,
    topic_partition_key,
    topics,
)


def test_plain_keys_stay_and_others_become_unique_valid_slugs():
    assert topic_partition_key("roth_ira_conversion") == "roth_ira_conversion"
    odd = ["Roth IRA...conversion", "Roth IRA conversion", "tab\there", "new\nline", "ümlaut/α", "...", "a" * 300]
    keys = [topic_partition_key(k) for k in odd]
    assert len(set(keys)) == len(odd)
    for key in keys:
        assert "..." not in key and key.isprintable() and len(key) <= 100
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("check", keys)  # Dagster validates every key
        assert list(instance.get_dynamic_partitions("check")) == keys


def test_partitions_for_active_topics_and_selection_errors(legacy_db, instance):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("UPDATE training_topics SET is_active = false WHERE topic_key = 'esg_investing'")
        conn.execute("INSERT INTO training_topics (topic_key, name) VALUES ('Odd Key...', 'Odd')")
        added = add_topic_partitions(instance, conn)
        assert len(added) == 20 and "esg_investing" not in added and topic_partition_key("Odd Key...") in added
        assert add_topic_partitions(instance, conn) == []  # idempotent
        # Topic keys and partition keys both select; the map goes partition key -> topic key.
        selected = select_topics(conn, ["Odd Key...", "ignored_401k", "ignored_401k"])
        assert selected == {topic_partition_key("Odd Key..."): "Odd Key...", "ignored_401k": "ignored_401k"}
        with pytest.raises(TopicSelectionError, match="esg_investing, nope"):
            select_topics(conn, ["esg_investing", "nope", "ignored_401k"])
        assert len(select_topics(conn, None)) == 20


def test_topics_are_ordered_oldest_first_where_the_table_has_created_at(legacy_db):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("UPDATE training_topics SET created_at = now() - interval '1 day' * length(topic_key)")
        by_age = [k for (k,) in conn.execute(
            "SELECT topic_key FROM training_topics WHERE is_active ORDER BY length(topic_key) DESC, topic_key")]
        assert list(active_topics(conn).values()) == by_age
        conn.execute("ALTER TABLE training_topics DROP COLUMN created_at")  # optional in the contract
        assert list(active_topics(conn).values()) == sorted(by_age)


@pytest.mark.slow
def test_a_run_on_topics_without_created_at_completes(legacy_db, tmp_path, monkeypatch, capsys):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE training_topics DROP COLUMN created_at, DROP COLUMN updated_at")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "conversations"))
    monkeypatch.setenv("GENERATOR_DELAY_MS", "0")
    assert main(["run", "--database-url", legacy_db, "--topics", "ignored_401k,esg_investing"]) == 0
    assert "48 completed" in capsys.readouterr().out


def test_a_scattered_selection_becomes_one_range(instance):
    instance.add_dynamic_partitions(topics.name, list("abcdefg"))
    assert selection_range(instance, ["c", "d", "e"]) == dg.PartitionKeyRange("c", "e")
    assert list(instance.get_dynamic_partitions(topics.name)) == list("abcdefg")  # adjacent: untouched
    key_range = selection_range(instance, ["f", "b", "d"])
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        covered = topics.get_partition_keys_in_range(key_range)
    assert sorted(covered) == ["b", "d", "f"]
    assert sorted(instance.get_dynamic_partitions(topics.name)) == list("abcdefg")  # same keys, new order
    with pytest.raises(TopicSelectionError, match="zz"):
        selection_range(instance, ["a", "zz"])
