"""The batch lifecycle against real PostgreSQL: job shape, exclusive claims, exact counters under concurrency."""

import threading
import uuid
from collections import Counter

import psycopg
import pytest

from assets.generation.batch import (
    ConversationInsert,
    ConversationRow,
    Item,
    JobBusy,
    JobSettings,
    Outcome,
    claim_items,
    job_summary,
    open_job,
    record_outcomes,
    start_job,
    unlock_job,
)
from assets.generation.scaffolding import load_scaffolding

TOPICS = ["ignored_401k", "esg_investing", "grandparent_529"]


def _open(dsn, topics=TOPICS, settings=JobSettings()):
    conn = psycopg.connect(dsn, autocommit=True)
    return conn, open_job(conn, load_scaffolding(conn, topics), settings, label="test", generator="template")


def test_a_new_job_is_queued_with_one_item_per_topic_persona_arc(fixed_db):
    conn, job = _open(fixed_db, settings=JobSettings(concurrent_processing=5, error_handling="stop", priority="high"))
    with conn:
        row = conn.execute(
            "SELECT status, job_type, priority, total_items, concurrent_processing, error_handling, tier,"
            " shared_parameters, name, completed_items, successful_items, failed_items FROM batch_jobs WHERE id = %s",
            [job.id],
        ).fetchone()
        assert row[:7] == ("queued", "generation", "high", 72, 5, "stop", None)  # tier: mixed template/edge_case
        assert row[7]["topics"] == sorted(TOPICS) and len(row[7]["personas"]) == 3 and len(row[7]["arcs"]) == 8
        assert all(t in row[8] for t in TOPICS) and row[9:] == (0, 0, 0)
        items = conn.execute(
            "SELECT position, topic, tier, status, parameters FROM batch_items WHERE batch_job_id = %s"
            " ORDER BY position",
            [job.id],
        ).fetchall()
        assert [i[0] for i in items] == list(range(1, 73))
        assert Counter(i[2] for i in items) == {"template": 45, "edge_case": 27}
        assert {i[3] for i in items} == {"queued"}
        triples = {(p["topic_key"], p["persona_key"], p["arc_key"]) for *_, p in items}
        assert len(triples) == 72 and {t for t, _, _ in triples} == set(TOPICS)
        assert all({"topic_id", "persona_id", "arc_id"} <= set(p) for *_, p in items)
        # The arc decides the tier.
        edge_arcs = {k for (k,) in conn.execute("SELECT arc_key FROM emotional_arcs WHERE tier = 'edge_case'")}
        assert all((i[2] == "edge_case") == (i[4]["arc_key"] in edge_arcs) for i in items)


def test_a_job_held_by_a_live_session_is_not_taken_over(fixed_db, monkeypatch):
    monkeypatch.setattr("assets.generation.batch.RESUME_LOCK_WAIT", "200ms")
    first, job = _open(fixed_db)
    with first:
        with pytest.raises(JobBusy, match=str(job.id)):
            _open(fixed_db)
        unlock_job(first, job.id)
        second, resumed = _open(fixed_db)
        with second:
            assert resumed.resumed and resumed.id == job.id
        count = first.execute("SELECT count(*) FROM batch_jobs WHERE shared_parameters ? 'topics'").fetchone()[0]
        assert count == 1


def test_concurrent_claims_never_share_an_item(fixed_db):
    owner, job = _open(fixed_db)
    claimed: list[list] = []
    barrier = threading.Barrier(6)

    def claimer():
        with psycopg.connect(fixed_db, autocommit=True) as conn:
            barrier.wait()
            mine = []
            while batch := claim_items(conn, job.id, 5, None):
                mine += [i.id for i in batch]
            claimed.append(mine)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owner.close()
    everything = [i for mine in claimed for i in mine]
    assert len(everything) == len(set(everything)) == 72


def test_counters_are_exact_when_many_sessions_record_at_once(fixed_db):
    owner, job = _open(fixed_db)
    start_job(owner, job.id)
    items = claim_items(owner, job.id, 72, None)
    chunks = [items[i::8] for i in range(8)]  # 8 sessions, 9 items each, recorded 3 at a time
    insert = ConversationInsert.for_table(owner, owner=job.settings.owner, status="pending_review", bucket="b")
    barrier = threading.Barrier(8)
    errors = []

    def recorder(chunk):
        try:
            with psycopg.connect(fixed_db, autocommit=True) as conn:
                barrier.wait()
                for k in range(0, len(chunk), 3):
                    record_outcomes(conn, job.id, [_outcome(i) for i in chunk[k:k + 3]], 0.01, insert)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=recorder, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with owner:
        summary = job_summary(owner, job.id)
    assert (summary["completed_items"], summary["successful_items"], summary["failed_items"]) == (72, 36, 36)
    assert summary["items_by_status"] == {"completed": 36, "failed": 36}
    assert summary["estimated_time_remaining"] == 0


def _outcome(item: Item) -> Outcome:
    """Even positions succeed (a conversation row), odd ones fail."""
    if item.position % 2:
        return Outcome(item, error="boom")
    p = item.parameters
    return Outcome(item, ConversationRow(
        id=uuid.uuid4(), conversation_id=f"c-{item.id}", conversation_name="c", persona_id=p["persona_id"],
        emotional_arc_id=p["arc_id"], training_topic_id=p["topic_id"], persona_key=p["persona_key"],
        emotional_arc_key=p["arc_key"], topic_key=p["topic_key"], tier=item.tier, parameters={}, turn_count=3,
        total_tokens=10, quality_score=None, starting_emotion=None, ending_emotion=None,
        file_path=f"x/{item.position}.json", file_size=1,
    ))


def test_an_outcome_for_an_item_no_longer_processing_rolls_the_batch_back(fixed_db):
    owner, job = _open(fixed_db)
    with owner:
        first, second = claim_items(owner, job.id, 2, None)
        owner.execute("UPDATE batch_items SET status = 'queued' WHERE id = %s", [second.id])
        with pytest.raises(RuntimeError, match="no longer processing"):
            insert = ConversationInsert.for_table(owner, owner=job.settings.owner, status="pending_review", bucket="b")
            record_outcomes(owner, job.id, [Outcome(first, error="x"), Outcome(second, error="y")], None, insert)
        summary = job_summary(owner, job.id)
        assert summary["completed_items"] == 0 and summary["items_by_status"] == {"queued": 71, "processing": 1}
        assert uuid.UUID(str(summary["id"])) == job.id
