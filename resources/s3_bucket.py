"""Conversation objects in an S3-compatible bucket (Supabase Storage, AWS S3, MinIO, R2) through boto3.

The location is `s3://bucket[/prefix]`. The endpoint, region and credentials come from the standard AWS
variables (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), which botocore
reads itself: no credential passes through this code, so none can reach a log, metadata or an exception.
Transient errors (5xx, throttling, dropped connections) are retried by botocore's standard retry mode with
its jittered backoff, MAX_ATTEMPTS attempts in all; what still fails fails its item.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

MAX_ATTEMPTS = 4  # the first and 3 retries, within about 7 s of jittered backoff
POOL_CONNECTIONS = 10  # the generation worker pool's upper bound (concurrent_processing ≤ 10)
DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
_MISSING = {"404", "NoSuchKey", "NotFound"}
# Everything botocore reads from the environment that decides which server, as whom: a change makes a new client.
_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class S3Bucket:
    """Objects under `prefix` in `bucket`; a key is the object's name relative to the prefix."""

    remote = True

    def __init__(self, bucket: str, prefix: str, client):
        self.bucket, self.prefix, self._client = bucket, prefix, client

    @classmethod
    def at(cls, location: str) -> S3Bucket:
        """The bucket `s3://bucket[/prefix]` names, with a client set up from the AWS variables."""
        parts = urlsplit(location)
        if "@" in location:  # never echoed: what precedes the @ would be a credential
            raise ValueError("CONVERSATION_STORE: an s3:// location holds no credentials; "
                             "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"CONVERSATION_STORE: expected s3://bucket[/prefix], got {location!r}")
        return cls(parts.netloc, parts.path.strip("/"), _client(tuple(os.environ.get(n) for n in _ENVIRONMENT)))

    def put(self, key: str, data: bytes) -> None:
        content_type = "application/json" if key.endswith(".json") else "application/octet-stream"
        self._client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise FileNotFoundError(f"no object {key} in bucket {self.bucket}") from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        return True

    def keys_under(self, folder: str) -> list[str]:
        start = len(self._name(""))
        return [name[start:] for name in self._names(self._name(folder) + "/")]

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": self._name(k)} for k in keys[i:i + DELETE_BATCH]]
            try:
                errors = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])
            except ClientError as exc:
                if _code(exc) != "NoSuchBucket":
                    raise
                return  # no bucket, no object: absent keys are no error
            if errors:
                first = errors[0]
                raise OSError(f"bucket {self.bucket} kept {len(errors)} object(s) it was asked to delete, "
                              f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}")

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _names(self, prefix: str) -> Iterator[str]:
        """Every object name under `prefix`; none in a bucket that does not exist (as in a missing folder)."""
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    yield entry["Key"]
        except ClientError as exc:
            if _code(exc) != "NoSuchBucket":
                raise


@cache
def _client(environment: tuple):
    """One client per environment (boto3 clients are thread-safe; making one costs tens of milliseconds)."""
    custom_endpoint = bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"))
    config = Config(
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        max_pool_connections=POOL_CONNECTIONS,
        # S3-compatible servers (Supabase Storage, MinIO) serve buckets by path, not by host name.
        s3={"addressing_style": "path" if custom_endpoint else "auto"},
        # Checksums only where the API requires them: several S3-compatible servers reject the ones
        # boto3 adds to every upload by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
