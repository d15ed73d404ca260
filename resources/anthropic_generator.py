"""The LLM generator: conversations from Claude over the Anthropic Messages API (official SDK).

The prompt comes from the templates in `resources/prompts/`, filled from the persona, arc and
topic rows. Every column is a placeholder named after its table (`$persona_name`,
`$arc_starting_emotion`, `$topic_typical_question_examples`, ...), plus `$turn_min`, `$turn_max`
and `$tier`; a column the table lacks reads "(not given)". The model answers in JSON (structured
outputs) and the reply is validated: turns alternate starting with the user and end with the
assistant, the number of exchanges is within the arc's range, and the persona is the input's.
A reply that fails validation is asked for once more; then the item fails with the reason.

HTTP failures are retried here, not in the SDK (its retries are off), so that each one is logged
and `retry-after` sets the wait: 429, 529 and other 5xx, connection errors and timeouts, with
exponential backoff and jitter. A rate limiter shared by every thread of the process keeps
requests and tokens per minute under the configured limits. Errors carry the API's own status,
error type and message; the API key never appears in an error, a log line or a repr.

The SDK is imported on first use: importing it adds most of a second to every command that
merely imports the generators.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import string
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from resources.generators import (
    GENERATORS,
    ConversationGenerator,
    ConversationRequest,
    GeneratedConversation,
    GenerationError,
    Usage,
    _tokens,
    _turn_range,
)

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import Message

log = logging.getLogger(__name__)

PROMPTS = Path(__file__).parent / "prompts"
SYSTEM_PROMPT = string.Template((PROMPTS / "conversation_system.txt").read_text())
USER_PROMPT = string.Template((PROMPTS / "conversation_user.txt").read_text())
NOT_GIVEN = "(not given)"

REPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "persona": {"type": "string"},
        "turns": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"type": "string", "enum": ["user", "assistant"]},
                    "content": {"type": "string"},
                    # what the app's training pairs carry per exchange: the persona's emotion, the coach's strategy
                    "emotion": {"type": "string"},
                    "strategy": {"type": "string"},
                },
                "required": ["role", "content"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["persona", "turns"],
    "additionalProperties": False,
}
REPLY_ATTEMPTS = 2  # a reply that fails validation is asked for once more
TOKENS_PER_TURN = 120  # a rough size of one turn, for the cost estimated before a batch runs


class AnthropicGenerationError(GenerationError):
    """No conversation for a request. The message is the real cause: the API's status, error type
    and message, or why the replies failed validation. `usage` counts what the attempts cost."""

    def __init__(self, message: str, *, usage: Usage | None = None, status_code: int | None = None,
                 error_type: str | None = None):
        super().__init__(message, usage=usage)
        self.status_code = status_code
        self.error_type = error_type


class InvalidReply(ValueError):
    """A reply that is not the conversation asked for; the message says how."""


class RateLimiter:
    """Requests and tokens per minute for every thread of the process calling one API and model.

    Token buckets holding one second's worth, so calls are spread evenly rather than sent in a
    burst the API would count against a shorter window. Tokens are reserved before a call from
    the prompt's estimate and settled after it from the API's usage (the reply's size is only
    known then), so the bucket can go below zero and later calls wait until it refills. A
    `retry-after` from the API pauses every caller.
    """

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None):
        self._lock = threading.Lock()
        self._requests = _Bucket(requests_per_minute)
        self._tokens = _Bucket(tokens_per_minute)
        self._paused_until = 0.0

    def acquire(self, tokens: int) -> float:
        """Wait until a call of about `tokens` tokens may go; returns the seconds waited."""
        started = time.monotonic()
        while True:
            with self._lock:
                now = time.monotonic()
                wait = max(self._paused_until - now, self._requests.wait(now, 1), self._tokens.wait(now, tokens))
                if wait <= 0:
                    self._requests.take(1)
                    self._tokens.take(tokens)
                    return now - started
            time.sleep(wait)

    def settle(self, reserved: int, used: int) -> None:
        """Correct a call's reservation to the tokens the API counted (0 for a failed call)."""
        with self._lock:
            self._tokens.take(used - reserved)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


