"""Fixtures for the migration: the legacy database, with rows of every status and unrelated constraints."""

from __future__ import annotations

import psycopg
import pytest

from tests.migration.support import LEGACY_STATUSES, UNRELATED_DDL, add_jobs


@pytest.fixture
def busy_db(legacy_db) -> str:
    """The legacy database with rows of every status and constraints the fix must not touch."""
    with psycopg.connect(legacy_db) as conn:
        conn.execute(UNRELATED_DDL)
        add_jobs(conn, dict(zip(LEGACY_STATUSES, (5, 4, 3, 2, 2, 1))))
        conn.execute("UPDATE batch_jobs SET review_status = 'pending' WHERE status IN ('pending', 'paused')")
    return legacy_db
