"""The conversation store: one JSON file per conversation under a root folder.

`conversations.file_path` is relative to the root, so the store can move. Files are written
atomically (a temporary name, then a rename), so a reader never sees half a file and a killed
writer leaves at most a temporary file, which `prune` removes with any file no row points at.
"""

from __future__ import annotations

import json
import os
import threading
from functools import cache
from pathlib import Path, PurePosixPath

import dagster as dg
from pydantic import Field

from resources.embedded import PROJECT_ROOT

DEFAULT_ROOT = PROJECT_ROOT / ".conversations"
RAW_SUFFIX = ".raw"  # a model's raw response, beside its conversation file


class ConversationStore(dg.ConfigurableResource):
    """Conversation files under `root` (unset: $CONVERSATION_STORE, else `.conversations/` in the project)."""

    root: str | None = Field(
        default=None,
        description="Folder of the conversation files; unset means $CONVERSATION_STORE, else .conversations/.",
    )

    def root_path(self) -> Path:
        return _resolved(self.root or os.environ.get("CONVERSATION_STORE") or str(DEFAULT_ROOT))

    def path(self, relative: str) -> Path:
        """The absolute path of a stored file; refuses paths that would leave the root."""
        parts = PurePosixPath(relative).parts
        if not parts or relative.startswith("/") or ".." in parts or "\\" in relative:
            raise ValueError(f"{relative!r} is not a path inside the conversation store")
        return self.root_path().joinpath(*parts)

    def write(self, relative: str, document: dict, raw: str | None = None) -> int:
        """Store `document` (and `raw` beside it) under `relative`, atomically; returns the file's size in bytes."""
        data = json.dumps(document, ensure_ascii=False).encode()
        path = self.path(relative)
        files = [(path.with_name(path.name + RAW_SUFFIX), raw.encode())] if raw is not None else []
        for target, content in [*files, (path, data)]:
            try:
                _replace(target, content)
            except FileNotFoundError:  # the first file of its folder
                target.parent.mkdir(parents=True, exist_ok=True)
                _replace(target, content)
        return len(data)

    def read(self, relative: str) -> dict:
        return json.loads(self.path(relative).read_bytes())

    def prune(self, folder: str, keep: set[str]) -> int:
        """Remove every file under `folder` that is not in `keep` (relative paths) or beside one; returns how many."""
        directory = self.path(folder)
        if not directory.is_dir():
            return 0
        root = self.root_path()
        kept = {str(self.path(k)) for k in keep}
        kept |= {k + RAW_SUFFIX for k in kept}
        removed = 0
        with os.scandir(directory) as entries:  # file types from the directory itself: no stat per file
            for entry in entries:
                if entry.is_file() and entry.path not in kept:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        if not any(directory.iterdir()) and directory != root:
            directory.rmdir()
        return removed


@cache
def _resolved(root: str) -> Path:
    return Path(root).resolve()


def _replace(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # os.open/os.write rather than a buffered file object: three system calls instead of five (no fstat,
    # no isatty ioctl), and each one is a moment the writing thread gives up and takes back the GIL.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(temporary, path)
