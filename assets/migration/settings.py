"""The migration's settings, declared once: the Dagster config and the CLI are built from these fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_REMAP = {"pending": "queued", "running": "processing"}


def _setting(default, description: str, **kwargs):
    return field(default=default, metadata={"description": description}, **kwargs)


@dataclass(frozen=True)
class MigrationSettings:
    remap: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REMAP),
                                     metadata={"description": "Legacy value -> the code value its rows become."})
    large_table_rows: int = _setting(50_000, "Tables with at least this many rows take expand/contract.")
    batch_size: int = _setting(5_000, "Rows remapped per committed transaction on the expand/contract path.")
    lock_timeout_ms: int = _setting(1_000, "The longest a reader queues behind a waiting migration.")
    statement_timeout_ms: int = _setting(10_000, "Bounds how long any lock is held.")
    validate_timeout_ms: int = _setting(600_000, "VALIDATE scans the table without blocking reads or writes.")
    retry_window_s: float = _setting(60.0, "How long lock timeouts are retried with backoff.")
    allow_shared_domain: bool = _setting(
        False, "Replace the constraint of a domain that columns outside the contract also use (it changes for them).")

    def __post_init__(self):
        for name in ("large_table_rows", "batch_size", "lock_timeout_ms", "statement_timeout_ms",
                     "validate_timeout_ms", "retry_window_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"migration setting {name} must be positive, got {getattr(self, name)}")
