"""Every verification check passes on a sound run and fails, naming the offending ids, on a database broken on
purpose."""

import psycopg
import pytest

from assets.audit.contract import CONTRACT
from assets.verification.checks import CHECKS, verify_topics
from tests.verification.conftest import LABEL, TOPICS


def _verify(run, topics=TOPICS, live_runs=frozenset()):
    with psycopg.connect(run.dsn) as conn:
        return verify_topics(conn, CONTRACT, topics, run.store, set(live_runs))


def _one(dsn, query, params=()):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()


def _break(dsn, statement, params=()):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


def _item(run, position=7):
    """The id (text) and file of one completed item of the sound run."""
    item_id, path = _one(
        run.dsn,
        "SELECT b.id::text, c.file_path FROM batch_items b JOIN conversations c ON c.id = b.conversation_id"
        " WHERE b.batch_job_id = %s AND b.position = %s", [run.job_id, position],
    )
    return item_id, path


def test_a_sound_run_passes_every_check_with_its_numbers(sound_run):
    result = _verify(sound_run)
    assert result.jobs == [sound_run.job_id] and result.topics_without_job == []
    assert list(result.verdicts) == list(CHECKS)
    assert {name: v.offending for name, v in result.verdicts.items()} == {name: [] for name in CHECKS}
    assert result.passed
    numbers = {name: v.numbers for name, v in result.verdicts.items()}
    assert numbers["code_values_accepted"] == {"columns": 9, "values": 20}  # every value-set column generation writes
    assert numbers["counters_match_items"] == {"jobs": 1, "items": 48, "completed": 48, "failed": 0}
    assert numbers["completed_items_have_conversations"] == {"completed_items": 48, "sound": 48}
    assert numbers["items_per_topic"] == {"topics": 2, "items": 48, "expected_per_topic": 24}
    assert numbers["nothing_left_processing"] == {"jobs_processing": 0, "items_processing": 0}


def test_the_legacy_constraints_fail_the_code_values_check(legacy_db, store):
    with psycopg.connect(legacy_db) as conn:
        verdict = verify_topics(conn, CONTRACT, TOPICS, store, set()).verdicts["code_values_accepted"]
    assert not verdict.passed
    problems = " ".join(row["problem"] for row in verdict.offending)
    assert "batch_jobs.status refuses 'queued', 'processing'" in problems and "batch_jobs_status_check" in problems
    assert "batch_items.status refuses 'cancelled'" in problems


def test_a_stuck_processing_item(sound_run):
    item_id, _ = _item(sound_run)
    _break(sound_run.dsn, "UPDATE batch_items SET status = 'processing' WHERE id = %s", [item_id])
    verdict = _verify(sound_run).verdicts["nothing_left_processing"]
    assert not verdict.passed
    assert verdict.offending == [{"kind": "item", "id": item_id, "job_id": str(sound_run.job_id),
                                  "job_status": "completed", "run": LABEL}]


def test_a_job_left_processing_passes_only_while_its_run_is_live(sound_run):
    _break(sound_run.dsn, "UPDATE batch_jobs SET status = 'processing' WHERE id = %s", [sound_run.job_id])
    verdict = _verify(sound_run).verdicts["nothing_left_processing"]
    assert not verdict.passed and [row["id"] for row in verdict.offending] == [str(sound_run.job_id)]
    assert _verify(sound_run, live_runs={LABEL}).verdicts["nothing_left_processing"].passed


def test_a_wrong_counter(sound_run):
    _break(sound_run.dsn, "UPDATE batch_jobs SET completed_items = completed_items - 1 WHERE id = %s",
           [sound_run.job_id])
    verdict = _verify(sound_run).verdicts["counters_match_items"]
    assert not verdict.passed
    (row,) = verdict.offending
    assert row["job_id"] == str(sound_run.job_id) and (row["completed_items"], row["completed"]) == (47, 48)
    assert row["wrong"] == ["completed_items = completed + failed", "successful_items <= completed_items"]


