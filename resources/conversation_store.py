"""The conversation store: one JSON object per conversation, in a local folder or an S3-compatible bucket.

Where is one string, the resource's `root` or else $CONVERSATION_STORE: `s3://bucket[/prefix]` is a bucket
(Supabase Storage, AWS S3, MinIO, R2; see `resources/s3_bucket.py`), anything else a folder, and unset
means `.conversations/` in the project. Callers name objects by a relative key (`conversations.file_path`),
so the store can move and the same key works in either place.

An object is written before the transaction that inserts its row: the commit publishes it, so no
reader that finds objects through rows sees one half written. A killed writer leaves an object no
row points at; its item's retry rewrites it, and `prune` removes whatever no row points at.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path
from typing import Protocol

import dagster as dg
import orjson
from pydantic import Field

from resources.embedded import STATE_DIR

DEFAULT_ROOT = STATE_DIR / ".conversations"
RAW_SUFFIX = ".raw"  # a model's raw response, beside its conversation
S3_SCHEME = "s3://"


class ObjectStore(Protocol):
    """Bytes by relative key: what a conversation store needs of the place it keeps them."""

    bucket: str  # what `conversations.storage_bucket` names: the bucket, or the folder's name
    remote: bool  # each operation waits on the network

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...  # FileNotFoundError when absent
    def exists(self, key: str) -> bool: ...
    def keys_under(self, folder: str) -> list[str]: ...  # every key under `folder/`
    def delete(self, keys: list[str]) -> None: ...  # absent keys are no error


class ConversationStore(dg.ConfigurableResource):
    """Conversations under `root`: a folder, or `s3://bucket[/prefix]` (unset: $CONVERSATION_STORE, else
    `.conversations/` in the working folder). S3 credentials and endpoint come from the standard AWS variables, never from here."""

    root: str | None = Field(
        default=None,
        description="A folder, or s3://bucket[/prefix]; unset means $CONVERSATION_STORE, else .conversations/.",
    )

    def location(self) -> str:
        return self.root or os.environ.get("CONVERSATION_STORE") or str(DEFAULT_ROOT)

    def objects(self) -> ObjectStore:
        return open_store(self.location())

    @property
    def bucket(self) -> str:
        return self.objects().bucket

    @property
    def remote(self) -> bool:
        return self.objects().remote

    def write(self, key: str, document: dict, raw: str | None = None) -> int:
        """Store `document` as UTF-8 JSON (and `raw` beside it) under `key`; returns its size in bytes."""
        data = orjson.dumps(document)
        objects = self.objects()
        if raw is not None:
            objects.put(_checked(key) + RAW_SUFFIX, raw.encode())
        objects.put(_checked(key), data)
        return len(data)

    def read_bytes(self, key: str) -> bytes:
        """The stored object; FileNotFoundError when there is none."""
        return self.objects().get(_checked(key))

    def read(self, key: str) -> dict:
        return orjson.loads(self.read_bytes(key))

    def exists(self, key: str) -> bool:
        return self.objects().exists(_checked(key))

    def keys_under(self, folder: str) -> list[str]:
        """Every key under `folder`, sorted."""
        return sorted(self.objects().keys_under(_checked(folder)))

    def delete(self, keys: list[str]) -> None:
        """Remove the objects (absent ones are no error)."""
        if keys:
            self.objects().delete([_checked(k) for k in keys])

    def prune(self, folder: str, keep: set[str]) -> int:
        """Remove every object under `folder` that is not in `keep` or beside one; returns how many."""
        kept = set(keep) | {k + RAW_SUFFIX for k in keep}
        orphans = [k for k in self.objects().keys_under(_checked(folder)) if k not in kept]
        self.delete(orphans)
        return len(orphans)

    def root_path(self) -> Path:
        """The folder of a local store (tests and tools that look at the files themselves)."""
        return _local(self.objects()).root

    def path(self, key: str) -> Path:
        """Where a local store keeps `key`."""
        return Path(_local(self.objects()).location(_checked(key)))


def open_store(location: str) -> ObjectStore:
    """The store a location string names: `s3://bucket[/prefix]`, else a folder."""
    if location.startswith(S3_SCHEME):
        from resources.s3_bucket import S3Bucket

        return S3Bucket.at(location)
    return _folder(location)


@cache
def _folder(location: str) -> LocalFolder:
    return LocalFolder(Path(location).resolve())


def _checked(key: str) -> str:
    """`key` if it stays inside the store: relative, no `..`, no backslash."""
    if not key.strip("./") or key.startswith("/") or "\\" in key or ".." in key.split("/"):
        raise ValueError(f"{key!r} is not a path inside the conversation store")
    return key


def _local(objects: ObjectStore) -> LocalFolder:
    if not isinstance(objects, LocalFolder):
        raise TypeError(f"the conversation store is the bucket {objects.bucket}, not a folder")
    return objects


class LocalFolder:
    """Objects as files under `root`; a key is a path relative to it."""

    remote = False

    def __init__(self, root: Path):
        self.root = root
        self.bucket = root.name
        self._root = str(root)

    def location(self, key: str) -> str:
        """The file's path as text, normalized: what files are written at, without pathlib's cost per file."""
        return os.path.normpath(f"{self._root}/{key}")

    def put(self, key: str, data: bytes) -> None:
        # os.open/os.write rather than a buffered file object: three system calls instead of five (no fstat,
        # no isatty ioctl), and each one is a moment the writing thread gives up and takes back the GIL.
        path = self.location(key)
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

    def get(self, key: str) -> bytes:
        with open(self.location(key), "rb") as file:
            return file.read()

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.location(key))

    def keys_under(self, folder: str) -> list[str]:
        top = self.location(folder)
        return [os.path.relpath(os.path.join(directory, name), self._root)
                for directory, _, files in os.walk(top) for name in files]

    def delete(self, keys: list[str]) -> None:
        """Remove the files, then each folder they leave empty (up to the root)."""
        folders = set()
        for key in keys:
            path = self.location(key)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            folders.add(os.path.dirname(path))
        for folder in sorted(folders, key=len, reverse=True):
            while folder != self._root and folder.startswith(self._root):
                try:
                    os.rmdir(folder)
                except OSError:  # not empty (or already gone): nothing above it is empty either
                    break
                folder = os.path.dirname(folder)
