"""`bulkgen`: the command line over the same plain functions and Dagster jobs the UI uses.

Exit codes: 0 when nothing is wrong, 1 when the audit has `error` findings (or, for `demo`, a
verification check failed), 2 when the command cannot run (bad URL, unreachable database,
malformed contract), with a one-line error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import psycopg

from assets.audit.contract import DEFAULT_CONTRACT, ContractError, load_contract
from assets.audit.findings import findings_markdown, run_audit, severity_counts
from pipelines.demo import DemoDatabaseError, load_demo_database
from pipelines.one_line import one_line
from resources.database import DatabaseUnavailable, TargetDatabase, scrub
from resources.embedded import PROJECT_ROOT
from resources.generators import GENERATORS

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


def generate(args: argparse.Namespace, database: TargetDatabase) -> int:
    """Only the generation asset, for the selected topics; refuses before any write on an unfixed database."""
    return _generation_run(args, database, "generation_job", gate_first=True)


def run(args: argparse.Namespace, database: TargetDatabase) -> int:
    """The whole chain (audit → fix → generation) for the selected topics, in one Dagster run."""
    return _generation_run(args, database, "chain_job", gate_first=False)


def _generation_run(args: argparse.Namespace, database: TargetDatabase, job_name: str, *, gate_first: bool) -> int:
    """Run `job_name` in process over the selected topics' partitions as one range, then print the batch job."""
    import dagster as dg

    requested = None if args.all else [t.strip() for t in args.topics.split(",") if t.strip()]
    if requested == []:
        raise CannotRun("no topics selected: pass --topics k1,k2 or --all")
    settings = _generator_settings(args)
    if args.max_cost_usd is not None and args.max_cost_usd <= 0:
        raise CannotRun("--max-cost-usd must be more than 0")
    config = {"max_cost_usd": args.max_cost_usd} if args.max_cost_usd is not None else {}
    if args.topics_per_run is not None and (args.topics_per_run < 1 or not args.submit):
        raise CannotRun("--topics-per-run takes a number of at least 1, with --submit")
    if args.submit:
        _ensure_queued()
    _dagster_home()
    with dg.DagsterInstance.get() as instance:
        tags = _topic_range(instance, database, requested, gate_first=gate_first)
        if args.submit:
            return _submit(instance, job_name, args, tags, settings, config)
        result = _execute(instance, job_name, args.generator, tags=tags, settings=settings, generation=config)
    print(f"== Dagster run {result.run_id} ({'success' if result.success else 'FAILED'}): {job_name}")
    materializations = result.asset_materializations_for_node("topic_conversations")
    if not result.success or not materializations:
        raise CannotRun(_run_failure(result))
    metadata = materializations[0].metadata
    with database.connection() as conn:
        print(_batch_summary(conn, metadata["batch_job_id"].value))
    if "cost_usd" in metadata:
        print(f"   cost ${metadata['cost_usd'].value:.4f} (estimated ${metadata['estimated_cost_usd'].value:.4f}): "
              f"{metadata['input_tokens'].value} input and {metadata['output_tokens'].value} output tokens, "
              f"{metadata['api_requests'].value} API requests")
    if "budget_reached" in metadata and metadata["budget_reached"].value:
        print(f"   budget of ${metadata['max_cost_usd'].value:.4f} reached: {metadata['items_left_queued'].value} "
              "item(s) left queued for a later run")
    return EXIT_OK


def _ensure_queued() -> None:
    """--submit needs an instance configured to queue runs (the CLI's default local one runs them here)."""
    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator

    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home")
    queued = False
    if (home / "dagster.yaml").is_file():
        with dg.DagsterInstance.from_config(str(home)) as instance:
            queued = isinstance(instance.run_coordinator, QueuedRunCoordinator)
    if not queued:
        raise CannotRun("--submit needs an instance that queues runs (run_coordinator: QueuedRunCoordinator, as in "
                        "deploy/dagster.yaml) and a running dagster-daemon")


