"""The template generator: deterministic, within the arc's turn range, and fine with sparse rows."""

import json
import time

import pytest

from pipelines.demo import DEMO_DIR
from resources.generators import ConversationRequest, TemplateGenerator

CATALOG = {name: json.loads((DEMO_DIR / "catalog" / f"{name}.json").read_text())
           for name in ("personas", "emotional_arcs", "training_topics")}


def _request(persona, arc, topic, seed="seed") -> ConversationRequest:
    return ConversationRequest(persona=persona, arc=arc, topic=topic, tier="template", seed=seed)


def test_every_demo_combination_alternates_within_the_arc_range_and_is_deterministic():
    generator = TemplateGenerator(delay_ms=0)
    for persona in CATALOG["personas"]:
        for arc in CATALOG["emotional_arcs"]:
            topic = CATALOG["training_topics"][0]
            conversation = generator.generate(_request(persona, arc, topic))
            roles = [t["role"] for t in conversation.turns]
            assert roles == ["user", "assistant"] * (len(roles) // 2)
            assert arc["typical_turn_count_min"] <= conversation.turn_count <= arc["typical_turn_count_max"]
            assert all(t["content"].strip() for t in conversation.turns)
            assert conversation.total_tokens > 0
            assert generator.generate(_request(persona, arc, topic)) == conversation
            # The persona is addressed by the input's name; the text draws on the arc and the topic.
            text = " ".join(t["content"] for t in conversation.turns)
            assert persona["name"].split()[0] in text
            assert arc["starting_emotion"] in text and topic["name"].lower() in text


def test_seeds_vary_the_conversation():
    persona, arc, topic = CATALOG["personas"][0], CATALOG["emotional_arcs"][3], CATALOG["training_topics"][5]
    generator = TemplateGenerator(delay_ms=0)
    variants = {json.dumps(generator.generate(_request(persona, arc, topic, seed=str(i))).turns) for i in range(5)}
    assert len(variants) > 1


def test_rows_with_only_some_columns_still_make_a_conversation():
    conversation = TemplateGenerator(delay_ms=0).generate(_request({"name": "Ana Ruiz"}, {}, {"topic_key": "taxes"}))
    assert conversation.turns[0]["role"] == "user" and len(conversation.turns) >= 2
    assert "Ana" in conversation.turns[1]["content"]


@pytest.mark.parametrize("configured, env, expected", [(None, "40", 0.04), (10, "40", 0.01), (None, None, 0.0)])
def test_delay_from_setting_or_environment(monkeypatch, configured, env, expected):
    if env is None:
        monkeypatch.delenv("GENERATOR_DELAY_MS", raising=False)
    else:
        monkeypatch.setenv("GENERATOR_DELAY_MS", env)
    generator = TemplateGenerator(delay_ms=configured)
    assert generator.delay_s() == expected
    started = time.monotonic()
    generator.generate(_request({"name": "A"}, {}, {}))
    assert time.monotonic() - started >= expected
