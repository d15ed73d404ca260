"""Generated conversations land in the app: its owner sees them through RLS, nobody else does; an unknown owner
is refused with nothing written; and the whole chain works on the contract's required columns alone."""

import json
import uuid

import boto3
import psycopg
import pytest

from assets.audit.contract import CONTRACT
from assets.audit.findings import run_audit
from assets.generation.owner import OWNER_ENV
from assets.verification.checks import verify_topics
from pipelines.cli import main
from pipelines.demo import CATALOG_TABLES, DEMO_DIR, insert_catalog_rows
from tests.app_schemas import SUPABASE_ROLES, add_user, required_only_schema, supabase_schema
from tests.conftest import S3_BUCKET
from tests.generation.conftest import assert_job_sound

OWNER, OTHER = str(uuid.uuid4()), str(uuid.uuid4())
TOPIC = "ignored_401k"  # 3 personas x 8 arcs: 24 conversations


def _load_catalog(conn: psycopg.Connection) -> None:
    for table, (file, _) in CATALOG_TABLES.items():
        insert_catalog_rows(conn, table, json.loads((DEMO_DIR / "catalog" / file).read_text()))


@pytest.fixture(params=["text[]", "jsonb"])
def supabase_db(request, empty_db) -> str:
    """A Supabase-like app database (lists as text[] or jsonb) with two app users, OWNER and OTHER."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(SUPABASE_ROLES)
    with psycopg.connect(empty_db) as conn:
        conn.execute(supabase_schema(request.param))
        _load_catalog(conn)
        add_user(conn, OWNER, "owner")
        add_user(conn, OTHER, "other")
    return empty_db


def _job(dsn: str) -> uuid.UUID:
    with psycopg.connect(dsn) as conn:
        ((job_id,),) = conn.execute("SELECT id FROM batch_jobs").fetchall()
    return job_id


def _seen_as(dsn: str, user: str) -> tuple[int, int, int, int]:
    """What the app shows `user`: as role authenticated with `user` as the JWT subject, through RLS."""
    with psycopg.connect(dsn) as conn, conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", [user])
        return conn.execute(
            "SELECT (SELECT count(*) FROM conversations),"
            "       (SELECT count(*) FROM conversations WHERE status = 'pending_review'),"
            "       (SELECT count(*) FROM batch_jobs), (SELECT count(*) FROM batch_items)"
        ).fetchone()


@pytest.mark.slow
def test_a_run_for_an_owner_is_visible_to_that_user_alone(supabase_db, cli_env, capsys):
    assert main(["run", "--database-url", supabase_db, "--topics", TOPIC, "--owner", OWNER]) == 0
    assert "24 completed" in capsys.readouterr().out
    assert assert_job_sound(supabase_db, _job(supabase_db), cli_env) == {"completed": 24}
    assert _seen_as(supabase_db, OWNER) == (24, 24, 1, 24)  # the review queue lists every conversation
    assert _seen_as(supabase_db, OTHER) == (0, 0, 0, 0)
    with psycopg.connect(supabase_db) as conn:
        owners = conn.execute("SELECT DISTINCT created_by::text FROM conversations"
                              " UNION SELECT DISTINCT created_by::text FROM batch_jobs").fetchall()
    assert owners == [(OWNER,)]
    assert sorted(p.name for p in (cli_env.root_path() / OWNER).iterdir()) == sorted(
        str(c) for c in _conversation_ids(supabase_db))


def _conversation_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [c for (c,) in conn.execute("SELECT conversation_id FROM conversations")]


@pytest.mark.slow
def test_a_run_into_the_bucket_puts_each_conversation_at_its_owners_key(supabase_db, cli_env, s3_env, monkeypatch,
                                                                       capsys):
    """`CONVERSATION_STORE=s3://conversation-files` on a real S3 server on loopback: every conversation's object
    is at `<owner>/<conversation_id>/conversation.json`, valid against the app's schema, and nothing else is."""
    monkeypatch.setenv("CONVERSATION_STORE", f"s3://{S3_BUCKET}")
    assert main(["run", "--database-url", supabase_db, "--topics", TOPIC, "--owner", OWNER]) == 0
    assert "24 completed" in capsys.readouterr().out
    assert cli_env.remote and assert_job_sound(supabase_db, _job(supabase_db), cli_env) == {"completed": 24}
    with psycopg.connect(supabase_db) as conn:
        buckets = conn.execute("SELECT DISTINCT storage_bucket FROM conversations").fetchall()
    assert buckets == [(S3_BUCKET,)]
    listed = boto3.session.Session().client("s3").list_objects_v2(Bucket=S3_BUCKET)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(
        f"{OWNER}/{c}/conversation.json" for c in _conversation_ids(supabase_db))
    assert _seen_as(supabase_db, OWNER) == (24, 24, 1, 24) and _seen_as(supabase_db, OTHER) == (0, 0, 0, 0)


