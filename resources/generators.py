"""Conversation generators, a Dagster resource: the offline template generator (the default) and
the interface an LLM generator (Anthropic Messages API) implements beside it.

A generator turns one request (a persona, an emotional arc and a topic, as database rows with
whatever columns the tables have) into alternating user/assistant turns. It never names the
persona: the persona written to the database and the file always comes from the input row.
A metered generator (an API that bills tokens) also reports what each conversation, and each
failure, was billed, estimates a request's usage before any call and prices usage; the batch
job's cost comes from these.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field


@dataclass(frozen=True)
class ConversationRequest:
    """What one batch item asks for: the rows it was built from and a seed stable for the item."""

    persona: Mapping[str, Any]
    arc: Mapping[str, Any]
    topic: Mapping[str, Any]
    tier: str
    seed: str


@dataclass(frozen=True)
class Usage:
    """What generating took: HTTP requests sent (retries included), replies billed, and their tokens (input
    tokens the prompt cache wrote or read are counted apart from `input_tokens`, as the API bills them)."""

    requests: int = 0
    replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.requests + other.requests, self.replies + other.replies,
                     self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.cache_creation_input_tokens + other.cache_creation_input_tokens,
                     self.cache_read_input_tokens + other.cache_read_input_tokens)


@dataclass(frozen=True)
class GeneratedConversation:
    """Turns as [{role, content}], user first; `raw` is a model's raw response, kept beside the file;
    `usage` is what a metered generator was billed for it, every attempt included (None: nothing billed)."""

    turns: list[dict[str, str]]
    total_tokens: int
    quality_score: float | None = None
    raw: str | None = None
    usage: Usage | None = None

    @property
    def turn_count(self) -> int:
        """Exchanges (a user turn and its reply), the unit of an arc's typical turn count."""
        return (len(self.turns) + 1) // 2


class ConversationGenerator(dg.ConfigurableResource):
    """Makes one conversation per request; called from several threads at once, so keep it stateless."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Recorded with each conversation (file and `conversations.parameters`)."""

    @abstractmethod
    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        """The conversation; a metered generator raises GenerationError (with its usage) when it has none."""

    @property
    def waits(self) -> bool:
        """Whether `generate` mostly waits (on a model, over the network), so that calls in threads overlap.

        One that computes instead gains nothing from a second thread under the GIL, only its contention.
        """
        return True

    def estimate_usage(self, request: ConversationRequest) -> Usage | None:
        """A guess at `request`'s usage made before any call, for a batch's estimated cost; None: not metered."""
        return None

    def cost(self, usage: Usage) -> float:
        """US dollars for `usage`; a generator that bills nothing costs nothing."""
        return 0.0


class GenerationError(RuntimeError):
    """No conversation for a request; `usage` is what the attempts were billed all the same."""

    def __init__(self, message: str, *, usage: Usage | None = None):
        super().__init__(message)
        self.usage = usage or Usage()


class TemplateGenerator(ConversationGenerator):
    """Offline and deterministic: the same persona, arc, topic and seed always give the same conversation."""

    delay_ms: int | None = Field(
        default=None,
        description="Simulated model latency per conversation (ms); unset means $GENERATOR_DELAY_MS, else 0.",
    )

    @property
    def name(self) -> str:
        return "template"

    @property
    def waits(self) -> bool:
        return self.delay_s() > 0

    def delay_s(self) -> float:
        ms = self.delay_ms if self.delay_ms is not None else int(os.environ.get("GENERATOR_DELAY_MS") or 0)
        return max(ms, 0) / 1000

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        if delay := self.delay_s():
            time.sleep(delay)
        rng = random.Random(hashlib.sha256(request.seed.encode()).digest())
        turns = _template_turns(rng, request.persona, request.arc, request.topic)
        return GeneratedConversation(turns=turns, total_tokens=sum(_tokens(t["content"]) for t in turns))


GENERATORS: dict[str, type[ConversationGenerator]] = {"template": TemplateGenerator}


