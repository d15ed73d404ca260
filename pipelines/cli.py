"""`bulkgen`: the command line over the same plain functions and Dagster jobs the UI uses.

Every command names its database on its first line (in its JSON, under "database"). Without
--database-url or DATABASE_URL only `demo` and `load-demo` use the embedded demo database; any
other command needs --embedded to use it. Dagster and the database driver are imported only by a
command that needs them, so --help answers at once.
Exit codes: each command's --help lists them; 130 after Ctrl-C (SIGINT) and 143 after SIGTERM, with
one line saying what was left: an interrupted run's batch job waits for the same command to resume it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from assets.audit.contract import DEFAULT_CONTRACT
from pipelines.contract_commands import add_contract_commands

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT_RUN = 0, 1, 2
CANNOT_RUN = "2: it cannot run (no database chosen, bad URL, unreachable database, malformed contract, bad "\
    "arguments), with a one-line error"
EXIT_CODES = {  # command -> what its exit codes 0 and 1 mean
    "audit": ("no finding of severity error", "some error finding (e.g. a CHECK refuses a value the code writes)"),
    "load-demo": ("loaded", None),
    "migrate": ("the database accepts every code value (fixed now, or nothing to do)",
                "some value is still refused (always so after --dry-run on a database that needs the fix), or the "
                "plan needs a decision first (a legacy value with no mapping)"),
    "demo": ("every verification check passed", "some verification check failed"),
    "generate": ("the batch job completed", None),
    "run": ("the batch job completed", None),
    "cancel": ("the batch job is cancelled", None),
}
INTERRUPTED = ("130 (SIGINT, Ctrl-C) or 143 (SIGTERM): interrupted at a safe point, one line says what was left; "
               "the same command resumes the batch job")
NO_DATABASE = ("no database chosen: pass --database-url URL or set DATABASE_URL (the application's database), "
               "or pass --embedded for the embedded demo database")
EXIT_SIGNALLED = 128  # + the signal's number, as a shell reports a process a signal stopped


class CannotRun(RuntimeError):
    """A user-facing reason the command cannot run."""


class Interrupted(RuntimeError):
    """The command stopped on a signal; the message says what it left (and how to resume)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from assets.audit.contract import ContractError
    from assets.audit.typescript_source import SourceError

    if not getattr(args, "uses_database", True):  # `contract ...` reads only the app's code
        try:
            return args.command(args, None)
        except (ContractError, SourceError) as exc:
            return _fail(str(exc))
    try:
        url = _chosen_url(args)
    except CannotRun as exc:
        return _fail(str(exc))
    with _signals_received() as received:
        try:
            return _command(args, url, received)
        except KeyboardInterrupt:  # outside a Dagster run: Ctrl-C, or SIGTERM (see _signals_received)
            signum = (received() or [signal.SIGINT])[-1]
            return _interrupted(Interrupted(signum, "stopped before it finished; the same command is safe to run again"))


def _command(args: argparse.Namespace, url: str | None, received: Callable[[], list[int]]) -> int:
    import psycopg

    from assets.audit.contract import ContractError
    from assets.audit.typescript_source import SourceError
    from pipelines.demo import DemoDatabaseError
    from resources.database import DatabaseUnavailable, TargetDatabase, scrub

    args.signals_received = received
    database = TargetDatabase(url=url)
    _name_the_database(args, database)
    try:
        return args.command(args, database)
    except Interrupted as exc:
        return _interrupted(exc)
    except (CannotRun, ContractError, DatabaseUnavailable, DemoDatabaseError, SourceError) as exc:
        return _fail(str(exc))
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())
        return _fail(f"database error: {scrub(message, url) if url else message}")


def _chosen_url(args: argparse.Namespace) -> str | None:
    """The target database's DSN, None for the embedded one; exported (or removed) as DATABASE_URL, which the
    Dagster run resolves its database resource from, so the run works on the same database as the command."""
    if args.database_url:
        url = args.database_url
    elif args.embedded:
        url = None
    else:
        url = os.environ.get("DATABASE_URL") or None
        if url is None and not args.embedded_by_default:
            raise CannotRun(NO_DATABASE)
    if url:
        os.environ["DATABASE_URL"] = url
    else:
        os.environ.pop("DATABASE_URL", None)
    return url


