"""Bulk conversation generation: one batch job per run over persona × arc × topic, gated on the fix."""
