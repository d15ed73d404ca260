"""Fixtures for generation: a database the fix has been applied to, a conversation store, a Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest

from assets.audit.asset import CONTRACT
from assets.generation.gate import FIX_ASSET, FIX_CHECK
from assets.migration.execute import migrate
from resources.conversation_store import RAW_SUFFIX, ConversationStore
from resources.embedded import database_url
from tests.conftest import fresh_database


@pytest.fixture(scope="session")
def fixed_template(server_url, legacy_template) -> Iterator[str]:
    with fresh_database(server_url, legacy_template) as name:
        with psycopg.connect(database_url(server_url, name), autocommit=True) as conn:
            assert migrate(conn, CONTRACT, applied_by="tests").applied
        yield name


@pytest.fixture
def fixed_db(server_url, fixed_template) -> Iterator[str]:
    """DSN of a fresh legacy demo database the fix (its plain function) has been applied to."""
    with fresh_database(server_url, fixed_template) as name:
        yield database_url(server_url, name)


@pytest.fixture
def store(tmp_path) -> ConversationStore:
    return ConversationStore(root=str(tmp_path / "conversations"))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def record_fix(instance: dg.DagsterInstance, *, passed: bool = True) -> None:
    """Record a materialization of the fix asset and its blocking check's verdict on it."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    instance.report_runless_asset_event(dg.AssetMaterialization(FIX_ASSET))
    latest = instance.fetch_materializations(FIX_ASSET, limit=1).records[0]
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=FIX_ASSET,
            check_name=FIX_CHECK.name,
            passed=passed,
            target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
            ),
        )
    )


def assert_job_sound(dsn: str, job_id, store: ConversationStore) -> dict:
    """The invariants every finished job keeps; returns the job's item counts by status."""
    with psycopg.connect(dsn) as conn:
        job = conn.execute(
            "SELECT status, total_items, completed_items, successful_items, failed_items FROM batch_jobs WHERE id = %s",
            [job_id],
        ).fetchone()
        counts = dict(conn.execute(
            "SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY status", [job_id]
        ).fetchall())
        linked = conn.execute(
            "SELECT b.parameters, b.tier, c.file_path, c.file_size, c.tier, c.status, p.name, c.persona_id::text,"
            "       c.emotional_arc_id::text, c.training_topic_id::text"
            "  FROM batch_items b JOIN conversations c ON c.id = b.conversation_id"
            "  JOIN personas p ON p.id = c.persona_id WHERE b.batch_job_id = %s AND b.status = 'completed'",
            [job_id],
        ).fetchall()
    status, total, completed, successful, failed = job
    assert status in ("completed", "failed", "cancelled")
    assert "queued" not in counts and "processing" not in counts, counts
    assert sum(counts.values()) == total
    assert completed == counts.get("completed", 0) + counts.get("failed", 0)
    assert (successful, failed) == (counts.get("completed", 0), counts.get("failed", 0))
    assert len(linked) == successful  # every completed item points at its conversation
    triples = [(p["topic_key"], p["persona_key"], p["arc_key"]) for p, *_ in linked]
    assert len(set(triples)) == len(triples)
    for params, item_tier, path, size, tier, conv_status, persona_name, persona_id, arc_id, topic_id in linked:
        document = store.read(path)
        assert (len(store.read_bytes(path)), tier, conv_status) == (size, item_tier, "generated")
        assert document["persona"]["name"] == persona_name and document["persona"]["id"] == persona_id
        assert (document["arc"]["id"], document["topic"]["id"]) == (arc_id, topic_id)
        assert document["turns"] and {t["role"] for t in document["turns"]} == {"user", "assistant"}
    stored = store.keys_under(str(job_id))
    conversations = [f for f in stored if not f.endswith(RAW_SUFFIX)]
    raw = {f.removesuffix(RAW_SUFFIX) for f in stored if f.endswith(RAW_SUFFIX)}
    assert conversations == sorted(path for _, _, path, *_ in linked)  # no orphan, no temporary file
    assert raw <= set(conversations)  # a model's raw response only beside its conversation
    return counts