def _submit(instance, job_name: str, args: argparse.Namespace, tags: dict, settings: dict, config: dict) -> int:
    """Queue one run per --topics-per-run topics of the selected range; the daemon launches them."""
    import dagster as dg

    from pipelines.partitions import topics
    from pipelines.submit import run_config, runs_at_once, shared_limits, submit_runs

    order = instance.get_dynamic_partitions(topics.name)
    first, last = order.index(tags["dagster/asset_partition_range_start"]), order.index(
        tags["dagster/asset_partition_range_end"])
    keys = order[first:last + 1]
    size = args.topics_per_run or len(keys)
    ranges = [dg.PartitionKeyRange(chunk[0], chunk[-1]) for chunk in (keys[i:i + size] for i in range(0, len(keys), size))]
    if args.generator == "anthropic":
        defaults = {name: field.default for name, field in GENERATORS["anthropic"].model_fields.items()}
        settings = shared_limits(settings, defaults, runs_at_once(instance, len(ranges)))
    run_ids = submit_runs(instance, job_name, ranges, run_config(args.generator, settings, config))
    for run_id, key_range in zip(run_ids, ranges):
        print(f"== queued Dagster run {run_id}: {job_name} for topics {key_range.start} .. {key_range.end}")
    print(f"   {len(run_ids)} run(s); the daemon launches them (the UI shows their progress)")
    return EXIT_OK


ANTHROPIC_FLAGS = ("model", "requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute")


def _generator_settings(args: argparse.Namespace) -> dict:
    """The generator's settings given as flags. The Anthropic generator's API key is never one: it stays an
    EnvVar (Dagster records only the name) read from ANTHROPIC_API_KEY, and the SDK reads ANTHROPIC_BASE_URL."""
    settings = {name: getattr(args, name) for name in ANTHROPIC_FLAGS if getattr(args, name) is not None}
    settings |= {"mode": "batch"} if args.batch else {}
    if args.generator != "anthropic":
        if settings:
            flag = "batch" if "mode" in settings else next(iter(settings)).replace("_", "-")
            raise CannotRun(f"--{flag} is for --generator anthropic")
    elif not os.environ.get("ANTHROPIC_API_KEY"):
        raise CannotRun("--generator anthropic needs the API key in ANTHROPIC_API_KEY")
    return settings


def _topic_range(instance, database: TargetDatabase, requested: list[str] | None, *, gate_first: bool) -> dict:
    """Run tags for one partition range over the selected active topics (None: all); refusals raise CannotRun."""
    from assets.audit.asset import CONTRACT
    from assets.generation.batch import JobSettings, written_values
    from assets.generation.gate import GateClosed, ensure_gate_open
    from pipelines.partitions import TopicSelectionError, add_topic_partitions, select_topics, selection_range

    with database.connection(autocommit=True) as conn:
        try:
            selected = select_topics(conn, requested)
            if gate_first:
                ensure_gate_open(conn, CONTRACT, written_values(JobSettings()), instance)
        except (TopicSelectionError, GateClosed) as exc:
            raise CannotRun(str(exc)) from None
        if not selected:
            raise CannotRun("no active training topics to generate for")
        add_topic_partitions(instance, conn)
    key_range = selection_range(instance, list(selected))
    return {"dagster/asset_partition_range_start": key_range.start, "dagster/asset_partition_range_end": key_range.end}


def _execute(instance, job_name: str, generator: str, *, tags: dict[str, str], settings: dict | None = None,
             generation: dict | None = None):
    from pipelines.definitions import defs
    from resources.database import target_database

    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        tags=tags,
        resources={"database": target_database(), "generator": GENERATORS[generator](**(settings or {}))},
        # A failed step's error is printed on one line by the caller; its stack trace stays in the run's event log.
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                    **({"ops": {"topic_conversations": {"config": generation}}} if generation else {})},
        raise_on_error=False,
    )