def _name_the_database(args: argparse.Namespace, database) -> None:
    """The first line of the output (JSON carries it as a field instead; SQL as a comment)."""
    output = getattr(args, "format", None)
    if output == "sql":
        print(f"-- database: {database.display_name()}", flush=True)
    elif output != "json":
        print(f"== database: {database.display_name()}", flush=True)


def audit(args: argparse.Namespace, database) -> int:
    from assets.audit.code_audit import run_code_audit
    from assets.audit.code_contract import extract_code_contract
    from assets.audit.contract import load_contract
    from assets.audit.findings import findings_markdown, run_audit, severity_counts

    contract = load_contract(args.contract)
    code = extract_code_contract(args.source) if args.source else None  # before connecting: a bad folder fails fast
    with database.connection() as conn:
        findings = run_code_audit(conn, contract, code) if code else run_audit(conn, contract)
    if args.format == "json":
        print(json.dumps({"database": database.display_name(), "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        print(findings_markdown(findings))
        print(f"\n{severity_counts(findings)}")
    return EXIT_FINDINGS if any(f.severity == "error" for f in findings) else EXIT_OK


def load_demo(args: argparse.Namespace, database) -> int:
    from pipelines.demo import load_demo_database

    with database.connection() as conn:
        counts = load_demo_database(conn)
    print(f"loaded the legacy demo schema: {counts}")
    return EXIT_OK


def generate(args: argparse.Namespace, database) -> int:
    """Only the generation asset, for the selected topics; refuses before any write on an unfixed database."""
    return _generation_run(args, database, "generation_job", gate_first=True)


def run(args: argparse.Namespace, database) -> int:
    """The whole chain (audit → fix → generation) for the selected topics, in one Dagster run."""
    return _generation_run(args, database, "chain_job", gate_first=False)


def _generation_run(args: argparse.Namespace, database, job_name: str, *, gate_first: bool) -> int:
    """Run `job_name` in process over the selected topics' partitions as one range, then print the batch job."""
    requested = None if args.all else [t.strip() for t in args.topics.split(",") if t.strip()]
    if requested == []:
        raise CannotRun("no topics selected: pass --topics k1,k2 or --all")
    settings = _generator_settings(args)
    if args.max_cost_usd is not None and args.max_cost_usd <= 0:
        raise CannotRun("--max-cost-usd must be more than 0")
    if args.topics_per_run is not None and (args.topics_per_run < 1 or not args.submit):
        raise CannotRun("--topics-per-run takes a number of at least 1, with --submit")
    if args.submit:
        _ensure_queued()
    owner = _owner(database, args.owner)
    if args.submit:
        config = {"owner": owner, "new_batch": args.new_batch}
        config |= {"max_cost_usd": args.max_cost_usd} if args.max_cost_usd is not None else {}
        return _submit_on_topics(database, requested, job_name, args, gate_first=gate_first, settings=settings,
                                 config=config)
    result = _run_on_topics(database, requested, job_name, args.generator, gate_first=gate_first, settings=settings,
                            owner=owner, new_batch=args.new_batch, max_cost_usd=args.max_cost_usd)
    if signals := args.signals_received():
        with database.connection() as conn:
            raise Interrupted(signals[-1], _interrupted_job(conn, result.run_id))
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

    from resources.embedded import STATE_DIR

    home = Path(os.environ.get("DAGSTER_HOME") or STATE_DIR / ".dagster_home")
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

    from assets.partitions import topics
    from pipelines.submit import run_config, runs_at_once, shared_limits, submit_runs
    from resources.generator_choice import GENERATORS

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
    from resources.generator_choice import GENERATORS

    if args.generator not in GENERATORS:
        raise CannotRun(f"unknown generator {args.generator!r}: choose {' or '.join(sorted(GENERATORS))}")
    settings = {name: getattr(args, name) for name in ANTHROPIC_FLAGS if getattr(args, name) is not None}
    settings |= {"mode": "batch"} if args.batch else {}
    if args.generator != "anthropic":
        if settings:
            flag = "batch" if "mode" in settings else next(iter(settings)).replace("_", "-")
            raise CannotRun(f"--{flag} is for --generator anthropic")
    elif not os.environ.get("ANTHROPIC_API_KEY"):
        raise CannotRun("--generator anthropic needs the API key in ANTHROPIC_API_KEY")
    return settings


def _owner(database, owner: str | None) -> str:
    """The run's owner (--owner, else $BULKGEN_OWNER), refused before anything runs when it cannot be written."""
    from assets.audit.contract import CONTRACT
    from assets.generation.owner import OwnerRefused, default_owner, ensure_owner

    with database.connection(autocommit=True) as conn:
        try:
            return str(ensure_owner(conn, CONTRACT, owner or default_owner()))
        except OwnerRefused as exc:
            raise CannotRun(str(exc)) from None


def _run_on_topics(database, requested: list[str] | None, job_name: str, generator: str, *, gate_first: bool,
                   owner: str, settings: dict | None = None, new_batch: bool = False,
                   max_cost_usd: float | None = None):
    """Run `job_name` in process over the selected topics' partitions as one range, recorded in the local
    instance, holding the partitions' order steady until the run has ended (see `pipelines.local_instance`)."""
    import dagster as dg

    from pipelines.local_instance import dagster_home, instance_changes, run_hold

    home = dagster_home()
    with instance_changes(home):  # a new instance's storage is created on first use
        instance = dg.DagsterInstance.get()
    with instance, run_hold(home) as hold:
        tags = _topic_range(instance, home, hold, database, requested, gate_first=gate_first)
        return _execute(instance, job_name, generator, tags=tags, settings=settings, owner=owner,
                        new_batch=new_batch, max_cost_usd=max_cost_usd)


def _submit_on_topics(database, requested: list[str] | None, job_name: str, args: argparse.Namespace, *,
                      gate_first: bool, settings: dict, config: dict) -> int:
    """As `_run_on_topics`, but the runs go to the instance's queue (see `pipelines.submit`)."""
    import dagster as dg

    from pipelines.local_instance import dagster_home, instance_changes, run_hold

    home = dagster_home()
    with instance_changes(home):
        instance = dg.DagsterInstance.get()
    with instance, run_hold(home) as hold:
        tags = _topic_range(instance, home, hold, database, requested, gate_first=gate_first)
        return _submit(instance, job_name, args, tags, settings, config)


def _topic_range(instance, home: Path, hold, database, requested: list[str] | None, *, gate_first: bool) -> dict:
    """Run tags for one partition range over the selected active topics (None: all); refusals raise CannotRun."""
    from assets.audit.contract import CONTRACT
    from assets.generation.batch import JobSettings, written_values
    from assets.generation.gate import GateClosed, ensure_gate_open
    from pipelines.local_instance import instance_changes
    from assets.partitions import (
        TopicSelectionError,
        add_topic_partitions,
        contiguous_range,
        select_topics,
        selection_range,
    )

    with database.connection(autocommit=True) as conn:
        try:
            selected = select_topics(conn, requested)
            if gate_first:
                ensure_gate_open(conn, CONTRACT, written_values(JobSettings()))
        except (TopicSelectionError, GateClosed) as exc:
            raise CannotRun(str(exc)) from None
        if not selected:
            raise CannotRun("no active training topics to generate for")
        with instance_changes(home):
            add_topic_partitions(instance, conn)  # appended: the ranges of runs in flight stay as they are
    key_range = contiguous_range(instance, list(selected))
    if key_range is None:
        with hold.reordering(), instance_changes(home):
            key_range = selection_range(instance, list(selected))
    return {"dagster/asset_partition_range_start": key_range.start, "dagster/asset_partition_range_end": key_range.end}


def _execute(instance, job_name: str, generator: str, *, tags: dict[str, str], owner: str,
             settings: dict | None = None, new_batch: bool = False, max_cost_usd: float | None = None):
    from pipelines.definitions import defs
    from resources.database import target_database
    from resources.generator_choice import GENERATORS

    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        tags=tags,
        resources={"database": target_database(), "generator": GENERATORS[generator](**(settings or {}))},
        # A failed step's error is printed on one line by the caller; its stack trace stays in the run's event log.
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                    "ops": {"topic_conversations": {"config": {
                        "owner": owner, "new_batch": new_batch,
                        **({"max_cost_usd": max_cost_usd} if max_cost_usd is not None else {})}}}},
        raise_on_error=False,
    )


def _interrupted_job(conn: psycopg.Connection, run_id: str) -> str:
    """What an interrupted run left of its batch job, and what resumes it."""
    from assets.generation.asset import run_label

    job = conn.execute(
        "SELECT id, status, completed_items, total_items FROM batch_jobs WHERE shared_parameters ->> 'run' = %s",
        [run_label(run_id)],
    ).fetchone()
    if job is None:
        return f"Dagster run {run_id} stopped before generation started; nothing was generated"
    job_id, status, done, total = job
    resume = ("; the same command resumes it (--new-batch starts a new set instead)"
              if status in ("queued", "processing") else "")
    return f"batch job {job_id} {status}, {done} of {total} items done{resume}"


def cancel(args: argparse.Namespace, database: TargetDatabase) -> int:
    """Cancel a batch job for good: a run processing it stops; the next run for its topics starts a new job."""
    from assets.generation.batch import NotCancellable, cancel_job

    with database.connection(autocommit=True) as conn:
        try:
            job = cancel_job(conn, args.job)
        except NotCancellable as exc:
            raise CannotRun(str(exc)) from None
        _cancel_message_batches(conn, job["id"])
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(job["items_by_status"].items()))
    print(f"== batch job {job['id']} {job['status']}: {job['name']}\n   items {job['total_items']}: {statuses}")
    return EXIT_OK


