"""Dagster instance configurations; `bulkgen` copies local-dagster.yaml into a DAGSTER_HOME that has none."""
