"""Dagster resources: the target database and what talks to it."""