def _run_failure(result) -> str:
    """The first failed step's own error, on one line (Dagster wraps user errors in its own)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
                error = error.cause
            message = re.sub(rf"^(?:[\w.]+\.)?{re.escape(error.cls_name)}: ", "", error.message)  # no class path
            return f"{event.step_key} failed: {' '.join(message.split())}"
    return f"run {result.run_id} did not materialize topic_conversations"


def _batch_summary(conn: psycopg.Connection, job_id: str) -> str:
    from assets.generation.batch import job_summary

    job = job_summary(conn, job_id)
    (files,) = conn.execute(
        "SELECT count(*) FROM batch_items b JOIN conversations c ON c.id = b.conversation_id"
        " WHERE b.batch_job_id = %s", [job_id]
    ).fetchone()
    tiers = ", ".join(f"{n} {tier}" for tier, n in sorted(job["items_by_tier"].items()))
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(job["items_by_status"].items()))
    seconds = (job["completed_at"] - job["started_at"]).total_seconds() if job["completed_at"] else 0.0
    return (f"== batch job {job['id']} {job['status']}: {job['name']}\n"
            f"   items {job['total_items']} ({tiers}); {statuses}\n"
            f"   counters: completed_items={job['completed_items']} successful_items={job['successful_items']} "
            f"failed_items={job['failed_items']}; {files} conversations linked; {seconds:.1f} s")


def _dagster_home() -> Path:
    """The persistent DAGSTER_HOME (default .dagster_home/, SQLite storage) every CLI run is recorded in."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        shutil.copy(PROJECT_ROOT / "deploy" / "local-dagster.yaml", config)
    return home


def migrate(args: argparse.Namespace, database: TargetDatabase) -> int:
    """Fix the value-set constraints the audit finds refusing code values (or, with --dry-run, only plan)."""
    from assets.migration.execute import MigrationFailed, operator, outcome_text
    from assets.migration.execute import migrate as run_migration
    from assets.migration.plan import MissingPrivileges, PlanError

    contract = load_contract(args.contract)
    with database.connection(autocommit=True) as conn:
        try:
            outcome = run_migration(conn, contract, dry_run=args.dry_run, applied_by=operator("bulkgen migrate"))
        except MissingPrivileges as exc:
            raise CannotRun(f"migration not run: {exc}") from None
        except PlanError as exc:
            print(f"bulkgen: migration not run: {one_line(str(exc))}", file=sys.stderr)
            return EXIT_FINDINGS
        except MigrationFailed as exc:
            raise CannotRun(f"migration failed: {exc}") from None
        refused = [f for f in run_audit(conn, contract) if f.kind == "rejected_values"]
    if args.format == "sql":
        print(outcome.plan.sql(), end="")
    elif args.format == "json":
        print(json.dumps({**outcome.as_dict(), "still_refused": [asdict(f) for f in refused]}, indent=2))
    else:
        print(outcome_text(outcome))
    return EXIT_FINDINGS if refused or outcome.plan.errors else EXIT_OK


def demo(args: argparse.Namespace, database: TargetDatabase) -> int:
    """Load the legacy demo database and materialize every asset through Dagster, then summarize."""
    import dagster as dg

    home = _dagster_home()
    if database.url is None:
        _reset_embedded_app_database()
    with database.connection() as conn:
        counts = load_demo_database(conn)
    print(f"== demo database: {database.display_name()}\n   loaded {counts}")
    with dg.DagsterInstance.get() as instance:
        tags = _topic_range(instance, database, None, gate_first=False)
        result = _execute(instance, "chain_job", "template", tags=tags)
    print(f"== Dagster run {result.run_id} ({'success' if result.success else 'FAILED'}), DAGSTER_HOME={home}")
    for mat in result.asset_materializations_for_node("schema_audit"):
        print(f"\n-- schema_audit\n{mat.metadata['findings'].value}")
    for mat in result.asset_materializations_for_node("batch_jobs_status_constraint"):
        print(f"\n-- batch_jobs_status_constraint\n   {mat.metadata['outcome'].value}")
        print(f"   rows remapped: {mat.metadata['rows_remapped'].value}")
        print(f"\nbefore:\n{mat.metadata['constraints_before'].value}\n\nafter:\n{mat.metadata['constraints_after'].value}")
    evaluations = result.get_asset_check_evaluations()
    verification = [e for e in evaluations if e.asset_key == dg.AssetKey("generation_verification")]
    print("\n-- asset checks (the audit's ran before the fix; accepts_code_statuses after it)")
    for evaluation in evaluations:
        if evaluation.asset_key != dg.AssetKey("generation_verification"):
            print(f"   {'PASS' if evaluation.passed else 'FAIL'}  {evaluation.check_name}")
    for mat in result.asset_materializations_for_node("topic_conversations")[:1]:
        with database.connection() as conn:
            print(f"\n-- topic_conversations\n{_batch_summary(conn, mat.metadata['batch_job_id'].value)}")
    if verification:
        print(f"\n-- generation_verification\n{_verification_summary(verification)}")
    print("\nBrowse the runs with: .venv/bin/dagster dev  (DAGSTER_HOME=.dagster_home)")
    if not result.success:
        return EXIT_CANNOT_RUN
    return EXIT_OK if all(e.passed for e in verification) else EXIT_FINDINGS


