"""The `topic_conversations` asset: one batch job per run over the run's topic partitions."""

import warnings
from typing import Literal

import dagster as dg
from pydantic import Field

from assets.audit.asset import CONTRACT
from assets.generation.batch import JobSettings, written_values
from assets.generation.gate import ensure_gate_open
from assets.generation.processing import GenerationResult, generate_conversations
from assets.migration.asset import batch_jobs_status_constraint
from pipelines.partitions import select_topics, topics
from resources.conversation_store import ConversationStore
from resources.database import TargetDatabase
from resources.generators import ConversationGenerator

PREVIEW_TURNS = 4


class GenerationConfig(dg.Config):
    concurrent_processing: int = Field(default=3, ge=1, le=10, description="Conversations generated at once.")
    error_handling: Literal["stop", "continue"] = Field(
        default="continue", description="'stop' ends the job at its first failed item; 'continue' runs every item."
    )
    priority: Literal["low", "normal", "high"] = "normal"


with warnings.catch_warnings():
    # BackfillPolicy.single_run is beta (it warns); one run per backfill is the point here.
    warnings.simplefilter("ignore", dg.BetaWarning)
    _topic_conversations_asset = dg.asset(
        partitions_def=topics,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[batch_jobs_status_constraint],
        group_name="generation",
        kinds={"postgres", "python"},
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
    settings = JobSettings(config.concurrent_processing, config.error_handling, config.priority)
    with database.connection(autocommit=True) as conn:
        selected = select_topics(conn, list(context.partition_keys))
        ensure_gate_open(conn, CONTRACT, written_values(settings), context.instance)
        result = generate_conversations(
            conn, list(selected.values()), generator, conversation_store, settings,
            label=f"run {context.run.run_id[:8]}", log=context.log.info,
        )
    context.log.info(f"batch job {result.job.id} {result.status}: {result.summary['items_by_status']}")
    if result.status != "completed":
        raise dg.Failure(f"batch job {result.job.id} ended {result.status}", metadata=_metadata(result))
    return dg.MaterializeResult(metadata=_metadata(result))


def _metadata(result: GenerationResult) -> dict:
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
    }


def _preview(document: dict | None) -> str:
    if document is None:
        return "No conversation was written by this run."
    head = (f"**{document['persona'].get('name', '?')}** · {document['arc'].get('name', '?')} · "
            f"{document['topic'].get('name', '?')} ({document['tier']}, {document['turn_count']} exchanges)")
    turns = [f"> **{t['role']}**: {t['content']}" for t in document["turns"][:PREVIEW_TURNS]]
    more = len(document["turns"]) - PREVIEW_TURNS
    return "\n\n".join([head, *turns, *([f"_…{more} more turns_"] if more > 0 else [])])
