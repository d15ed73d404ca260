"""The audit and generation on schemas shaped like the app's production one: list columns as text[], varchar[],
json or jsonb, wide tables with many columns the contract does not name, tables outside the scope. The audit's
only errors are true refusals; columns the contract does not name make one finding per table, listed in it."""

import json

import psycopg
import pytest

from assets.audit.contract import load_contract
from assets.audit.findings import NOT_IN_CONTRACT, findings_markdown, run_audit
from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from pipelines.cli import main
from resources.conversation_store import ConversationStore
from resources.embedded import database_url
from resources.generators import TemplateGenerator
from tests.conftest import fresh_database
from tests.generation.conftest import fixed_db, fixed_template  # noqa: F401 - fixtures

LIST_COLUMNS = {
    "personas": ["typical_questions", "common_concerns", "language_patterns"],
    "emotional_arcs": ["key_principles", "characteristic_phrases", "response_techniques", "avoid_tactics"],
    "training_topics": ["typical_question_examples"],
}
TOPIC = "ignored_401k"


def use_list_type(conn: psycopg.Connection, sql_type: str) -> None:
    """Turn every contracted list column (a jsonb array in the demo schema) into `sql_type`, keeping its items."""
    if sql_type.endswith("[]"):  # ALTER ... USING takes no subquery: a function holds it
        conn.execute(f"""CREATE FUNCTION pg_temp.as_array(items jsonb) RETURNS {sql_type} LANGUAGE sql IMMUTABLE AS
                         $$ SELECT array_agg(x)::{sql_type} FROM jsonb_array_elements_text(items) AS x $$""")
    for table, columns in LIST_COLUMNS.items():
        using = (lambda c: f"pg_temp.as_array({c})") if sql_type.endswith("[]") else (lambda c: f"{c}::{sql_type}")
        conn.execute(f"ALTER TABLE {table} "
                     + ", ".join(f"ALTER COLUMN {c} TYPE {sql_type} USING {using(c)}" for c in columns))


@pytest.mark.parametrize("sql_type", ["text[]", "varchar(500)[]", "jsonb", "json"])
def test_every_shape_of_a_list_of_text_satisfies_text_list(legacy_db, sql_type):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        use_list_type(conn, sql_type)
        findings = run_audit(conn, load_contract())
    assert [f for f in findings if f.kind == "type_mismatch"] == []
    assert {(f.table, f.column) for f in findings if f.severity == "error"} == {
        ("batch_jobs", "status"), ("batch_items", "status")}  # the legacy schema's two true refusals


def test_a_list_of_something_else_is_still_refused(legacy_db):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE personas ALTER COLUMN common_concerns TYPE integer[] USING NULL,"
                     " ALTER COLUMN typical_questions TYPE text USING typical_questions::text")
        findings = run_audit(conn, load_contract())
    mismatches = {f.column: (f.severity, f.expected, f.actual) for f in findings if f.kind == "type_mismatch"}
    assert mismatches == {"common_concerns": ("error", "text_list", "integer[]"),
                          "typical_questions": ("error", "text_list", "text")}


def _conversations(dsn: str) -> dict[tuple, list]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT parameters, file_path FROM conversations").fetchall()
    return {(p["topic_key"], p["persona_key"], p["arc_key"]): path for p, path in rows}


