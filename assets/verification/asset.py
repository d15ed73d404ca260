"""The `generation_verification` asset: the verification queries over its topics' batch jobs, as asset checks.

Thin over `checks.verify_topics`. The checks are not blocking: nothing is downstream, and a
failed check should show its rows, not hide the run. A job `processing` counts as live only
while the Dagster instance says the run recorded on it (`run_label`) has not finished.
"""

import warnings

import dagster as dg

from assets.audit.contract import CONTRACT
from assets.generation.asset import run_label, topic_conversations
from assets.verification.checks import CHECKS, Verdict, verify_topics
from assets.partitions import select_topics, topics
from resources.conversation_store import ConversationStore
from resources.database import TargetDatabase

MAX_ROWS = 50  # offending rows shown per check; the count is always exact
UNFINISHED = [dg.DagsterRunStatus[s] for s in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "SUSPENDED", "CANCELING")]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # BackfillPolicy.single_run: the same runs as generation
    _generation_verification_asset = dg.asset(
        partitions_def=topics,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[topic_conversations],
        group_name="verification",
        kinds={"postgres"},
        check_specs=[dg.AssetCheckSpec(name, asset="generation_verification", description=text)
                     for name, (text, _) in CHECKS.items()],
        # Re-verify a topic whenever its conversations update (in the same run when both are requested).
        automation_condition=dg.AutomationCondition.eager(),
        description="The invariants a generation run must leave behind, checked on the latest batch job of each "
        "topic: constraints, counters, conversations and their files, nothing left processing, items per topic.",
    )


@_generation_verification_asset
def generation_verification(
    context: dg.AssetExecutionContext, database: TargetDatabase, conversation_store: ConversationStore
) -> dg.MaterializeResult:
    live = {run_label(run.run_id) for run in context.instance.get_runs(dg.RunsFilter(statuses=UNFINISHED))}
    with database.connection() as conn:
        selected = select_topics(conn, list(context.partition_keys))
        result = verify_topics(conn, CONTRACT, list(selected.values()), conversation_store, live)
    failed = [name for name, verdict in result.verdicts.items() if not verdict.passed]
    context.log.info(f"verified batch job(s) {', '.join(map(str, result.jobs))}: "
                     + (f"FAILED {', '.join(failed)}" if failed else "sound"))
    return dg.MaterializeResult(
        metadata={
            "database": database.display_name(),
            "batch_job_ids": dg.MetadataValue.json([str(job) for job in result.jobs]),
            "topics": len(selected),
            "checks_failed": len(failed),
            "summary": dg.MetadataValue.md(_summary(result.verdicts)),
        },
        check_results=[
            dg.AssetCheckResult(check_name=name, passed=verdict.passed, severity=dg.AssetCheckSeverity.ERROR,
                                metadata=check_metadata(verdict))
            for name, verdict in result.verdicts.items()
        ],
    )


def check_metadata(verdict: Verdict) -> dict:
    """The check's numbers, and the offending rows with their ids."""
    return {
        **verdict.numbers,
        "offending_rows": len(verdict.offending),
        "offending": dg.MetadataValue.json(verdict.offending[:MAX_ROWS]),
    }


def _summary(verdicts: dict[str, Verdict]) -> str:
    lines = ["| check | result | numbers |", "|---|---|---|"]
    for name, verdict in verdicts.items():
        numbers = ", ".join(f"{k} {v}" for k, v in verdict.numbers.items())
        outcome = "pass" if verdict.passed else f"FAIL ({len(verdict.offending)} rows)"
        lines.append(f"| {name} | {outcome} | {numbers} |")
    return "\n".join(lines)