def _cancel_message_batches(conn, job_id) -> None:
    """A cancelled job's message batches would still be billed: cancel those not yet recorded (a run processing
    the job cancels them itself; this is for a job no live run holds)."""
    from assets.generation.message_batches import cancel_job_batches, recorded_batches
    from resources.generator_choice import GENERATORS

    if not recorded_batches(conn, job_id):
        return
    if not os.environ.get("ANTHROPIC_API_KEY"):
        print(f"   its message batches {', '.join(recorded_batches(conn, job_id))} still run: set ANTHROPIC_API_KEY "
              "and cancel again to cancel them")
        return
    generator = GENERATORS["anthropic"](mode="batch")
    try:
        cancel_job_batches(conn, job_id, generator, lambda line: print(f"   {line}"))
    finally:
        generator.close()


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


def _batch_summary(conn, job_id: str) -> str:
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


def migrate(args: argparse.Namespace, database) -> int:
    """Fix the value-set constraints the audit finds refusing code values (or, with --dry-run, only plan)."""
    from assets.audit.contract import load_contract
    from assets.audit.findings import run_audit
    from assets.migration.execute import MigrationFailed, operator, outcome_text
    from assets.migration.execute import migrate as run_migration
    from assets.migration.plan import MigrationSettings, MissingPrivileges, PlanError
    from assets.one_line import one_line

    contract = load_contract(args.contract)
    with database.connection(autocommit=True) as conn:
        try:
            outcome = run_migration(conn, contract, MigrationSettings(allow_shared_domain=args.allow_shared_domain),
                                    dry_run=args.dry_run, applied_by=operator("bulkgen migrate"))
        except MissingPrivileges as exc:
            raise CannotRun(f"migration not run: {exc}") from None
        except PlanError as exc:
            print(getattr(exc, "sql", ""), end="")  # the SQL a person would run instead, when there is one
            print(f"bulkgen: migration not run: {one_line(str(exc))}", file=sys.stderr)
            return EXIT_FINDINGS
        except MigrationFailed as exc:
            raise CannotRun(f"migration failed: {exc}") from None
        refused = [f for f in run_audit(conn, contract) if f.kind == "rejected_values"]
    if args.format == "sql":
        print(outcome.plan.sql(), end="")
    elif args.format == "json":
        print(json.dumps({"database": database.display_name(), **outcome.as_dict(),
                          "still_refused": [asdict(f) for f in refused]}, indent=2))
    else:
        print(outcome_text(outcome, with_sql=args.dry_run))
    return EXIT_FINDINGS if refused or outcome.plan.errors else EXIT_OK