@pytest.mark.parametrize("sql_type", ["text[]", "varchar(500)[]", "json"])
def test_generation_reads_list_columns_of_any_shape_alike(fixed_db, server_url, tmp_path, sql_type):  # noqa: F811
    """The template generator is deterministic: a text[] or json schema gives the very turns jsonb gives,
    and they carry the rows' list items (not the fallbacks used when a list reads as nothing)."""
    with psycopg.connect(fixed_db) as conn:
        (template,) = conn.execute("SELECT current_database()").fetchone()
    stores = {}
    with fresh_database(server_url, template) as jsonb_name:  # a copy that keeps the demo's jsonb
        for name, dsn in (("jsonb", database_url(server_url, jsonb_name)), (sql_type, fixed_db)):
            with psycopg.connect(dsn, autocommit=True) as conn:
                if name != "jsonb":
                    use_list_type(conn, sql_type)
                stores[name] = ConversationStore(root=str(tmp_path / name.replace("[]", "_array")))
                result = generate_conversations(conn, [TOPIC], TemplateGenerator(delay_ms=0), stores[name],
                                                JobSettings(), label="test")
                assert result.status == "completed" and result.succeeded == 24
            stores[name] = (stores[name], _conversations(dsn))
        with psycopg.connect(fixed_db) as conn:
            phrases = {p for (items,) in conn.execute("SELECT characteristic_phrases FROM emotional_arcs")
                       for p in (items if isinstance(items, list) else json.loads(items))}
    (jsonb_store, jsonb_files), (other_store, other_files) = stores["jsonb"], stores[sql_type]
    assert jsonb_files.keys() == other_files.keys() and len(jsonb_files) == 24
    said = ""
    for key, path in jsonb_files.items():
        turns = _turns(jsonb_store.read(path))
        assert _turns(other_store.read(other_files[key])) == turns
        said += " ".join(turns)
    assert sum(phrase.rstrip(".!?") in said for phrase in phrases) >= 3  # the arcs' own phrases were read


def _turns(document: dict) -> list[str]:
    """What was said, turn by turn, in a file of the app's format."""
    return [text for pair in document["training_pairs"] for text in (pair["current_user_input"],
                                                                     pair["target_response"])]


def _production_like(conn: psycopg.Connection) -> None:
    """The fixed demo schema reshaped as production is: text[] lists, wide tables, many tables out of the
    contract's scope, and batch_items.status refusing 'cancelled' again (production's one true error)."""
    use_list_type(conn, "text[]")
    conn.execute("ALTER TABLE conversations "
                 + ", ".join(f"ADD COLUMN app_column_{i:02d} text" for i in range(40)))
    conn.execute("ALTER TABLE personas " + ", ".join(f"ADD COLUMN persona_extra_{i} jsonb" for i in range(7)))
    for i in range(45):
        conn.execute(f"CREATE TABLE app_table_{i:02d} (id uuid PRIMARY KEY, created_by uuid, body text)")
    conn.execute("CREATE TABLE batch_job_events (id uuid PRIMARY KEY, batch_job_id uuid, note text)")
    conn.execute("ALTER TABLE batch_items DROP CONSTRAINT batch_items_status_check, ADD CONSTRAINT"
                 " batch_items_status_check CHECK (status IN ('queued', 'processing', 'completed', 'failed'))")


def test_on_a_production_like_schema_the_only_error_is_the_true_refusal(fixed_db, capsys):  # noqa: F811
    with psycopg.connect(fixed_db, autocommit=True) as conn:
        _production_like(conn)
        findings = run_audit(conn, load_contract())
    errors = [(f.table, f.column, f.kind, f.rejected) for f in findings if f.severity == "error"]
    assert errors == [("batch_items", "status", "rejected_values", ["cancelled"])]
    extra = {f.table: f for f in findings if f.kind == "uncontracted_columns"}
    assert set(extra) == {"conversations", "personas"}  # one finding per table, however wide
    assert extra["conversations"].columns == [f"app_column_{i:02d}" for i in range(40)]
    assert extra["conversations"].expected == NOT_IN_CONTRACT and extra["conversations"].column is None
    assert extra["conversations"].actual.startswith("40 columns: app_column_00, ")
    tables = {f.table: f for f in findings if f.kind == "uncontracted_table"}
    assert set(tables) == {"batch_checkpoints", "batch_job_events"}  # app_table_* are out of the scope
    assert tables["batch_job_events"].columns == ["id", "batch_job_id", "note"]
    assert all("not named by the code" not in (f.expected + f.actual) for f in findings)

    assert main(["audit", "--database-url", fixed_db]) == 1
    named, *table = capsys.readouterr().out.splitlines()
    assert named.startswith("== database: ")
    assert len(table) < 24  # a screenful, with its one error on the first row
    assert table[2].startswith("| error | batch_items | status | rejected_values |")
    assert main(["audit", "--database-url", fixed_db, "--format", "json"]) == 1
    listed = json.loads(capsys.readouterr().out)["findings"]
    wide = next(f for f in listed if f["table"] == "conversations" and f["kind"] == "uncontracted_columns")
    assert wide["columns"] == [f"app_column_{i:02d}" for i in range(40)]
    assert findings_markdown(findings).count("\n") == len(findings) + 1
