"""Dagster resources: the target database and what talks to it."""

from resources.database import DatabaseUnavailable, TargetDatabase, target_database

__all__ = ["DatabaseUnavailable", "TargetDatabase", "target_database"]