def _verification_summary(evaluations) -> str:
    """Each verification check's verdict and numbers, and the first offending rows of a failed one."""
    lines = []
    for evaluation in evaluations:
        metadata = evaluation.metadata
        numbers = ", ".join(f"{k} {v.value}" for k, v in metadata.items() if k != "offending")
        lines.append(f"   {'PASS' if evaluation.passed else 'FAIL'}  {evaluation.check_name}: {numbers}")
        lines += [f"         {json.dumps(row)}" for row in metadata["offending"].value[:5]]
    return "\n".join(lines)


def _reset_embedded_app_database() -> None:
    from psycopg import sql

    from resources.embedded import APP_DATABASE, embedded_server_url

    with psycopg.connect(embedded_server_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(APP_DATABASE)))


def _fail(message: str) -> int:
    print(f"bulkgen: error: {one_line(message)}", file=sys.stderr)
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
    sub = command("migrate", migrate, "Fix the status constraints the audit finds refusing code values.")
    sub.add_argument("--contract", default=str(DEFAULT_CONTRACT), help="contract file (YAML)")
    sub.add_argument("--dry-run", action="store_true", help="only show the plan and its SQL; write nothing")
    sub.add_argument("--format", choices=["text", "sql", "json"], default="text",
                     help="sql: exactly the SQL that runs (or would, with --dry-run)")
    command("demo", demo, "Load the demo database and materialize every asset through Dagster.")
    for name, handler, help_text in [
        ("generate", generate, "Generate conversations for the selected topics (the generation asset only)."),
        ("run", run, "Audit, fix and generate for the selected topics, in one Dagster run."),
    ]:
        sub = command(name, handler, help_text)
        selection = sub.add_mutually_exclusive_group(required=True)
        selection.add_argument("--topics", help="comma-separated topic keys")
        selection.add_argument("--all", action="store_true", help="every active training topic")
        sub.add_argument("--generator", choices=sorted(GENERATORS), default="template",
                         help="conversation generator; anthropic reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL")
        llm = sub.add_argument_group("the anthropic generator")
        llm.add_argument("--model", help="Claude model id (default: the generator's)")
        llm.add_argument("--requests-per-minute", type=int, metavar="N",
                         help="requests per minute for the whole run (default: the generator's; 0: no limit)")
        llm.add_argument("--input-tokens-per-minute", type=int, metavar="N",
                         help="input tokens per minute for the whole run (default: no limit)")
        llm.add_argument("--output-tokens-per-minute", type=int, metavar="N",
                         help="output tokens per minute for the whole run (default: no limit)")
        llm.add_argument("--batch", action="store_true",
                         help="send the requests through the Message Batches API (half the price; the run waits for "
                              "its batches, and a run of the same topics re-attaches to them)")
        sub.add_argument("--submit", action="store_true",
                         help="queue the run(s) on the instance (the daemon launches them on its workers) instead of "
                              "running here; the workers' DATABASE_URL and ANTHROPIC_API_KEY are used")
        sub.add_argument("--topics-per-run", type=int, metavar="N",
                         help="with --submit: one run per N topics, each its own batch job, run at once as the "
                              "queue allows; each gets its share of the API limits")
        sub.add_argument("--max-cost-usd", type=float, metavar="USD",
                         help="most this run may spend with a metered generator; the items that would pass it stay "
                              "queued for a later run")
    return parser


if __name__ == "__main__":
    sys.exit(main())
