"""Fixtures for generation: a database the fix has been applied to, a conversation store, a Dagster instance."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import jsonschema
import psycopg
import pytest
from psycopg.rows import dict_row

from assets.audit.contract import CONTRACT
from assets.generation.conversation_file import SCHEMA_PATH
from assets.generation.processing import conversation_of
from assets.migration.asset import accepts_code_values, value_set_constraints
from assets.migration.execute import migrate
from resources.conversation_store import RAW_SUFFIX, ConversationStore
from resources.embedded import database_url
from tests.conftest import fresh_database

FIX_ASSET = value_set_constraints.key
(FIX_CHECK,) = accepts_code_values.check_keys
APP_FILE_SCHEMA = json.loads(SCHEMA_PATH.read_text())


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
def cli_env(tmp_path, monkeypatch) -> ConversationStore:
    """A fresh persistent DAGSTER_HOME and conversation store, as the CLI finds them in the environment."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "conversations"))
    monkeypatch.setenv("GENERATOR_DELAY_MS", "0")
    return ConversationStore()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def record_fix(instance: dg.DagsterInstance, *, passed: bool = True) -> None:
    """Record a materialization of the fix asset and its blocking check's verdict on it (what the automation
    condition waits for; the gate asks the database instead)."""
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
    """The invariants every finished job keeps; returns the job's item counts by status.

    Every completed item's conversation is written as the app writes one: its owner, the review queue's
    status, the app's columns filled, and its file at `<owner>/<conversation_id>/conversation.json`,
    valid against the app's schema.
    """
    with psycopg.connect(dsn) as conn:
        job = conn.execute(
            "SELECT status, total_items, completed_items, successful_items, failed_items, created_by"
            "  FROM batch_jobs WHERE id = %s",
            [job_id],
        ).fetchone()
        counts = dict(conn.execute(
            "SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY status", [job_id]
        ).fetchall())
        with conn.cursor(row_factory=dict_row) as cur:
            linked = cur.execute(
                "SELECT b.parameters, b.tier AS item_tier, p.name AS persona_name, a.starting_emotion AS arc_start,"
                "       a.ending_emotion AS arc_end, c.*"
                "  FROM batch_items b JOIN conversations c ON c.id = b.conversation_id"
                "  JOIN personas p ON p.id = c.persona_id JOIN emotional_arcs a ON a.id = c.emotional_arc_id"
                " WHERE b.batch_job_id = %s AND b.status = 'completed'",
                [job_id],
            ).fetchall()
        items = [item for (item,) in conn.execute("SELECT id FROM batch_items WHERE batch_job_id = %s", [job_id])]
    status, total, completed, successful, failed, owner = job
    assert status in ("completed", "failed", "cancelled")
    assert owner is not None
    assert "queued" not in counts and "processing" not in counts, counts
    assert sum(counts.values()) == total
    assert completed == counts.get("completed", 0) + counts.get("failed", 0)
    assert (successful, failed) == (counts.get("completed", 0), counts.get("failed", 0))
    assert len(linked) == successful  # every completed item points at its conversation
    triples = [(r["parameters"]["topic_key"], r["parameters"]["persona_key"], r["parameters"]["arc_key"])
               for r in linked]
    assert len(set(triples)) == len(triples)
    for row in linked:
        assert row["file_path"] == f"{owner}/{row['conversation_id']}/conversation.json"
        data = store.read_bytes(row["file_path"])
        document = json.loads(data)
        jsonschema.validate(document, APP_FILE_SCHEMA)
        assert (len(data), row["tier"], row["status"]) == (row["file_size"], row["item_tier"], "pending_review")
        expected = {"created_by": owner, "processing_status": "completed", "storage_bucket": store.bucket,
                    "is_active": True, "persona_key": row["parameters"]["persona_key"],
                    "emotional_arc_key": row["parameters"]["arc_key"], "topic_key": row["parameters"]["topic_key"],
                    "starting_emotion": row["arc_start"], "ending_emotion": row["arc_end"],
                    "conversation_name": document["dataset_metadata"]["dataset_name"]}
        assert {k: row[k] for k in expected if k in row} == {k: v for k, v in expected.items() if k in row}
        pairs = document["training_pairs"]
        assert [p["turn_number"] for p in pairs] == list(range(1, row["turn_count"] + 1))
        assert {p["conversation_id"] for p in pairs} == {row["conversation_id"]}
        assert pairs[0]["conversation_metadata"]["persona_name"] == row["persona_name"]
        assert pairs[0]["emotional_context"]["starting_emotion"] == row["arc_start"]
        assert pairs[-1]["emotional_context"]["ending_emotion"] == row["arc_end"]
        assert [len(p["conversation_history"]) for p in pairs] == [2 * i for i in range(len(pairs))]
    keys = [f"{owner}/{conversation_of(item)}/conversation.json" for item in items]
    stored = sorted(k for k in keys if store.exists(k))
    raw = {k for k in keys if store.exists(k + RAW_SUFFIX)}
    assert stored == sorted(r["file_path"] for r in linked)  # no orphan among the job's keys
    assert raw <= set(stored)  # a model's raw response only beside its conversation
    return counts
