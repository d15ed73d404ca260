"""Dagster assets, one package per asset family; each keeps its plain logic beside its asset."""