def test_more_successes_than_completions(sound_run):
    _break(sound_run.dsn, "UPDATE batch_jobs SET successful_items = 49 WHERE id = %s", [sound_run.job_id])
    (row,) = _verify(sound_run).verdicts["counters_match_items"].offending
    assert row["wrong"] == ["successful_items <= completed_items", "successful_items = completed"]


def test_a_missing_file(sound_run):
    item_id, path = _item(sound_run)
    sound_run.store.path(path).unlink()
    verdict = _verify(sound_run).verdicts["completed_items_have_conversations"]
    assert not verdict.passed
    (row,) = verdict.offending
    assert (row["item_id"], row["file_path"], row["problem"]) == (item_id, path, "its conversation's file is missing")


def test_a_file_that_does_not_parse(sound_run):
    item_id, path = _item(sound_run)
    sound_run.store.path(path).write_text('{"turns": [')
    (row,) = _verify(sound_run).verdicts["completed_items_have_conversations"].offending
    assert row["item_id"] == item_id and row["problem"].startswith("its conversation's file does not parse")


def test_a_file_the_app_would_refuse(sound_run):
    """Our former format (turns, no training pairs) parses, yet the app's validator refuses it: so does the check."""
    item_id, path = _item(sound_run)
    sound_run.store.path(path).write_text('{"dataset_metadata": {"dataset_name": "x", "version": "1", "total_turns": 2},'
                                          ' "consultant_profile": {"name": "c", "business": "b"}, "training_pairs": []}')
    (row,) = _verify(sound_run).verdicts["completed_items_have_conversations"].offending
    assert (row["item_id"], row["problem"]) == (
        item_id, "conversation file invalid at training_pairs: [] should be non-empty")


def test_a_completed_item_with_no_conversation(sound_run):
    item_id, _ = _item(sound_run)
    _break(sound_run.dsn, "UPDATE batch_items SET conversation_id = NULL WHERE id = %s", [item_id])
    (row,) = _verify(sound_run).verdicts["completed_items_have_conversations"].offending
    assert (row["item_id"], row["problem"]) == (item_id, "points at no conversation")


def test_a_duplicate_item(sound_run):
    item_id, _ = _item(sound_run)
    (copy_id,) = _one(
        sound_run.dsn,
        "INSERT INTO batch_items (batch_job_id, position, topic, tier, parameters, status)"
        " SELECT batch_job_id, 1000, topic, tier, parameters, 'failed' FROM batch_items WHERE id = %s"
        " RETURNING id::text", [item_id],
    )
    with psycopg.connect(sound_run.dsn, autocommit=True) as conn:
        topic = conn.execute("SELECT topic FROM batch_items WHERE id = %s", [item_id]).fetchone()[0]
    verdicts = _verify(sound_run).verdicts
    (duplicate,) = verdicts["no_duplicate_items"].offending
    assert duplicate["item_ids"] == [item_id, copy_id] and duplicate["topic"] == topic
    (count,) = verdicts["items_per_topic"].offending
    assert (count["job_id"], count["topic"], count["items"], count["expected"]) == (
        str(sound_run.job_id), topic, 25, 24)
    assert "total_items = items" in verdicts["counters_match_items"].offending[0]["wrong"]


def test_a_topic_without_a_batch_job(sound_run):
    verdict = _verify(sound_run, topics=[*TOPICS, "grandparent_529"]).verdicts["items_per_topic"]
    assert not verdict.passed
    assert verdict.offending == [{"topic": "grandparent_529", "job_id": None, "items": 0, "problem": "no batch job"}]


def test_verification_writes_nothing(sound_run):
    with psycopg.connect(sound_run.dsn) as conn:
        verify_topics(conn, CONTRACT, TOPICS, sound_run.store, set())
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                conn.execute("DELETE FROM batch_items")
