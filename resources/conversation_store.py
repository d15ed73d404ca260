"""The conversation store: one object per conversation under a root folder, at the key the app reads.

Keys are relative (`<owner>/<conversation_id>/conversation.json`, the row's `file_path`), so the
store can move; the folder's name is the bucket the rows name (`storage_bucket`). The interface is
an object store's: bytes put and got by key, keys deleted, so an S3 store fits beside it.

A file is written in place, before the transaction that inserts its row: the commit publishes it,
so no reader that finds files through rows sees one half written. A killed writer leaves a file no
row points at; its item's retry rewrites it, and the run's closing prune deletes the keys of the
job's items that point at no conversation. (A temporary name and a rename would guard nothing
more, and cost two more system calls and a directory update per file.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import dagster as dg
from pydantic import Field

from resources.embedded import PROJECT_ROOT

DEFAULT_ROOT = PROJECT_ROOT / ".cache" / "conversation-files"
RAW_SUFFIX = ".raw"  # a model's raw response, beside its conversation file


class ConversationStore(dg.ConfigurableResource):
    """Conversation files under `root` (unset: $CONVERSATION_STORE, else `.conversations/` in the project)."""

    root: str | None = Field(
        default=None,
        description="Folder of the conversation files; unset means $CONVERSATION_STORE, else .cache/conversation-files/.",
    )

    def root_path(self) -> Path:
        return _resolved(self.root or os.environ.get("CONVERSATION_STORE") or str(DEFAULT_ROOT))

    @property
    def bucket(self) -> str:
        """What the rows' `storage_bucket` names: the folder's own name."""
        return self.root_path().name

    def path(self, key: str) -> Path:
        """The absolute path of a stored file; refuses keys that would leave the root."""
        return Path(self._location(key))

    def write(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there."""
        _write(self._location(key), data)

    def read(self, key: str) -> bytes:
        """The bytes stored under `key`; FileNotFoundError when there are none."""
        return self.path(key).read_bytes()

    def delete(self, keys: Iterable[str]) -> int:
        """Remove the files stored under `keys` (absent ones are skipped) and the folders left empty; returns how many."""
        removed = 0
        for key in keys:
            location = self._location(key)
            try:
                os.unlink(location)
            except FileNotFoundError:
                continue
            removed += 1
            folder, root = os.path.dirname(location), str(self.root_path())
            while folder != root:
                with contextlib.suppress(OSError):  # not empty: another file lives there
                    os.rmdir(folder)
                    folder = os.path.dirname(folder)
                    continue
                break
        return removed

    def _location(self, key: str) -> str:
        """`path` as text, normalized: what files are written at, without pathlib's cost per file."""
        root = str(self.root_path())
        location = os.path.normpath(f"{root}/{key}")
        if key.startswith("/") or "\\" in key or ".." in key.split("/") or location == root:
            raise ValueError(f"{key!r} is not a path inside the conversation store")
        return location


@cache
def _resolved(root: str) -> Path:
    return Path(root).resolve()


def _write(path: str, data: bytes) -> None:
    # os.open/os.write rather than a buffered file object: three system calls instead of five (no fstat,
    # no isatty ioctl), and each one is a moment the writing thread gives up and takes back the GIL.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:  # the first file of its folder
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
