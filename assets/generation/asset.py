"""The `topic_conversations` asset: one batch job per run over the run's topic partitions.

Automated materializations (the automation condition sensor, when an operator turns it on)
generate a topic once, when its partition is added (`on_missing`: a new topic from the topic
sensor), and only once the fix's blocking check has passed on its latest materialization
(`all_deps_blocking_checks_passed`): a blocking check stops downstream steps only inside its
own run, and this carries that across runs. Existing topics are not regenerated each time the
fix is materialized (`eager` would): regeneration is the daily schedule's, or an operator's,
and can cost money with an LLM generator. The in-asset gate stays for every other way in.
"""

import warnings
from typing import Literal

import dagster as dg
import psycopg
from pydantic import Field

from assets.audit.contract import CONTRACT
from assets.generation.batch import CONVERSATION_STATUS, JobSettings, written_values
from assets.generation.gate import ensure_gate_open
from assets.generation.owner import default_owner, ensure_owner
from assets.generation.processing import GenerationResult, generate_conversations
from assets.migration.asset import value_set_constraints
from assets.partitions import select_topics, topics
from resources.conversation_store import ConversationStore
from resources.database import DatabaseUnavailable, TargetDatabase, connection_lost
from resources.generators import ConversationGenerator

PREVIEW_PAIRS = 2
DB_RETRIES = 5  # a lost database (restart, failover): the step is retried with backoff, 1 s to 16 s, and resumes
AUTOMATION = dg.AutomationCondition.on_missing() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def run_label(run_id: str) -> str:
    """How a batch job records the Dagster run processing it (its `shared_parameters.run`, and its name)."""
    return f"run {run_id}"


class GenerationConfig(dg.Config):
    concurrent_processing: int = Field(default=3, ge=1, le=10, description="Conversations generated at once.")
    error_handling: Literal["stop", "continue"] = Field(
        default="continue", description="'stop' ends the job at its first failed item; 'continue' runs every item."
    )
    priority: Literal["low", "normal", "high"] = "normal"
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="Most US dollars this run may spend with a metered generator; items that "
        "would pass it stay queued for a later run. Unset: no limit.",
    )
    owner: str | None = Field(
        default=None, description="UUID of the app user the conversations are for; unset means $BULKGEN_OWNER."
    )
    conversation_status: str = Field(
        default=CONVERSATION_STATUS,
        description="Status the conversations are written with: the app's review queue lists pending_review.",
    )
    new_batch: bool = Field(
        default=False, description="Generate a full new set for these topics, cancelling their unfinished batch job; "
        "by default a run resumes that job (after an interrupt, say) and does only what is left.",
    )


with warnings.catch_warnings():
    # BackfillPolicy.single_run is beta (it warns); one run per backfill is the point here.
    warnings.simplefilter("ignore", dg.BetaWarning)
    _topic_conversations_asset = dg.asset(
        partitions_def=topics,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[value_set_constraints],
        group_name="generation",
        kinds={"postgres", "python"},
        automation_condition=AUTOMATION,
        description="Conversations for each topic × persona × emotional arc, generated as one batch job per run; "
        "refuses to write unless the live schema accepts every value it writes and the fix passed its check.",
    )


@_topic_conversations_asset
def topic_conversations(
    context: dg.AssetExecutionContext,
    config: GenerationConfig,
    database: TargetDatabase,
    generator: ConversationGenerator,
    conversation_store: ConversationStore,
) -> dg.MaterializeResult:
    settings = JobSettings(config.concurrent_processing, config.error_handling, config.priority,
                           owner=config.owner or default_owner(), conversation_status=config.conversation_status)
    try:
        with database.connection(autocommit=True) as conn:
            selected = select_topics(conn, list(context.partition_keys))
            ensure_owner(conn, CONTRACT, settings.owner)
            fix = ensure_gate_open(conn, CONTRACT, written_values(settings))
            result = generate_conversations(
                conn, list(selected.values()), generator, conversation_store, settings,
                label=run_label(context.run.run_id), log=context.log.info, new_batch=config.new_batch,
                max_cost_usd=config.max_cost_usd,
            )
    except (psycopg.Error, DatabaseUnavailable) as exc:
        if not connection_lost(exc):
            raise
        wait = 2 ** min(context.retry_number, 4)
        context.log.warning(f"lost the database ({' '.join(str(exc).split())}); "
                            f"retry {context.retry_number + 1} of {DB_RETRIES} in {wait} s resumes the batch job")
        raise dg.RetryRequested(max_retries=DB_RETRIES, seconds_to_wait=wait) from exc
    context.log.info(f"batch job {result.job.id} {result.status}: {result.summary['items_by_status']}")
    metadata = {"database": database.display_name(), "fix": fix, **_metadata(result, generator)}
    if result.budget_reached and result.status == "queued":  # not a failure: the rest waits for a later run
        context.log.warning(f"{result.budget.describe()}: {result.items_left_queued} item(s) of batch job "
                            f"{result.job.id} stay queued")
    elif result.status != "completed":
        raise dg.Failure(f"batch job {result.job.id} ended {result.status}", metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


def _metadata(result: GenerationResult, generator: ConversationGenerator) -> dict:
    summary = result.summary
    return {
        "batch_job_id": str(result.job.id),
        "batch_job_status": result.status,
        "resumed": result.job.resumed,
        "items": summary["total_items"],
        "edge_case_items": summary["items_by_tier"].get("edge_case", 0),
        "successes": summary["successful_items"],
        "failures": summary["failed_items"],
        "processed_this_run": result.processed,
        "throughput_items_per_s": dg.MetadataValue.float(round(result.throughput, 2)),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
        "preview": dg.MetadataValue.md(_preview(result.preview)),
    } | _cost(result, generator)


def _cost(result: GenerationResult, generator: ConversationGenerator) -> dict:
    """A metered generator's estimated and actual cost and the API's token counts for this run (numbers, so the
    UI plots them across runs); nothing for a generator that bills nothing."""
    if result.estimated_usage is None:
        return {}
    usage, estimated = result.usage, result.estimated_usage
    cost = generator.cost(usage)
    return {
        "estimated_cost_usd": dg.MetadataValue.float(round(generator.cost(estimated), 6)),
        "cost_usd": dg.MetadataValue.float(round(cost, 6)),
        "cost_per_conversation_usd": dg.MetadataValue.float(round(cost / result.succeeded, 6) if result.succeeded
                                                            else 0.0),
        "estimated_tokens": estimated.total_tokens,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "total_tokens": usage.total_tokens,
        "api_requests": usage.requests,
        "batch_mode": bool(getattr(generator, "batched", False)),
    } | ({
        "max_cost_usd": dg.MetadataValue.float(result.budget.max_cost_usd),
        "budget_reached": result.budget.reached,
        "items_left_queued": result.items_left_queued,
    } if result.budget is not None else {})


def _preview(document: dict | None) -> str:
    if document is None:
        return "No conversation was written by this run."
    metadata, pairs = document["dataset_metadata"], document["training_pairs"]
    head = f"**{metadata['dataset_name']}** ({metadata.get('quality_tier', '?')}, {len(pairs)} training pairs)"
    turns = [f"> **user**: {p.get('current_user_input', '')}\n>\n> **{document['consultant_profile']['name']}**: "
             f"{p['target_response']}" for p in pairs[:PREVIEW_PAIRS]]
    more = len(pairs) - PREVIEW_PAIRS
    return "\n\n".join([head, *turns, *([f"_…{more} more training pairs_"] if more > 0 else [])])