def demo(args: argparse.Namespace, database) -> int:
    """Load the legacy demo database and materialize every asset through Dagster, then summarize."""
    import dagster as dg

    from pipelines.demo import DEMO_OWNER, DEMO_OWNER_NAME, load_demo_database
    from pipelines.local_instance import dagster_home

    home = dagster_home()
    if database.url is None:
        _reset_embedded_app_database()
    with database.connection() as conn:
        counts = load_demo_database(conn)
    print(f"   loaded the legacy demo schema: {counts}")
    print(f"   owner: {DEMO_OWNER} (user_profiles: {DEMO_OWNER_NAME}), the app user the conversations are for")
    result = _run_on_topics(database, None, "chain_job", "template", gate_first=False, owner=DEMO_OWNER)
    print(f"== Dagster run {result.run_id} ({'success' if result.success else 'FAILED'}), DAGSTER_HOME={home}")
    for mat in result.asset_materializations_for_node("schema_audit"):
        print(f"\n-- schema_audit\n{mat.metadata['findings'].value}")
    for mat in result.asset_materializations_for_node("value_set_constraints"):
        print(f"\n-- value_set_constraints\n   {mat.metadata['outcome'].value}")
        print(f"   rows remapped: {mat.metadata['rows_remapped'].value}")
        print(f"\nbefore:\n{mat.metadata['constraints_before'].value}\n\nafter:\n{mat.metadata['constraints_after'].value}")
    evaluations = result.get_asset_check_evaluations()
    verification = [e for e in evaluations if e.asset_key == dg.AssetKey("generation_verification")]
    print("\n-- asset checks (the audit's ran before the fix and again after it; accepts_code_values after it)")
    for evaluation in evaluations:
        if evaluation.asset_key != dg.AssetKey("generation_verification"):
            when = f"  ({evaluation.metadata['evaluated'].value})" if "evaluated" in evaluation.metadata else ""
            print(f"   {'PASS' if evaluation.passed else 'FAIL'}  {evaluation.check_name}{when}")
    for mat in result.asset_materializations_for_node("topic_conversations")[:1]:
        with database.connection() as conn:
            print(f"\n-- topic_conversations\n{_batch_summary(conn, mat.metadata['batch_job_id'].value)}")
            print(_first_training_pair(conn, mat.metadata['batch_job_id'].value))
    if verification:
        print(f"\n-- generation_verification\n{_verification_summary(verification)}")
    print(f"\nBrowse the runs in the Dagster UI: {_make_dev(home)}")
    if not result.success:
        return EXIT_CANNOT_RUN
    return EXIT_OK if all(e.passed for e in verification) else EXIT_FINDINGS


