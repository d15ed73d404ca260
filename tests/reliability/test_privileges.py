"""Least privilege: the fix and generation check the privileges they use before anything runs, and name each
one the role lacks; with exactly those privileges they work. (The audit's read-only role: tests/audit.)"""

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from assets.migration.ledger import LEDGER_TABLE, ledger_entries, record_step
from pipelines.cli import main
from pipelines.demo import DEMO_OWNER
from tests.migration.support import snapshot
from tests.reliability.conftest import written

TABLES = ["personas", "emotional_arcs", "training_topics", "batch_jobs", "batch_items", "batch_checkpoints",
          "conversations"]


@pytest.fixture
def role(server_url) -> Iterator[Callable[..., tuple[str, str]]]:
    """Make a login role on a database, with the given statements run for it: (role name, its DSN)."""
    made: list[tuple[str, str]] = []

    def make(dsn: str, *grants: str) -> tuple[str, str]:
        name = f"bulkgen_role_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            made.append((dsn, name))
            for grant in grants:
                conn.execute(grant.format(role=name))
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        return name, psycopg.conninfo.make_conninfo(**{**info, "user": name})

    yield make
    for dsn, name in made:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


# A reader of the app's tables reads its users too: the owner is checked against user_profiles.
READ_ONLY = [f"GRANT SELECT ON {table} TO {{role}}" for table in (*TABLES, "user_profiles")]


@pytest.fixture
def bulkgen(monkeypatch, tmp_path, capsys) -> Callable[..., tuple[int, str, str]]:
    """`bulkgen` in this process, with a DAGSTER_HOME and a store of this test's own: (exit code, out, err)."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "conversations"))
    monkeypatch.delenv("DATABASE_URL", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_fix_names_every_privilege_a_reader_lacks_and_runs_nothing(legacy_db, role, bulkgen):
    name, dsn = role(legacy_db, *READ_ONLY)
    before = snapshot(legacy_db)
    code, out, err = bulkgen("migrate", "--database-url", dsn)
    assert code == 2 and _only_the_database_named(out) and err.count("\n") == 1
    assert err.startswith(f"bulkgen: error: migration not run: role {name} lacks privileges the fix uses, "
                          "nothing was run: must own public.batch_jobs to alter its constraints; "
                          "must own public.batch_items to alter its constraints; "
                          "needs UPDATE on public.batch_jobs to remap its legacy rows; ")
    assert err.rstrip().endswith(f"needs CREATE on schema public to create the ledger {LEDGER_TABLE}")
    assert snapshot(legacy_db) == before

    # Reading is all a plan needs: the reader can still review the exact SQL.
    code, out, _ = bulkgen("migrate", "--database-url", dsn, "--dry-run", "--format", "sql")
    assert code == 1 and "ALTER TABLE" in out and snapshot(legacy_db) == before

    # Through Dagster, the fix asset fails with the same reason and generation never starts.
    code, _, err = bulkgen("run", "--database-url", dsn, "--topics", "ignored_401k")
    assert code == 2 and err.startswith("bulkgen: error: value_set_constraints failed: ")
    assert err.count("\n") == 1  # the one line only: no log, no stack trace
    assert f"role {name} lacks privileges the fix uses, nothing was run: must own public.batch_jobs" in err
    assert snapshot(legacy_db) == before


def test_an_owner_lacking_one_privilege_is_told_exactly_which_then_the_fix_runs(legacy_db, role, bulkgen):
    """The role owns the tables but had UPDATE revoked, and may not create in the schema: the ledger exists
    (another role made it) but is not granted to it."""
    with psycopg.connect(legacy_db) as conn:  # a ledger made by someone else, as by an earlier migration
        record_step(conn, "public", plan_hash="earlier", step="by hand", kind="manual", sql="--", rows_remapped={},
                    transactions=1, attempts=1, lock_wait_ms=0, hold_ms=0, duration_ms=0, applied_by="dba",
                    dagster_run_id=None)
    name, dsn = role(legacy_db, "ALTER TABLE batch_jobs OWNER TO {role}", "ALTER TABLE batch_items OWNER TO {role}",
                     "REVOKE UPDATE ON batch_jobs FROM {role}")
    before = snapshot(legacy_db)
    code, _, err = bulkgen("migrate", "--database-url", dsn)
    assert code == 2 and err == (
        f"bulkgen: error: migration not run: role {name} lacks privileges the fix uses, nothing was run: "
        f"needs UPDATE on public.batch_jobs to remap its legacy rows; needs INSERT on public.{LEDGER_TABLE} to "
        "record each step\n")
    assert snapshot(legacy_db) == before

    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT UPDATE ON batch_jobs TO {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(sql.Identifier(LEDGER_TABLE),
                                                                      sql.Identifier(name)))
    code, out, err = bulkgen("migrate", "--database-url", dsn)  # exactly what it named was missing
    assert code == 0 and "applied 1 step(s)" in out, err
    with psycopg.connect(legacy_db) as conn:
        assert [e["db_user"] for e in ledger_entries(conn, "public")][-1] == name


def test_a_role_that_cannot_read_the_rows_cannot_plan_but_can_audit(legacy_db, role, bulkgen):
    name, dsn = role(legacy_db, "REVOKE ALL ON SCHEMA public FROM PUBLIC", "GRANT USAGE ON SCHEMA public TO {role}")
    code, out, err = bulkgen("migrate", "--database-url", dsn, "--dry-run")
    assert code == 2 and _only_the_database_named(out) and err == (
        f"bulkgen: error: migration not run: role {name} lacks privileges the fix uses, nothing was run: "
        "needs SELECT on public.batch_jobs to read its rows; needs SELECT on public.batch_items to read its rows\n")
    code, out, _ = bulkgen("audit", "--database-url", dsn)
    assert code == 1 and "rejected_values" in out


def test_generation_as_a_reader_is_refused_naming_each_missing_privilege(fixed_db, role, bulkgen, tmp_path):
    name, dsn = role(fixed_db, *READ_ONLY)
    lacks = (f"role {name} lacks INSERT, UPDATE on public.batch_jobs; role {name} lacks INSERT, UPDATE on "
             f"public.batch_items; role {name} lacks INSERT on public.conversations")
    before = written(fixed_db)

    # Through the chain: the audit and the fix (nothing to do) need only reading; the asset refuses to write.
    code, out, err = bulkgen("run", "--database-url", dsn, "--topics", "ignored_401k")
    assert code == 2 and "(FAILED): chain_job" in out
    assert err == f"bulkgen: error: topic_conversations failed: generation refused, nothing written: {lacks}\n"
    # `generate` checks the gate itself before it starts a run.
    code, _, err = bulkgen("generate", "--database-url", dsn, "--topics", "ignored_401k")
    assert code == 2 and err == f"bulkgen: error: generation refused, nothing written: {lacks}\n"
    assert written(fixed_db) == before and not (tmp_path / "conversations").exists()

    # A role that may not read the users table cannot have its owner checked: refused before anything runs.
    with psycopg.connect(fixed_db, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE SELECT ON user_profiles FROM {}").format(sql.Identifier(name)))
    code, _, err = bulkgen("run", "--database-url", dsn, "--topics", "ignored_401k")
    assert code == 2 and err == ("bulkgen: error: owner refused, nothing written: cannot check owner "
                                 f"{DEMO_OWNER}: no SELECT on user_profiles, which batch_jobs.created_by references\n")
    assert written(fixed_db) == before


def _only_the_database_named(out: str) -> bool:
    """A refused command's stdout: its first line naming the database, and nothing else."""
    return out.startswith("== database: ") and out.count("\n") == 1
