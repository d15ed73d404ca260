"""Topic keys become partition keys: valid for Dagster, stable, and one per topic key, whatever the key holds."""

import subprocess
import sys

import dagster as dg
from dagster._core.definitions.partitions.utils.base import raise_error_on_invalid_partition_key_substring
from hypothesis import example, given, settings
from hypothesis import strategies as st

from assets.partitions import topic_partition_key

HOSTILE = ["it's \"quoted\"", "a; DROP TABLE batch_jobs; --", "ümlaut/α→β 🚀", "x" * 10_000, "tab\tnew\nline\x1b[31m",
           "...", "../../etc/passwd", "\u202egnp.exe", "%s %(x)s {}", "Roth IRA...conversion", ""]
keys = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=300) | st.sampled_from(HOSTILE)


def _valid(key: str) -> bool:
    """What Dagster requires of a partition key (its own validation), and what a file name part and a terminal
    line need."""
    raise_error_on_invalid_partition_key_substring([key])
    return 0 < len(key) <= 100 and key.isprintable() and "/" not in key


@given(keys)
@example("roth_ira_conversion")
def test_every_key_is_valid_and_plain_slugs_stay(topic_key):
    key = topic_partition_key(topic_key)
    assert _valid(key), key
    assert key == topic_partition_key(topic_key)  # deterministic
    if key == topic_key:
        assert topic_key.isascii() and topic_key == topic_key.lower() and _valid(topic_key)


@settings(max_examples=300)
@given(st.lists(keys, min_size=2, max_size=20, unique=True))
def test_distinct_topic_keys_never_share_a_partition(topic_keys):
    assert len({topic_partition_key(k) for k in topic_keys}) == len(topic_keys)


@given(keys)
def test_a_topic_keyed_as_another_topics_partition_key_gets_its_own(topic_key):
    """A plain key is kept as it is, so a slugged key must be one no plain key can be."""
    key = topic_partition_key(topic_key)
    if key != topic_key:
        assert topic_partition_key(key) != key


def test_the_same_key_in_another_process():
    """Partition keys are stored by Dagster: a later process must derive the very same one."""
    code = "from assets.partitions import topic_partition_key as k; print(k('Roth IRA...conversion ü'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == topic_partition_key("Roth IRA...conversion ü")


def test_dagster_accepts_the_hostile_keys():
    with dg.instance_for_test() as instance:
        partition_keys = [topic_partition_key(k) for k in HOSTILE]
        instance.add_dynamic_partitions("topics", partition_keys)  # Dagster validates each key
        assert sorted(instance.get_dynamic_partitions("topics")) == sorted(partition_keys)
