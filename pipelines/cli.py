"""`bulkgen`: the command line over the same plain functions and Dagster jobs the UI uses.

Exit codes: 0 when nothing is wrong, 1 when the audit has `error` findings, 2 when the command
cannot run (bad URL, unreachable database, malformed contract), with a one-line error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import psycopg

from assets.audit.contract import DEFAULT_CONTRACT, ContractError, load_contract
from assets.audit.findings import findings_markdown, run_audit, severity_counts
from pipelines.demo import DemoDatabaseError, load_demo_database
from resources.database import DatabaseUnavailable, TargetDatabase, scrub
from resources.embedded import PROJECT_ROOT

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT_RUN = 0, 1, 2


class CannotRun(RuntimeError):
    """A user-facing reason the command cannot run."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    url = os.environ.get("DATABASE_URL") or None
    try:
        return args.command(args, TargetDatabase(url=url))
    except (CannotRun, ContractError, DatabaseUnavailable, DemoDatabaseError) as exc:
        return _fail(str(exc))
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())
        return _fail(f"database error: {scrub(message, url) if url else message}")


def audit(args: argparse.Namespace, database: TargetDatabase) -> int:
    contract = load_contract(args.contract)
    with database.connection() as conn:
        findings = run_audit(conn, contract)
    if args.format == "json":
        print(json.dumps({"findings": [asdict(f) for f in findings]}, indent=2))
    else:
        print(findings_markdown(findings))
        print(f"\n{severity_counts(findings)}")
    return EXIT_FINDINGS if any(f.severity == "error" for f in findings) else EXIT_OK


def load_demo(args: argparse.Namespace, database: TargetDatabase) -> int:
    with database.connection() as conn:
        counts = load_demo_database(conn)
    print(f"loaded the legacy demo schema into {database.display_name()}: {counts}")
    return EXIT_OK


def demo(args: argparse.Namespace, database: TargetDatabase) -> int:
    """Load the legacy demo database and materialize every asset through Dagster, then summarize."""
    import dagster as dg

    from pipelines.definitions import defs
    from resources.database import target_database

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()  # SQLite storage in DAGSTER_HOME, the default
    if database.url is None:
        _reset_embedded_app_database()
    with database.connection() as conn:
        counts = load_demo_database(conn)
    print(f"== demo database: {database.display_name()}\n   loaded {counts}")
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("audit_job").execute_in_process(
            instance=instance,
            resources={"database": target_database()},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
    print(f"== Dagster run {result.run_id} ({'success' if result.success else 'FAILED'}), DAGSTER_HOME={home}")
    for mat in result.asset_materializations_for_node("schema_audit"):
        print(f"\n-- schema_audit\n{mat.metadata['findings'].value}")
    print("\n-- asset checks")
    for evaluation in result.get_asset_check_evaluations():
        print(f"   {'PASS' if evaluation.passed else 'FAIL'}  {evaluation.check_name}")
    print("\nBrowse the runs with: .venv/bin/dagster dev  (DAGSTER_HOME=.dagster_home)")
    return EXIT_OK if result.success else EXIT_CANNOT_RUN


def _reset_embedded_app_database() -> None:
    from psycopg import sql

    from resources.embedded import APP_DATABASE, embedded_server_url

    with psycopg.connect(embedded_server_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(APP_DATABASE)))


def _fail(message: str) -> int:
    print(f"bulkgen: error: {message}", file=sys.stderr)
    return EXIT_CANNOT_RUN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulkgen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--database-url", help="target database DSN (default: $DATABASE_URL, else embedded)")
        sub.set_defaults(command=handler)
        return sub

    sub = command("audit", audit, "Audit the live schema against the contract (read-only).")
    sub.add_argument("--contract", default=str(DEFAULT_CONTRACT), help="contract file (YAML)")
    sub.add_argument("--format", choices=["table", "json"], default="table")
    command("load-demo", load_demo, "Load the legacy demo schema and rows into an empty database.")
    command("demo", demo, "Load the demo database and materialize every asset through Dagster.")
    return parser


if __name__ == "__main__":
    sys.exit(main())
