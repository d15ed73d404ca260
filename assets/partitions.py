"""The `topics` partitions: one dynamic partition per active training topic.

A partition key is the topic's `topic_key` when that is already a plain slug, else a slug of
it, `~` and a hash of it: valid (no `...`, no control characters, no `/`) and unique, since no
plain slug has a `~`.

Dagster orders dynamic partitions by insertion and a run covers one contiguous range of them.
The order carries no meaning here, so `selection_range` re-appends a selection's keys when
they are not adjacent: any selection of topics becomes one range, hence one run.
"""

from __future__ import annotations

import hashlib
import re

import dagster as dg
import psycopg

topics = dg.DynamicPartitionsDefinition(name="topics")

_PLAIN = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


class TopicSelectionError(ValueError):
    """The requested topics are not active training topics (the message names them)."""


def topic_partition_key(topic_key: str) -> str:
    """The partition key of a topic: the key itself when it is a plain slug, else slug~hash."""
    if _PLAIN.fullmatch(topic_key):
        return topic_key
    slug = re.sub(r"[^a-z0-9]+", "_", topic_key.lower()).strip("_")[:80] or "topic"
    return f"{slug}~{hashlib.sha256(topic_key.encode()).hexdigest()[:12]}"


# The contract calls training_topics.created_at optional: topics are ordered by it only where the table has it.
_HAS_CREATED_AT = """
SELECT EXISTS (SELECT FROM pg_attribute
                WHERE attrelid = to_regclass('training_topics') AND attname = 'created_at' AND NOT attisdropped)
"""


def active_topics(conn: psycopg.Connection) -> dict[str, str]:
    """Partition key -> topic_key of every active training topic, oldest first (where the table says)."""
    (dated,) = conn.execute(_HAS_CREATED_AT).fetchone()
    order = "created_at, topic_key" if dated else "topic_key"
    rows = conn.execute(f"SELECT topic_key FROM training_topics WHERE is_active ORDER BY {order}").fetchall()
    return {topic_partition_key(key): key for (key,) in rows}


def select_topics(conn: psycopg.Connection, requested: list[str] | None) -> dict[str, str]:
    """Partition key -> topic_key for the requested topic keys (or partition keys); None means all active."""
    active = active_topics(conn)
    if requested is None:
        return active
    by_topic = {topic: key for key, topic in active.items()}
    unknown = [r for r in requested if r not in by_topic and r not in active]
    if unknown:
        shown = (u if len(u) <= 60 else f"{u[:57]}... ({len(u)} characters)" for u in unknown)
        raise TopicSelectionError(f"unknown or inactive topic(s): {', '.join(shown)}")
    keys = dict.fromkeys(by_topic.get(r, r) for r in requested)
    return {key: active[key] for key in keys}


def add_topic_partitions(instance: dg.DagsterInstance, conn: psycopg.Connection) -> list[str]:
    """Add a partition for each active topic that has none yet; returns the keys added."""
    existing = set(instance.get_dynamic_partitions(topics.name))
    added = [key for key in active_topics(conn) if key not in existing]
    if added:
        instance.add_dynamic_partitions(topics.name, added)
    return added


def contiguous_range(instance: dg.DagsterInstance, keys: list[str]) -> dg.PartitionKeyRange | None:
    """The partition range that covers exactly `keys` (existing partitions) if they are adjacent, else None."""
    order = instance.get_dynamic_partitions(topics.name)
    missing = [k for k in keys if k not in order]
    if missing:
        raise TopicSelectionError(f"no partition for topic(s): {', '.join(missing)}")
    positions = sorted(order.index(k) for k in keys)
    if positions[-1] - positions[0] + 1 != len(keys):
        return None
    return dg.PartitionKeyRange(order[positions[0]], order[positions[-1]])


def selection_range(instance: dg.DagsterInstance, keys: list[str]) -> dg.PartitionKeyRange:
    """The partition range that covers exactly `keys` (existing partitions), re-appending them if needed."""
    key_range = contiguous_range(instance, keys)
    if key_range is None:
        for key in keys:
            instance.delete_dynamic_partition(topics.name, key)
        instance.add_dynamic_partitions(topics.name, keys)
        key_range = contiguous_range(instance, keys)
    return key_range
