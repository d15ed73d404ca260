"""Secrets: with a password in DATABASE_URL (trust auth ignores it, so it still connects), an API key and AWS
credentials in the environment, none is written anywhere: output, the Dagster instance (runs, event log,
metadata), the database, the conversation files in a folder or in the bucket on a real S3 server on loopback."""

import os
from pathlib import Path
from urllib.parse import quote, urlencode

import dagster as dg
import psycopg
import pytest

from resources.conversation_store import ConversationStore
from tests.conftest import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
from tests.reliability.conftest import finished

PASSWORD = "pw-S3cr3t@x/y"  # percent-encoded in the URL; both spellings are searched for
API_KEY = "sk-ant-api03-RELIABILITY-5e1f0c9d2b"


def with_password(dsn: str) -> str:
    """The same database as a URL carrying PASSWORD (host and port as query parameters: socket or TCP)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    query = urlencode({k: v for k, v in info.items() if k not in ("user", "dbname", "password")})
    return f"postgresql://{quote(info.get('user') or '')}:{quote(PASSWORD, safe='')}@/{quote(info['dbname'])}?{query}"


def _leaks(texts: dict[str, str]) -> list[str]:
    secrets = [PASSWORD, quote(PASSWORD, safe=""), API_KEY, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
               quote(AWS_SECRET_ACCESS_KEY, safe="")]
    return [f"{where}: {secret}" for where, text in texts.items() for secret in secrets if secret in text]


def _everything_written(home: Path, store: ConversationStore, dsn: str) -> dict[str, str]:
    """Every file of the instance (SQLite storage included, byte for byte), its own records, every stored
    conversation object, and the database's batch jobs, items and conversations."""
    texts = {str(p): p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file()}
    with psycopg.connect(dsn) as conn:
        owners = [str(o) for (o,) in conn.execute(
            "SELECT DISTINCT created_by FROM batch_jobs WHERE created_by IS NOT NULL")]
        for table in ("batch_jobs", "batch_items", "conversations"):
            texts[f"table {table}"] = str(conn.execute(f"SELECT json_agg(t)::text FROM {table} t").fetchone()[0])
    texts |= {f"object {key}": store.read_bytes(key).decode("latin-1")  # all the owners' objects, orphans included
              for owner in owners for key in store.keys_under(owner)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            records = instance.get_records_for_run(run.run_id).records
            texts[f"run {run.run_id}"] = dg.serialize_value(run) + "".join(
                dg.serialize_value(r.event_log_entry) for r in records)
        for key in instance.get_asset_keys():
            for record in instance.fetch_materializations(key, limit=100).records:
                texts[f"metadata {key.to_user_string()}"] = repr(record.asset_materialization.metadata)
    return texts


@pytest.fixture
def secret_env(cli_env) -> dict[str, str]:
    return {**cli_env, "ANTHROPIC_API_KEY": API_KEY,
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY}


@pytest.mark.slow
def test_a_run_end_to_end_and_its_failures_write_no_secret(legacy_db, secret_env, conversation_store, processes,
                                                           tmp_path):
    store_env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # the S3 server's, when it is S3
    secret_env |= {**store_env, "CONVERSATION_STORE": conversation_store.location()}
    env = {**secret_env, "DATABASE_URL": with_password(legacy_db)}
    home = Path(env["DAGSTER_HOME"])
    outputs = {}

    def bulkgen(name: str, *args: str, code: int, environment: dict = env) -> str:
        done, out, err = finished(processes(*args, env=environment, output=tmp_path / name.replace(" ", "_")))
        outputs.update({f"{name} stdout": out, f"{name} stderr": err})
        assert done == code, err[-2000:]
        return err

    bulkgen("generate before the fix", "generate", "--topics", "ignored_401k", code=2)
    with psycopg.connect(legacy_db) as conn:  # a fix that cannot apply (no mapping for 'exploded'): a failed run
        conn.execute("ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check;"
                     "ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_check CHECK (status IN "
                     "('pending', 'running', 'paused', 'completed', 'failed', 'cancelled', 'exploded'));"
                     "UPDATE batch_jobs SET status = 'exploded' WHERE status = 'paused'")
    err = bulkgen("failing run", "run", "--topics", "ignored_401k", "--database-url", with_password(legacy_db),
                  code=2, environment=secret_env)  # the password on the command line this time
    assert "value_set_constraints failed" in err
    with psycopg.connect(legacy_db) as conn:
        conn.execute("UPDATE batch_jobs SET status = 'paused' WHERE status = 'exploded'")
    bulkgen("run", "run", "--topics", "ignored_401k,esg_investing", code=0)
    bulkgen("unknown topic", "run", "--topics", "nope", code=2)

    written = _everything_written(home, conversation_store, legacy_db)
    assert len([k for k in written if k.startswith("run ")]) == 2 and any(p.endswith(".json") for p in written)
    assert "topic_conversations" in "".join(written.values())  # what was searched holds what the runs wrote
    assert _leaks(outputs | written) == []


@pytest.mark.parametrize("case", ["no such database", "malformed contract", "findings", "unparseable URL"])
def test_audit_errors_and_output_write_no_secret(legacy_db, secret_env, processes, tmp_path, case):
    info = psycopg.conninfo.conninfo_to_dict(legacy_db)
    url = {
        "no such database": with_password(psycopg.conninfo.make_conninfo(**{**info, "dbname": "bulkgen_nope"})),
        "unparseable URL": f"postgresql+psycopg://u:{quote(PASSWORD, safe='')}@[::1/app",
    }.get(case, with_password(legacy_db))
    contract = tmp_path / "contract.yaml"
    contract.write_text("tables: [unclosed" if case == "malformed contract" else "tables: {batch_jobs: {}}\n")
    args = ["audit", "--contract", str(contract)] if case == "malformed contract" else ["audit"]
    code, out, err = finished(processes(*args, env={**secret_env, "DATABASE_URL": url}, output=tmp_path / "audit"))
    assert code == (1 if case == "findings" else 2) and "Traceback" not in err
    assert (out if case == "findings" else err).strip()
    assert _leaks({"stdout": out, "stderr": err}) == []