def _first_training_pair(conn, job_id: str) -> str:
    """The job's first conversation as the app stores it: its row, its file's key and first training pair."""
    from resources.conversation_store import ConversationStore

    row = conn.execute(
        "SELECT c.status, c.created_by, c.storage_bucket, c.file_path FROM batch_items b"
        "  JOIN conversations c ON c.id = b.conversation_id WHERE b.batch_job_id = %s ORDER BY b.position LIMIT 1",
        [job_id],
    ).fetchone()
    if row is None:
        return "   no conversation written"
    status, owner, bucket, key = row
    pair = ConversationStore().read(key)["training_pairs"][0]
    shown = {k: pair[k] for k in ("id", "turn_number", "current_user_input", "emotional_context", "target_response")}
    return (f"   first conversation: status {status}, created_by {owner}, {bucket}/{key}\n"
            f"   its first training pair:\n"
            + "\n".join(f"     {line}" for line in json.dumps(shown, indent=2, ensure_ascii=False).splitlines()))


def _verification_summary(evaluations) -> str:
    """Each verification check's verdict and numbers, and the first offending rows of a failed one."""
    lines = []
    for evaluation in evaluations:
        metadata = evaluation.metadata
        numbers = ", ".join(f"{k} {v.value}" for k, v in metadata.items() if k != "offending")
        lines.append(f"   {'PASS' if evaluation.passed else 'FAIL'}  {evaluation.check_name}: {numbers}")
        lines += [f"         {json.dumps(row)}" for row in metadata["offending"].value[:5]]
    return "\n".join(lines)


def _make_dev(home: Path) -> str:
    """The command that serves the UI on the instance this run was recorded in."""
    from resources.embedded import STATE_DIR

    default = home.resolve() == (STATE_DIR / ".dagster_home").resolve()
    return "make dev" if default else f"DAGSTER_HOME={home} make dev"


def _reset_embedded_app_database() -> None:
    import psycopg
    from psycopg import sql

    from resources.embedded import APP_DATABASE, embedded_server_url

    with psycopg.connect(embedded_server_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(APP_DATABASE)))


