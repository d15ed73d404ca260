"""The generation fixtures (a fixed database, a conversation store, a Dagster instance) for the pipeline tests."""

from tests.generation.conftest import fixed_db, fixed_template, instance, store  # noqa: F401 (fixtures)