class _Bucket:
    """Refilled at `per_minute / 60` a second up to one second's worth; no rate means no limit."""

    def __init__(self, per_minute: int | None):
        self.rate = per_minute / 60 if per_minute else None
        self.capacity = max(1.0, self.rate) if self.rate else 0.0
        self.level = self.capacity
        self.stamp = time.monotonic()

    def wait(self, now: float, amount: float) -> float:
        """Seconds until `amount` may be taken (at most a full bucket is ever waited for)."""
        if self.rate is None:
            return 0.0
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float) -> None:
        if self.rate is not None:
            self.level = min(self.capacity, self.level - amount)


_LIMITERS: dict[tuple, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(base_url: str, model: str, requests_per_minute: int | None,
                   tokens_per_minute: int | None) -> RateLimiter:
    """The process's limiter for one API and model: every generator and thread calling them shares it."""
    key = (base_url, model, requests_per_minute, tokens_per_minute)
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(key, RateLimiter(requests_per_minute, tokens_per_minute))


class AnthropicGenerator(ConversationGenerator):
    """Conversations from Claude. Thread-safe: one SDK client and the process's rate limiter serve every thread."""

    api_key: str = Field(
        default=dg.EnvVar("ANTHROPIC_API_KEY"), repr=False,
        description="Anthropic API key; give it as an EnvVar (the default reads ANTHROPIC_API_KEY). Never logged.",
    )
    model: str = Field(default="claude-sonnet-5", description="Claude model id.")
    temperature: float | None = Field(
        default=None,
        description="Sampling temperature, sent only when set: Claude Sonnet 5 and Opus 4.7 or later reject it.",
    )
    max_tokens: int = Field(
        default=8192,
        description="Most tokens one reply may use, thinking included (Sonnet 5 thinks adaptively); only those used are billed.",
    )
    base_url: str | None = Field(
        default=None, description="Messages API base URL; unset means $ANTHROPIC_BASE_URL, else the SDK's default."
    )
    timeout_s: float = Field(default=120.0, description="Seconds one HTTP request may take before it is retried.")
    max_retries: int = Field(default=4, description="Retries of one call on 429, 529, 5xx, connection errors and timeouts.")
    backoff_base_s: float = Field(default=1.0, description="First retry's backoff; it doubles each retry, with jitter.")
    backoff_cap_s: float = Field(default=30.0, description="Longest backoff (a longer retry-after is still honoured).")
    requests_per_minute: int | None = Field(
        default=50,
        description="Requests per minute for the whole process (unset or 0: no limit); the API tier's limit.",
    )
    tokens_per_minute: int | None = Field(
        default=None, description="Input plus output tokens per minute for the whole process (unset or 0: no limit)."
    )
    input_price_per_mtok: float = Field(default=2.0, description="US dollars per million input tokens (Sonnet 5).")
    output_price_per_mtok: float = Field(default=10.0, description="US dollars per million output tokens (Sonnet 5).")

    _client: anthropic.Anthropic | None = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return "anthropic"

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        system, user = render_prompt(request)
        usage = Usage()
        failures = []
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            message, usage = self._reply(system, user, usage, label=request.seed)
            try:
                turns = validate_reply(message, request)
            except InvalidReply as exc:
                failures.append(f"reply {attempt}: {exc}")
                log.warning("anthropic: %s: invalid reply %d of %d: %s", request.seed, attempt, REPLY_ATTEMPTS, exc)
                continue
            return GeneratedConversation(turns=turns, total_tokens=usage.total_tokens, raw=message.to_json(),
                                         usage=usage)
        raise AnthropicGenerationError(f"the model's replies failed validation ({'; '.join(failures)})", usage=usage)

    def estimate_usage(self, request: ConversationRequest) -> Usage:
        """A guess made before any call, for a batch's estimated cost: the prompt's size in, the arc's
        longest conversation out (thinking not included)."""
        system, user = render_prompt(request)
        _, most = _turn_range(request.arc)
        return Usage(requests=1, replies=1, input_tokens=_tokens(system) + _tokens(user),
                     output_tokens=2 * most * TOKENS_PER_TURN)

    def cost(self, usage: Usage) -> float:
        """US dollars for `usage` at the configured prices."""
        return (usage.input_tokens * self.input_price_per_mtok + usage.output_tokens * self.output_price_per_mtok) / 1e6

    def close(self) -> None:
        """Close the HTTP connections; the next call opens new ones."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def _reply(self, system: str, user: str, usage: Usage, *, label: str) -> tuple[Message, Usage]:
        """One reply from the API, retrying what is worth retrying; returns it and `usage` plus what it took."""
        import anthropic

        client = self._sdk_client()
        limiter = shared_limiter(str(client.base_url), self.model, self.requests_per_minute, self.tokens_per_minute)
        estimate = _tokens(system) + _tokens(user)
        for attempt in itertools.count():
            limiter.acquire(estimate)
            usage += Usage(requests=1)
            try:
                message = client.messages.create(**self._parameters(system, user))
            except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
                limiter.settle(estimate, 0)
                cause = self._redact(_describe(exc, self.timeout_s))
                retryable = _retryable(exc)
                if not retryable or attempt == self.max_retries:
                    tries = f" (gave up after {attempt + 1} attempts)" if retryable else ""
                    raise AnthropicGenerationError(
                        cause + tries, usage=usage, status_code=getattr(exc, "status_code", None),
                        error_type=_error_body(exc)[0],
                    ) from None  # the SDK's exception repeats the body unredacted; the message above has its cause
                retry_after = _retry_after(exc)
                if retry_after is not None:
                    limiter.pause(retry_after)
                delay = self._backoff(attempt, retry_after)
                log.warning("anthropic: %s: %s; retry %d of %d in %.2f s", label, cause, attempt + 1, self.max_retries,
                            delay)
                time.sleep(delay)
                continue
            used = Usage(replies=1, input_tokens=message.usage.input_tokens, output_tokens=message.usage.output_tokens)
            limiter.settle(estimate, used.total_tokens)
            return message, usage + used

    def _parameters(self, system: str, user: str) -> dict[str, Any]:
        parameters = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": system,
            "messages": [{"role": "user", "content": user}],
            "output_config": {"format": {"type": "json_schema", "schema": REPLY_SCHEMA}},
        }
        if self.temperature is not None:  # SDK 2 dropped the sampling parameters, which newer models reject
            parameters["extra_body"] = {"temperature": self.temperature}
        return parameters

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; never shorter than the API's retry-after (plus up to 10%)."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after * random.uniform(1.0, 1.1)) if retry_after is not None else delay

    def _sdk_client(self) -> anthropic.Anthropic:
        import anthropic

        with self._client_lock:
            if self._client is None:
                self._client = anthropic.Anthropic(
                    api_key=self._key(), base_url=self.base_url, max_retries=0, timeout=self.timeout_s
                )
            return self._client

    def _key(self) -> str:
        """The key itself: outside a Dagster run an EnvVar field still holds the variable's name."""
        key = self.api_key.get_value() if isinstance(self.api_key, dg.EnvVar) else self.api_key
        if not key:
            name = self.api_key.env_var_name if isinstance(self.api_key, dg.EnvVar) else "api_key"
            raise AnthropicGenerationError(f"no Anthropic API key: {name} is not set")
        return key

    def _redact(self, text: str) -> str:
        """A proxy may echo the key in an error body; it must not reach our messages."""
        key = self._key()
        return text.replace(key, "[redacted]") if key else text


GENERATORS["anthropic"] = AnthropicGenerator


def render_prompt(request: ConversationRequest) -> tuple[str, str]:
    """The system and user prompts for a request, from the templates and the request's rows."""
    low, high = _turn_range(request.arc)
    values = _Placeholders(turn_min=low, turn_max=high, tier=request.tier)
    for table, row in (("persona", request.persona), ("arc", request.arc), ("topic", request.topic)):
        values.update({f"{table}_{column}": _text(value) for column, value in row.items()})
    return SYSTEM_PROMPT.substitute(values), USER_PROMPT.substitute(values)


class _Placeholders(dict):
    """Template values in which a column the table lacks reads as not given."""

    def __missing__(self, key: str) -> str:
        return NOT_GIVEN


def _text(value: Any) -> str:
    """A column as prompt text: lists as bullet lines, objects as `key: value` pairs."""
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if str(v).strip()]
        return "\n".join(f"- {item}" for item in items) or NOT_GIVEN
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or NOT_GIVEN
    text = "" if value is None else str(value).strip()
    return text or NOT_GIVEN


