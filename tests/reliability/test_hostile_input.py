"""Hostile input: odd topic rows are generated as plain data; odd arguments, contracts and URLs get one line each.

A refusal is exit 2 with one printable line on stderr, no traceback, and nothing written.
"""

import json
import os

import dagster as dg
import psycopg
import pytest

from pipelines.cli import main
from assets.partitions import topic_partition_key, topics
from resources.conversation_store import ConversationStore
from resources.database import TargetDatabase
from tests.reliability.conftest import assert_generated_once, finished, written

SQL_KEY = "x'); DROP TABLE batch_jobs; --"
HOSTILE_TOPICS = {  # topic_key -> name
    "it's \"quoted\"": "O'Brien's \"quoted\" topic",
    SQL_KEY: "Robert'); DELETE FROM conversations; --",
    "ümlaut/α→β 🚀": "Ünïcödé ✓ 日本語 🚀",
    "k" * 10_000: "n" * 10_000,
    "tab\tnew\nline\x1b[31mred\x07": "bell\x07 escape\x1b[2J carriage\rreturn",
    "../../etc/passwd": "..\\..\\windows",
    "\u202egnp.exe": "%s %(name)s {0} $1",
    "Odd Key...": "Odd",
    "odd_key-3d13b2f9": "spells the partition key 'Odd Key...' once had",
    "p" * 100: "the longest plain key",
}


def _insert_topics(dsn: str, rows: dict[str, str], *, only: bool) -> None:
    with psycopg.connect(dsn) as conn:
        if only:
            conn.execute("UPDATE training_topics SET is_active = false")
        for key, name in rows.items():
            conn.execute("INSERT INTO training_topics (topic_key, name, description) VALUES (%s, %s, %s)",
                         [key, name, f"about {name}"])