def _template_turns(rng: random.Random, persona: Mapping, arc: Mapping, topic: Mapping) -> list[dict[str, str]]:
    """A user/assistant dialogue that moves from the arc's starting emotion to its ending one."""
    first_name = (str(persona.get("name") or "").split() or ["there"])[0]
    topic_name = str(topic.get("name") or topic.get("topic_key") or "this").strip()
    start = str(arc.get("starting_emotion") or "uncertainty")
    end = str(arc.get("ending_emotion") or "clarity")
    low, high = _turn_range(arc)
    exchanges = rng.randint(low, high)

    questions = _whole(_strings(topic.get("typical_question_examples")) + _strings(persona.get("typical_questions")))
    questions = [q for q in questions if "[" not in q]
    concerns = _strings(persona.get("common_concerns")) or [f"getting {topic_name.lower()} wrong"]
    idioms = _quoted(persona.get("language_patterns"), persona.get("communication_style"))
    phrases = _whole(_strings(arc.get("characteristic_phrases"))) or ["Thank you for sharing that"]
    principles = _strings(arc.get("key_principles"))
    description = str(topic.get("description") or "").strip()
    for pool in (questions, concerns, phrases, principles):
        rng.shuffle(pool)

    turns = []
    for i in range(exchanges):
        concern = _lower(concerns[i % len(concerns)])
        phrase = phrases[i % len(phrases)]
        if i == 0:
            question = questions[0] if questions else f"Where do I even start with {topic_name.lower()}?"
            idiom = f"{rng.choice(idioms)} " if idioms else ""
            user = (f"{idiom}I'm dealing with a lot of {start} around {topic_name.lower()}. "
                    f"{_ask(question)} Honestly, I keep worrying about {concern}.")
            context = f" {_sentence(description)}" if description else ""
            assistant = (f"{_address(phrase, first_name)} Coming to this with {start} is completely "
                         f"understandable.{context} "
                         "Let's take it one piece at a time, starting with what matters most to you.")
        elif i < exchanges - 1:
            follow_up = questions[i % len(questions)] if questions else "What should I look at next?"
            user = f"{rng.choice(_FOLLOW_UPS)} {_ask(follow_up)} And what about {concern}?"
            principle = f" {_sentence(principles[i % len(principles)])}" if principles else ""
            assistant = (f"{_sentence(phrase)}{principle} On {concern}: write down the numbers you have today, "
                         "then we can compare two concrete options side by side.")
        else:
            user = (f"{rng.choice(_CLOSINGS)} So my next step is to pick one option and act on it this week?")
            assistant = (f"Exactly, {first_name}. {_sentence(phrase)} From {start} to {end}: you worked through "
                         f"{topic_name.lower()} one decision at a time, and that is how to keep going.")
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return turns


_FOLLOW_UPS = ("Okay, that helps a little.", "That makes sense, I think.", "Right, I hadn't looked at it that way.",
               "Okay.", "I appreciate that.")
_CLOSINGS = ("I think I see it now.", "That really helps.", "Okay, this feels much more manageable.",
             "Thank you, this is the first time it has felt clear.")


def _turn_range(arc: Mapping) -> tuple[int, int]:
    low = _positive_int(arc.get("typical_turn_count_min"), 3)
    high = _positive_int(arc.get("typical_turn_count_max"), max(low, 5))
    return min(low, high), max(low, high)


def _positive_int(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def _strings(value: Any) -> list[str]:
    """A JSON list column as non-empty strings (a text column counts as one item)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if str(v).strip()]


_QUOTE = re.compile(r"\"([^\"]{3,80})\"")


def _quoted(*values: Any) -> list[str]:
    """Whole phrases a persona is described as saying: the quoted parts of its language patterns and style."""
    text = " ".join(s for v in values for s in _strings(v))
    return [_sentence(q) for q in _whole(_QUOTE.findall(text)) if len(q.split()) >= 3]


def _whole(texts: list[str]) -> list[str]:
    """Drop fragments that trail off ("but I can...") and would not stand as a sentence."""
    return [t for t in texts if not t.rstrip().endswith(("...", "…"))]


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _ask(question: str) -> str:
    """A question as the user asks it; a bare subject ("RSU timing strategies") becomes one."""
    question = question.strip()
    return _sentence(question) if question.endswith("?") else f"I'm also wondering about {_lower(question)}."


def _address(phrase: str, name: str) -> str:
    """The phrase spoken to the person by name, keeping its own punctuation."""
    phrase = phrase.strip()
    body, mark = (phrase[:-1], phrase[-1]) if phrase.endswith((".", "?", "!")) else (phrase, ".")
    return f"{body}, {name}{mark}"


def _lower(text: str) -> str:
    text = text.strip().rstrip(".?!")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _tokens(text: str) -> int:
    """The usual estimate of about four characters per token, for generators without a tokenizer."""
    return max(1, round(len(text) / 4))


# The LLM generator builds on the classes above and adds itself to GENERATORS as "anthropic".
import resources.anthropic_generator  # noqa: E402,F401
