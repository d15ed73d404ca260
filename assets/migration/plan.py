"""The plan: read the live state, plan from it (pure), and the SQL it runs; the entry point of the fix.

Reading lives in `live`, planning in `planning`, SQL text in `statements`, the data in `model`.
"""

from __future__ import annotations

import psycopg

from assets.audit.contract import Contract
from assets.migration.live import read_states, require_privileges
from assets.migration.model import MissingPrivileges, Plan, PlanError, Step
from assets.migration.planning import plan_from
from assets.migration.settings import DEFAULT_REMAP, MigrationSettings
from assets.migration.statements import ADVISORY_LOCK_KEY

__all__ = ["ADVISORY_LOCK_KEY", "DEFAULT_REMAP", "MigrationSettings", "MissingPrivileges", "Plan", "PlanError",
           "Step", "make_plan", "require_privileges"]


def make_plan(conn: psycopg.Connection, contract: Contract, settings: MigrationSettings | None = None) -> Plan:
    """Plan from the audit and the live catalog, inside a read-only transaction that is rolled back."""
    settings = settings or MigrationSettings()
    states, absent = read_states(conn, contract, settings)
    return plan_from(contract.schema, states, settings, absent)