def _run_in_process(monkeypatch, env: dict, *args: str) -> int:
    for name in ("DAGSTER_HOME", "CONVERSATION_STORE", "GENERATOR_DELAY_MS"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return main(list(args))


def test_hostile_topic_rows_are_generated_as_data(legacy_db, cli_env, monkeypatch, capsys):
    _insert_topics(legacy_db, HOSTILE_TOPICS, only=True)
    assert _run_in_process(monkeypatch, cli_env, "run", "--all", "--database-url", legacy_db) == 0
    out = capsys.readouterr().out
    assert all(line.isprintable() for line in out.splitlines())  # no escape sequence reaches a terminal

    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    assert_generated_once(legacy_db, store, list(HOSTILE_TOPICS))  # every table still there, nothing run as SQL
    with psycopg.connect(legacy_db) as conn:
        rows = conn.execute(
            "SELECT c.file_path, t.topic_key, t.name FROM conversations c"
            " JOIN training_topics t ON t.id = c.training_topic_id").fetchall()
    root = store.root_path()
    for path, key, name in rows:
        file = store.path(path)
        assert file.resolve().is_relative_to(root) and len(file.name.encode()) <= 255
        document = json.loads(file.read_text())
        metadata = document["training_pairs"][0]["conversation_metadata"]
        assert (metadata["topic_key"], metadata["training_topic"]) == (key, name)  # verbatim
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        partitions = set(instance.get_dynamic_partitions(topics.name))
    assert partitions == {topic_partition_key(k) for k in HOSTILE_TOPICS} and len(partitions) == len(HOSTILE_TOPICS)


@pytest.mark.slow
def test_hostile_topics_selected_by_key_on_the_command_line(legacy_db, cli_env, processes, tmp_path):
    chosen = {k: HOSTILE_TOPICS[k] for k in (SQL_KEY, "ümlaut/α→β 🚀", "k" * 10_000)}
    _insert_topics(legacy_db, chosen, only=False)
    run = processes("run", "--database-url", legacy_db, "--topics", ",".join(chosen), env=cli_env,
                    output=tmp_path / "run")
    code, out, err = finished(run)
    assert code == 0, err[-2000:]
    assert "items 72" in out and "72 completed" in out
    assert_generated_once(legacy_db, ConversationStore(root=cli_env["CONVERSATION_STORE"]), list(chosen))


@pytest.mark.parametrize("command", ["run", "generate"])
def test_unknown_hostile_topics_are_refused_on_one_printable_line(legacy_db, cli_env, monkeypatch, capsys, command):
    before = written(legacy_db)
    for selection in ["it's \"quoted\"", SQL_KEY, "ümlaut 🚀", "k" * 10_000, "new\nline\x1b[31mred\x07",
                      "\u202egnp.exe", "%s{0}"]:
        assert _run_in_process(monkeypatch, cli_env, command, "--database-url", legacy_db, "--topics", selection) == 2
        err = capsys.readouterr().err
        assert err.startswith("bulkgen: error: unknown or inactive topic(s): ") and err.count("\n") == 1
        assert err[:-1].isprintable() and len(err) < 200, err
    assert written(legacy_db) == before and not os.path.exists(cli_env["CONVERSATION_STORE"])


MALFORMED = {
    "not_yaml": "tables: [unclosed",
    "not_a_mapping": "- just\n- a list\n",
    "unknown_key": "tables: {}\nextra: 1\n",
    "values_not_a_list": "tables:\n  batch_jobs:\n    columns:\n      status: {type: text, values: queued}\n",
    "binary": "\x00\x01\x02\xff",
    "empty": "",
    "control_characters": "tables:\n  \"bad\\ttable\\x1b[31m\":\n    columns: {}\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("command", ["audit", "migrate"])
def test_malformed_contracts_are_refused_on_one_line(legacy_db, tmp_path, monkeypatch, capsys, command, name):
    contract = tmp_path / f"{name}.yaml"
    contract.write_bytes(MALFORMED[name].encode("latin-1"))
    before = written(legacy_db)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main([command, "--database-url", legacy_db, "--contract", str(contract)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"bulkgen: error: {contract}: ") and captured.err.count("\n") == 1, captured.err
    named = f"== database: {TargetDatabase(url=legacy_db).display_name()}\n"
    assert captured.err[:-1].isprintable() and captured.out == named  # the database it names, nothing else
    assert written(legacy_db) == before


@pytest.mark.parametrize("path", ["missing.yaml", "."])
def test_a_contract_that_cannot_be_read_is_refused_on_one_line(legacy_db, tmp_path, monkeypatch, capsys, path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["audit", "--database-url", legacy_db, "--contract", str(tmp_path / path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bulkgen: error: ") and "cannot read contract" in err and err.count("\n") == 1


NO_SUCH_TABLE = """
tables:
  batch_jobs_archive:
    columns:
      status: {type: text, values: [queued, processing]}
  batch_items:
    columns:
      state: {type: text, values: [queued]}
"""


def test_a_contract_naming_a_table_that_does_not_exist(legacy_db, tmp_path, monkeypatch, capsys):
    """The audit reports the missing table and column as findings; the fix refuses to pretend it fixed them."""
    contract = tmp_path / "contract.yaml"
    contract.write_text(NO_SUCH_TABLE)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["audit", "--database-url", legacy_db, "--contract", str(contract), "--format", "json"]) == 1
    findings = {(f["table"], f["column"], f["kind"]) for f in json.loads(capsys.readouterr().out)["findings"]}
    assert {("batch_jobs_archive", None, "missing_table"), ("batch_items", "state", "missing_column")} <= findings

    before = written(legacy_db)
    assert main(["migrate", "--database-url", legacy_db, "--contract", str(contract)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "bulkgen: migration not run: public.batch_jobs_archive is missing (the contract names it)")
    assert "public.batch_items.state is missing" in err
    assert written(legacy_db) == before


PASSWORD = "s3cr3t-Pw"
BAD_URLS = {
    "refused": f"postgresql://app:{PASSWORD}@127.0.0.1:1/app",
    "no_socket": f"postgresql://app:{PASSWORD}@/app?host=/nonexistent-socket-dir",
    "unparseable_sqlalchemy_scheme": f"postgresql+psycopg://app:{PASSWORD}@[::1/app",
    "percent_encoded": "postgresql://app:s3cr3t%2DPw@127.0.0.1:1/app",
    "key_value_unterminated": f"host=127.0.0.1 port=1 password={PASSWORD} dbname='app",
    "unknown_option": f"postgresql://app:{PASSWORD}@127.0.0.1:1/app?sslmode=bogus",
    "not_a_url": f"not-a-url {PASSWORD}",
}


@pytest.mark.parametrize("command, url", [
    *((["audit"], url) for url in BAD_URLS),
    *((command, url) for command in (["migrate"], ["load-demo"], ["run", "--all"], ["generate", "--all"])
      for url in ("refused", "unparseable_sqlalchemy_scheme")),
])
def test_bad_and_unreachable_urls_are_one_line_without_the_password(tmp_path, monkeypatch, capsys, command, url):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main([*command, "--database-url", BAD_URLS[url]]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("bulkgen: error: cannot connect to ") and captured.err.count("\n") == 1
    assert PASSWORD not in captured.err + captured.out and "Traceback" not in captured.err


def test_a_url_to_a_database_that_does_not_exist(server_url, monkeypatch, capsys):
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    url = psycopg.conninfo.make_conninfo(**{**info, "dbname": "bulkgen_no_such_database", "password": PASSWORD})
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["audit", "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert 'database "bulkgen_no_such_database" does not exist' in err and PASSWORD not in err


def test_an_unreachable_database_fails_the_asset_with_the_reason(tmp_path):
    from assets.audit.asset import schema_audit

    database = TargetDatabase(url=BAD_URLS["refused"])
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([schema_audit], instance=instance, resources={"database": database},
                                raise_on_error=False)
        events = instance.all_logs(result.run_id)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert "cannot connect to user=app password=*** dbname=app host=127.0.0.1 port=1" in error.message
    assert "Connection refused" in error.message and PASSWORD not in repr(events)
