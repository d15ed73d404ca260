"""The template generator: deterministic, within the arc's turn range, and fine with sparse rows."""

import itertools
import json
import re

import pytest

import resources.generators
from pipelines.demo import DEMO_DIR
from resources.generators import ConversationRequest, TemplateGenerator, split_sentences

CATALOG = {name: json.loads((DEMO_DIR / "catalog" / f"{name}.json").read_text())
           for name in ("personas", "emotional_arcs", "training_topics", "training_topics_all")}
GUIDANCE = ("key_principles", "response_techniques", "avoid_tactics")  # how to reply, never a reply


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
    slept = []
    monkeypatch.setattr(resources.generators.time, "sleep", slept.append)
    generator = TemplateGenerator(delay_ms=configured)
    assert generator.delay_s() == expected
    generator.generate(_request({"name": "A"}, {}, {}))
    assert slept == ([expected] if expected else [])


def _catalog_conversations():
    """Every persona × arc × topic of the demo catalog (both topic files), each with its own seed."""
    topics = {t["topic_key"]: t for t in CATALOG["training_topics"] + CATALOG["training_topics_all"]}
    generator = TemplateGenerator(delay_ms=0)
    for persona, arc, topic in itertools.product(CATALOG["personas"], CATALOG["emotional_arcs"], topics.values()):
        tier = "edge_case" if arc.get("tier") == "edge_case" else "template"
        request = ConversationRequest(persona=persona, arc=arc, topic=topic, tier=tier,
                                      seed=f"{topic['topic_key']}|{persona['persona_key']}|{arc['arc_key']}")
        yield persona, arc, topic, generator.generate(request)


def test_every_catalog_conversation_reads_as_a_conversation():
    """Replies in the advisor's own words (no coaching guidance, spoken to the person), no placeholder or
    trailing fragment, and no sentence said twice in a conversation."""
    count = 0
    for persona, arc, topic, conversation in _catalog_conversations():
        where = f"{persona['persona_key']} × {arc['arc_key']} × {topic['topic_key']}"
        spoken = {p.lower() for p in arc["characteristic_phrases"]}  # a principle may also be a phrase to say
        guidance = [g.lower() for field in GUIDANCE for g in arc.get(field, []) if g.lower() not in spoken]
        guidance.append(arc["arc_strategy"].lower())
        sentences = []
        for turn in conversation.turns:
            text = turn["content"]
            assert not re.search(r"[\[\]{}]", text), (where, text)
            assert "..." not in text and "…" not in text, (where, text)
            if turn["role"] == "assistant":
                assert not [g for g in guidance if g in text.lower()], (where, text)
                assert re.search(r"\b(you|your|we|let's|I)\b", text, re.IGNORECASE), (where, text)  # spoken, not guidance
            sentences += [" ".join(s.lower().split()) for s in split_sentences(text)]
        repeated = [s for s in set(sentences) if sentences.count(s) > 1]
        assert not repeated, (where, repeated)
        count += 1
    topics = len({t["topic_key"] for t in CATALOG["training_topics"] + CATALOG["training_topics_all"]})
    assert count == len(CATALOG["personas"]) * len(CATALOG["emotional_arcs"]) * topics > 0


def test_a_placeholder_the_generator_knows_is_filled_and_others_are_left_out():
    arc = {"characteristic_phrases": ["How would [partner] feel about this approach?", "Ask [advisor name] later"],
           "typical_turn_count_min": 3, "typical_turn_count_max": 3}
    conversation = TemplateGenerator(delay_ms=0).generate(_request({"name": "Ana Ruiz"}, arc, {"name": "Taxes"}))
    text = " ".join(t["content"] for t in conversation.turns)
    assert "How would your partner feel about this approach" in text
    assert "[" not in text and "advisor name" not in text


def test_an_arc_longer_than_the_catalog_s_lines_never_repeats_a_sentence():
    arc = {"typical_turn_count_min": 12, "typical_turn_count_max": 12, "characteristic_phrases": ["I hear you"]}
    conversation = TemplateGenerator(delay_ms=0).generate(_request({"name": "Ana Ruiz"}, arc, {"name": "Taxes"}))
    assert conversation.turn_count == 12 and all(t["content"].strip() for t in conversation.turns)
    sentences = [" ".join(s.lower().split()) for t in conversation.turns for s in split_sentences(t["content"])]
    assert len(sentences) == len(set(sentences))
