"""The conversation store: one JSON file per conversation under a root folder.

`conversations.file_path` is relative to the root, so the store can move. A file is written in
place, before the transaction that inserts its row: the commit publishes it, so no reader that
finds files through rows sees one half written. A killed writer leaves a file no row points at;
its item's retry rewrites it, and `prune` removes whatever no row points at. (A temporary name and
a rename would guard nothing more, and cost two more system calls and a directory update per file.)
"""

from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path

import dagster as dg
import orjson
from pydantic import Field

from resources.embedded import STATE_DIR

DEFAULT_ROOT = STATE_DIR / ".conversations"
RAW_SUFFIX = ".raw"  # a model's raw response, beside its conversation file


class ConversationStore(dg.ConfigurableResource):
    """Conversation files under `root` (unset: $CONVERSATION_STORE, else `.conversations/` in the working folder)."""

    root: str | None = Field(
        default=None,
        description="Folder of the conversation files; unset means $CONVERSATION_STORE, else .conversations/.",
    )

    def root_path(self) -> Path:
        return _resolved(self.root or os.environ.get("CONVERSATION_STORE") or str(DEFAULT_ROOT))

    @property
    def bucket(self) -> str:
        """What the rows' `storage_bucket` names: the folder's own name."""
        return self.root_path().name

    def path(self, relative: str) -> Path:
        """The absolute path of a stored file; refuses paths that would leave the root."""
        return Path(self._location(relative))

    def write(self, relative: str, document: dict, raw: str | None = None) -> int:
        """Store `document` as UTF-8 JSON (and `raw` beside it) under `relative`; returns the file's size in bytes."""
        data = orjson.dumps(document)
        location = self._location(relative)
        if raw is not None:
            _write(location + RAW_SUFFIX, raw.encode())
        _write(location, data)
        return len(data)

    def read(self, relative: str) -> dict:
        return orjson.loads(self.path(relative).read_bytes())

    def prune(self, folder: str, keep: set[str]) -> int:
        """Remove every file under `folder` that is not in `keep` (relative paths) or beside one; returns how many."""
        directory = self._location(folder)
        if not os.path.isdir(directory):
            return 0
        kept = {self._location(k) for k in keep}
        kept |= {k + RAW_SUFFIX for k in kept}
        removed = 0
        with os.scandir(directory) as entries:  # file types from the directory itself: no stat per file
            for entry in entries:
                if entry.is_file() and entry.path not in kept:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    removed += 1
        if not os.listdir(directory):
            os.rmdir(directory)
        return removed

    def _location(self, relative: str) -> str:
        """`path` as text, normalized: what files are written at and compared by, without pathlib's cost per file."""
        root = str(self.root_path())
        location = os.path.normpath(f"{root}/{relative}")
        if relative.startswith("/") or "\\" in relative or ".." in relative.split("/") or location == root:
            raise ValueError(f"{relative!r} is not a path inside the conversation store")
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
