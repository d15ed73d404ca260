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
    """Turns as [{role, content}], user first (a user turn may name the persona's `emotion`, an assistant
    turn the coach's `strategy`); `raw` is a model's raw response, kept beside the file;
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
        turns = _template_turns(rng, request.persona, request.arc, request.topic, request.tier)
        return GeneratedConversation(turns=turns, total_tokens=sum(_tokens(t["content"]) for t in turns))




def _template_turns(rng: random.Random, persona: Mapping, arc: Mapping, topic: Mapping,
                    tier: str) -> list[dict[str, str]]:
    """A user/assistant dialogue that moves from the arc's starting emotion to its ending one.

    The advisor speaks only in words meant to be said: the arc's characteristic phrases and this
    generator's own lines, never the arc's principles (guidance for whoever replies, not a reply).
    Every pool is drawn from without replacement and no sentence is said twice: a line that would
    repeat is left out rather than said again.
    """
    first_name = (str(persona.get("name") or "").split() or ["there"])[0]
    topic_name = str(topic.get("name") or topic.get("topic_key") or "this").strip().lower()
    start = str(arc.get("starting_emotion") or "uncertainty")
    end = str(arc.get("ending_emotion") or "clarity")
    low, high = _turn_range(arc)
    exchanges = rng.randint(low, high)

    questions = _spoken(_strings(topic.get("typical_question_examples")) + _strings(persona.get("typical_questions")))
    concerns = _spoken(_strings(persona.get("common_concerns")))
    idioms = _quoted(persona.get("language_patterns"), persona.get("communication_style"))
    phrases = _spoken(_strings(arc.get("characteristic_phrases")))
    steps = list(_EDGE_STEPS if tier == "edge_case" else _STEPS)
    follow_ups, replies = list(_FOLLOW_UPS), list(_CONCERN_REPLIES)
    for pool in (questions, concerns, idioms, phrases, steps, follow_ups, replies):
        rng.shuffle(pool)
    follow_ups += idioms  # drawn from the end: the persona's own words first
    description = str(topic.get("description") or "").strip()
    said = _Said()

    def say(*parts: str | None) -> str:
        text = " ".join(said.fresh(part) for part in parts if part)
        return " ".join(text.split())

    turns = []
    for i in range(exchanges):
        concern = _lower(concerns.pop()) if concerns else None
        if i == 0:
            question = questions.pop() if questions else f"Where do I even start with {topic_name}?"
            user = say(f"I'm dealing with a lot of {start} around {topic_name}.", _ask(question),
                       f"Honestly, I keep worrying about {concern}." if concern else None)
            phrase = phrases.pop() if phrases else "Thank you for telling me this"
            assistant = say(_address(phrase, first_name), f"Coming to this with {start} is completely understandable.",
                            f"Here is what we can cover together: {_lower(description)}." if description else None,
                            steps.pop() if steps else None)
        elif i < exchanges - 1:
            question = questions.pop() if questions else None
            user = say(follow_ups.pop() if follow_ups else None, _ask(question) if question else None,
                       f"And what about {concern}?" if concern else None) or say(f"What would step {i + 1} be?")
            assistant = say(_sentence(phrases.pop()) if phrases else None,
                            _sentence(replies.pop().format(concern)) if concern and replies else None,
                            steps.pop() if steps else None) or say(f"Step {i + 1} is to keep going at a pace "
                                                                   "that works for you.")  # the pools ran dry
        else:
            user = say(rng.choice(_CLOSINGS), "So what is my next step from here?")
            assistant = say(_sentence(phrases.pop()) if phrases else None,
                            f"You came in with {start} about {topic_name}, {first_name}, and you are leaving with "
                            "one clear next step.", steps.pop() if steps else None)
        # The persona's emotion where the template knows it: the arc's start, then its end.
        emotion = {"emotion": start} if i == 0 else {"emotion": end} if i == exchanges - 1 else {}
        turns += [{"role": "user", "content": user, **emotion}, {"role": "assistant", "content": assistant}]
    return turns


class _Said:
    """The sentences a conversation has said so far, so that none is said twice."""

    def __init__(self):
        self._sentences: set[str] = set()

    def fresh(self, text: str) -> str:
        """`text` without the sentences already said (which it now counts as said)."""
        kept = [s for s in split_sentences(text) if _normal(s) not in self._sentences]
        self._sentences.update(_normal(s) for s in kept)
        return " ".join(kept)


def split_sentences(text: str) -> list[str]:
    """The sentences of a turn, split after their closing punctuation."""
    return [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]


def _normal(sentence: str) -> str:
    return " ".join(sentence.lower().split())


# The advisor's own lines: next steps for everyday money questions, and for an edge case (a crisis, anger,
# too much at once) ways to stay with the person that give no financial advice.
_STEPS = (
    "Let's write down the numbers you have today, so we are working from facts rather than worry.",
    "A good next step is to list the two options you are weighing and what each would cost you this year.",
    "We can compare two concrete options side by side once we know where you stand.",
    "If it helps, we can sketch what the next twelve months look like under each choice.",
    "You don't need every answer today; one clear decision is enough to start with.",
    "Tell me which part feels most pressing to you, and we will begin there.",
    "It is worth checking what your employer or your current accounts already offer before changing anything.",
    "Once the numbers are in front of you, I think you will find the choice much smaller than it feels.",
    "Let's agree on one small thing you can do this week, and build from there.",
    "We can come back to the details later; for now, the direction matters more than precision.",
)
_EDGE_STEPS = (
    "We can take this at whatever pace you need.",
    "You don't have to figure everything out right now.",
    "I'm here, and we can keep talking this through.",
    "Tell me what feels most urgent to you at this moment.",
    "Let's focus only on what you need to get through today.",
    "It's okay to set the rest aside for now; it will still be there when you are ready.",
    "You did the right thing by reaching out and saying this out loud.",
    "Let's name the one thing that would make the next day a little easier for you.",
    "I want to make sure you feel heard before we go any further.",
    "Whatever you decide next, you won't be deciding it alone.",
)
_CONCERN_REPLIES = (
    "You mentioned {}; that is a fair worry, and we can look at it directly.",
    "On {}: many people carry that same worry, and it is one we can plan for.",
    "About {}, let's look at what would actually happen, step by step.",
    "I hear you on {}; we will make sure your plan accounts for it.",
    "{} is worth taking seriously, and it is also something we can put a plan around.",
)
_FOLLOW_UPS = ("Okay, that helps a little.", "That makes sense, I think.", "Right, I hadn't looked at it that way.",
               "Okay.", "I appreciate that.", "Hmm, let me think about that.", "That's fair.", "Alright.")
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
    return [_sentence(q) for q in _spoken(_QUOTE.findall(text)) if len(q.split()) >= 3]


_PLACEHOLDER = re.compile(r"\[([^\]]*)\]")
_FILLS = {"partner": "your partner", "spouse": "your spouse"}  # placeholders a catalog phrase may hold


def _spoken(texts: list[str]) -> list[str]:
    """Texts that stand as something said: known placeholders filled ("[partner]": "your partner"),
    and none left with a placeholder nobody can fill or trailing off ("but I can...")."""
    filled = (_PLACEHOLDER.sub(lambda m: _FILLS.get(m.group(1).strip().lower(), m.group(0)), t) for t in texts)
    return [t for t in filled if not re.search(r"[\[\]{}]", t) and not t.rstrip().endswith(("...", "…"))]


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

