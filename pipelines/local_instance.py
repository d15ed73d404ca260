"""The local Dagster instance every `bulkgen` command records its runs in, shared safely by concurrent processes.

DAGSTER_HOME is `.dagster_home` in the working folder (the project, under `make`) unless set, the folder `make dev` serves, so every
run of the CLI is in the UI. Processes sharing it coordinate through two lock files in it
(POSIX record locks, which the kernel releases when a process dies, however it dies):

- `instance.lock`, held exclusively for a moment: creating the instance's storage and adding
  partitions, which are read-then-write in Dagster and go wrong when two processes interleave;
- `ranges.lock`, held shared by a run from choosing its partition range until it ends: Dagster
  resolves a range's keys from the partitions' order when the step runs, so the order must not
  change under it. Re-ordering (to make a selection one contiguous range) takes it exclusively,
  so it waits for the runs in flight and none starts meanwhile; then it is turned back into a
  shared hold, atomically, for the run that re-ordered.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from resources.embedded import STATE_DIR

LOCAL_INSTANCE_CONFIG = files("deploy") / "local-dagster.yaml"


def dagster_home() -> Path:
    """DAGSTER_HOME (default: .dagster_home in the working folder, SQLite storage), created with the local config."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(STATE_DIR / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        with instance_changes(home):
            if not config.exists() or not config.read_text().strip():
                shutil.copy(LOCAL_INSTANCE_CONFIG, config)
    return home


@contextmanager
def instance_changes(home: Path) -> Iterator[None]:
    """Exclusive, for a short change to the instance that other processes must not interleave with."""
    with open(home / "instance.lock", "a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


class RangeHold:
    """A run's hold on the partitions' order: shared while it runs, exclusive while it re-orders them."""

    def __init__(self, home: Path):
        self._file = open(home / "ranges.lock", "a+")  # noqa: SIM115 - held for the run, closed by release()
        fcntl.lockf(self._file, fcntl.LOCK_SH)

    @contextmanager
    def reordering(self) -> Iterator[None]:
        """Exclusive for the block (once every other run has let go), then shared again without a gap."""
        fcntl.lockf(self._file, fcntl.LOCK_UN)  # two shared holders asking to upgrade would deadlock
        fcntl.lockf(self._file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._file, fcntl.LOCK_SH)  # a downgrade: granted at once

    def release(self) -> None:
        self._file.close()


@contextmanager
def run_hold(home: Path) -> Iterator[RangeHold]:
    hold = RangeHold(home)
    try:
        yield hold
    finally:
        hold.release()