def test_the_audit_finds_the_one_true_refusal(supabase_db):
    """Production's one real error, batch_items.status refusing 'cancelled', and no other: list columns are
    text_list, which text[] and jsonb both satisfy."""
    with psycopg.connect(supabase_db) as conn:
        errors = [(f.table, f.column, f.kind, f.rejected) for f in run_audit(conn, CONTRACT) if f.severity == "error"]
    assert errors == [("batch_items", "status", "rejected_values", ["cancelled"])]


@pytest.mark.parametrize("owner, error", [
    (str(uuid.UUID(int=7)), f"owner refused, nothing written: owner {uuid.UUID(int=7)} has no row in user_profiles "
                            "(batch_jobs.created_by references user_profiles(id))"),
    ("7", "owner '7' is not a UUID"),
    ("", "no owner: pass --owner UUID"),
])
def test_an_owner_the_app_does_not_know_is_refused_with_nothing_written(supabase_db, cli_env, capsys, monkeypatch,
                                                                          owner, error):
    monkeypatch.delenv(OWNER_ENV)
    with psycopg.connect(supabase_db) as conn:
        before = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                              " WHERE conname = 'batch_items_status_check'").fetchone()
    assert main(["run", "--database-url", supabase_db, "--topics", TOPIC, *(["--owner", owner] if owner else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bulkgen: error: {error}") and err.count("\n") == 1
    with psycopg.connect(supabase_db) as conn:
        written = conn.execute("SELECT (SELECT count(*) FROM batch_jobs), (SELECT count(*) FROM batch_items),"
                               " (SELECT count(*) FROM conversations)").fetchone()
        after = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                             " WHERE conname = 'batch_items_status_check'").fetchone()
    assert written == (0, 0, 0) and after == before  # not even the fix ran
    assert not cli_env.root_path().exists()


@pytest.mark.slow
def test_the_whole_chain_on_the_contracts_required_columns_only(empty_db, cli_env, capsys):
    with psycopg.connect(empty_db) as conn:
        conn.execute(required_only_schema(CONTRACT))
        _load_catalog(conn)
    with psycopg.connect(empty_db) as conn:
        findings = run_audit(conn, CONTRACT)
    assert [f for f in findings if f.severity == "error"] == []
    optional = {(t.name, c.name) for t in CONTRACT.tables for c in t.columns if c.optional}
    assert {(f.table, f.column) for f in findings if f.kind == "missing_column"} == optional
    assert main(["run", "--database-url", empty_db, "--topics", TOPIC, "--owner", OWNER]) == 0
    job_id = _job(empty_db)
    assert assert_job_sound(empty_db, job_id, cli_env) == {"completed": 24}
    with psycopg.connect(empty_db, autocommit=True) as conn:
        verification = verify_topics(conn, CONTRACT, [TOPIC], cli_env, set())
        (created_by,) = conn.execute("SELECT created_by::text FROM batch_jobs").fetchone()
    assert verification.passed, verification.verdicts
    assert created_by == OWNER