def validate_reply(message: Message, request: ConversationRequest) -> list[dict[str, str]]:
    """The reply's turns, or InvalidReply saying why they are not the conversation asked for."""
    if message.stop_reason == "max_tokens":
        raise InvalidReply(f"the reply was cut off at max_tokens after {message.usage.output_tokens} tokens")
    if message.stop_reason == "refusal":
        raise InvalidReply("the model declined to write it (stop_reason refusal)")
    return parse_conversation("".join(b.text for b in message.content if b.type == "text"), request)


def parse_conversation(text: str, request: ConversationRequest) -> list[dict[str, str]]:
    """Turns from a reply's JSON, checked against the request's persona and arc."""
    try:
        reply = json.loads(_unfenced(text))
    except json.JSONDecodeError as exc:
        raise InvalidReply(f"the reply is not JSON ({exc.msg}: line {exc.lineno} column {exc.colno}): "
                           f"{text[:80]!r}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("turns"), list):
        raise InvalidReply("the reply has no list of turns")
    expected, named = str(request.persona.get("name") or ""), reply.get("persona")
    if expected and named and _normal(str(named)) != _normal(expected):
        raise InvalidReply(f"the reply renames the persona {expected!r} to {named!r}")
    turns = []
    for number, turn in enumerate(reply["turns"], start=1):
        role, content = (turn.get("role"), turn.get("content")) if isinstance(turn, dict) else (None, None)
        wanted = "user" if number % 2 else "assistant"
        if role != wanted:
            raise InvalidReply(f"turn {number} is {role!r} where {wanted!r} was due: turns alternate, user first")
        if not isinstance(content, str) or not content.strip():
            raise InvalidReply(f"turn {number} has no text")
        turns.append({"role": role, "content": content.strip()}
                     | {k: turn[k].strip() for k in ("emotion", "strategy") if isinstance(turn.get(k), str) and turn[k].strip()})
    if not turns or len(turns) % 2:
        raise InvalidReply("the conversation does not end with the assistant's reply")
    low, high = _turn_range(request.arc)
    if not low <= len(turns) // 2 <= high:
        raise InvalidReply(f"{len(turns) // 2} exchanges where the arc asks for {low} to {high}")
    return turns


def _unfenced(text: str) -> str:
    """The JSON inside a ```json fence, which some proxies and older models add around it."""
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    return text


def _normal(name: str) -> str:
    return " ".join(name.split()).casefold()


def _retryable(exc: anthropic.APIError) -> bool:
    status = getattr(exc, "status_code", None)
    return status is None or status == 429 or status >= 500  # no status: a connection error or a timeout


def _retry_after(exc: anthropic.APIError) -> float | None:
    """Seconds the API asked us to wait (`retry-after-ms`, or `retry-after` in seconds or as a date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        if "retry-after" in headers:
            value = headers["retry-after"]
            try:
                return max(0.0, float(value))
            except ValueError:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        pass
    return None


def _error_body(exc: anthropic.APIError) -> tuple[str | None, str | None]:
    """The API error body's `error.type` and `error.message`, when it sent one."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return error.get("type"), error.get("message")


def _describe(exc: anthropic.APIError, timeout_s: float) -> str:
    """The real cause of a failed request, in one line."""
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        error_type, message = _error_body(exc)
        request_id = exc.response.headers.get("request-id")
        return (f"HTTP {exc.status_code} {error_type or 'error'}: {(message or exc.message)[:500]}"
                + (f" (request-id {request_id})" if request_id else ""))
    if isinstance(exc, anthropic.APITimeoutError):
        return f"no response within {timeout_s:g} s (timeout)"
    return f"connection failed: {exc.__cause__ or exc}"
