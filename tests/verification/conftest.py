"""Fixtures for verification: a fixed database with one sound generation run over two topics."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import psycopg
import pytest

from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from resources.conversation_store import ConversationStore
from resources.generators import TemplateGenerator
from tests.generation.conftest import fixed_db, fixed_template, instance, store  # noqa: F401 (fixtures)

TOPICS = ["ignored_401k", "esg_investing"]
LABEL = "run r-sound"  # as generation records a Dagster run on its job


@dataclass(frozen=True)
class SoundRun:
    dsn: str
    job_id: UUID
    store: ConversationStore


@pytest.fixture
def sound_run(fixed_db, store) -> SoundRun:  # noqa: F811
    """One completed job: 2 topics × 3 personas × 8 arcs = 48 items, each with its conversation and file."""
    with psycopg.connect(fixed_db, autocommit=True) as conn:
        result = generate_conversations(conn, TOPICS, TemplateGenerator(delay_ms=0), store, JobSettings(), label=LABEL)
    assert result.status == "completed"
    return SoundRun(fixed_db, result.job.id, store)
