"""Declarative gating across runs: automation generates a new topic only once the fix's blocking check passed,
and verifies it in the same request; it never regenerates the topics it found."""

import dagster as dg
import pytest

from pipelines.definitions import defs
from assets.partitions import topics
from tests.generation.conftest import record_fix

ASSETS = ("topic_conversations", "generation_verification")


@pytest.mark.slow
def test_a_new_topic_waits_for_the_fixs_blocking_check(instance):
    cursor = [None]

    def tick() -> dict[str, set]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor[0])
        cursor[0] = result.cursor
        return {name: result.get_requested_partitions(dg.AssetKey(name)) for name in ASSETS}

    nothing = {name: set() for name in ASSETS}
    instance.add_dynamic_partitions(topics.name, ["ignored_401k", "esg_investing"])
    assert tick() == nothing  # topics there before the condition: the schedule's or an operator's to generate
    instance.add_dynamic_partitions(topics.name, ["crypto_taxes"])
    assert tick() == nothing  # the fix was never materialized
    record_fix(instance, passed=False)
    assert tick() == nothing  # its blocking check failed
    record_fix(instance, passed=True)
    assert tick() == {name: {"crypto_taxes"} for name in ASSETS}
    assert tick() == nothing