@contextmanager
def _signals_received() -> Iterator[Callable[[], list[int]]]:
    """Which of SIGINT and SIGTERM arrived, whoever handled them (Dagster swaps its own handlers in during a
    run): each signal a Python handler takes is also written to a wakeup pipe. Outside a run, SIGTERM
    stops the command as Ctrl-C does rather than killing it mid-write. (Signals reach only the main thread.)"""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: []
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    seen: list[int] = []

    def received() -> list[int]:
        try:
            seen.extend(b for b in os.read(read, 64) if b in (signal.SIGINT, signal.SIGTERM))
        except BlockingIOError:
            pass
        return seen

    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.set_wakeup_fd(previous_fd)
        os.close(read)
        os.close(write)


def _interrupted(exc: Interrupted) -> int:
    from assets.one_line import one_line

    print(f"bulkgen: interrupted by {signal.Signals(exc.signum).name}: {one_line(str(exc))}", file=sys.stderr)
    return EXIT_SIGNALLED + exc.signum


def _fail(message: str) -> int:
    from assets.one_line import one_line

    print(f"bulkgen: error: {one_line(message)}", file=sys.stderr)
    return EXIT_CANNOT_RUN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulkgen", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 when nothing is wrong; 1 when the command found something wrong (each command's "
               f"--help says what); {CANNOT_RUN}.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler, help_text: str, *, embedded_by_default: bool = False) -> argparse.ArgumentParser:
        ok, findings = EXIT_CODES[name]
        codes = [textwrap.fill(code, 100, initial_indent="  ", subsequent_indent="     ")
                 for code in [f"0: {ok}", *([f"1: {findings}"] if findings else []), CANNOT_RUN,
                              *([INTERRUPTED] if name in ("run", "generate") else [])]]
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog="exit codes:\n" + "\n".join(codes),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--database-url", metavar="URL", help="the target database's DSN (default: $DATABASE_URL"
                           + (", else the embedded demo database)" if embedded_by_default else ")"))
        where.add_argument("--embedded", action="store_true", help="use the embedded demo database"
                           + (" (the default without a URL)" if embedded_by_default else ""))
        sub.set_defaults(command=handler, embedded_by_default=embedded_by_default)
        return sub

    sub = command("audit", audit, "Audit the live schema against the contract (read-only).")
    sub.add_argument("--contract", default=str(DEFAULT_CONTRACT), help="contract file (YAML)")
    sub.add_argument("--source", help="the app's source folder: the value sets its code writes replace the contract's")
    sub.add_argument("--format", choices=["table", "json"], default="table")
    add_contract_commands(commands)
    command("load-demo", load_demo, "Load the legacy demo schema and rows into an empty database.",
            embedded_by_default=True)
    sub = command("migrate", migrate, "Fix the status constraints the audit finds refusing code values.")
    sub.add_argument("--contract", default=str(DEFAULT_CONTRACT), help="contract file (YAML)")
    sub.add_argument("--dry-run", action="store_true", help="only show the plan and its SQL; write nothing")
    sub.add_argument("--format", choices=["text", "sql", "json"], default="text",
                     help="sql: exactly the SQL that runs (or would, with --dry-run)")
    sub.add_argument("--allow-shared-domain", action="store_true",
                     help="replace a domain's constraint even when columns outside the contract use the domain")
    command("demo", demo, "Load the demo database and materialize every asset through Dagster.",
            embedded_by_default=True)
    sub = command("cancel", cancel, "Cancel a batch job for good (an interrupted run's job is resumed instead).")
    sub.add_argument("job", help="the batch job's id")
    for name, handler, help_text in [
        ("generate", generate, "Generate conversations for the selected topics (the generation asset only)."),
        ("run", run, "Audit, fix and generate for the selected topics, in one Dagster run."),
    ]:
        sub = command(name, handler, help_text)
        selection = sub.add_mutually_exclusive_group(required=True)
        selection.add_argument("--topics", help="comma-separated topic keys")
        selection.add_argument("--all", action="store_true", help="every active training topic")
        sub.add_argument("--owner", metavar="UUID",
                         help="the app user the conversations are for (default: $BULKGEN_OWNER); written to created_by")
        sub.add_argument("--new-batch", action="store_true",
                         help="generate a full new set, cancelling these topics' unfinished batch job "
                         "(default: resume it, doing only the items left)")
        sub.add_argument("--generator", default="template", metavar="NAME",
                         help="conversation generator: template (default, offline) or anthropic (reads "
                              "ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL)")
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
