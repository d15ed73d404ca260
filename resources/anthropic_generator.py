"""The LLM generator: conversations from Claude over the Anthropic Messages API or its Message Batches API
(official SDK).

The prompt comes from the templates in `resources/prompts/`, filled from the persona, arc and
topic rows. Every column is a placeholder named after its table (`$persona_name`,
`$arc_starting_emotion`, `$topic_typical_question_examples`, ...), plus `$turn_min`, `$turn_max`
and `$tier`; a column the table lacks reads "(not given)". The model answers in JSON (structured
outputs) and the reply is validated: turns alternate starting with the user and end with the
assistant, the number of exchanges is within the arc's range, and the persona is the input's.
A reply that fails validation is asked for once more; then the item fails with the reason.

Transient failures are retried by the SDK (`max_retries`: 408, 409, 429, 5xx, connection errors
and timeouts, `retry-after` and `x-should-retry` honoured). A middleware inside the SDK's retry loop
adds what the SDK lacks: each attempt waits for the process's rate limiter (`resources/limits.py`)
and is counted, a 429 pauses every thread for its `retry-after`, and each failed attempt is a
warning in the run's log. Errors carry the API's own status, error type and message; the API key
never appears in an error, a log line or a repr.

In `batch` mode the processing loop sends the requests as message batches
(`assets/generation/message_batches.py`): this class builds each request and turns each result into
a conversation through the same validation.

The SDK is imported on first use: importing it adds most of a second to every command that
merely imports the generators.
"""

from __future__ import annotations

import json
import logging
import string
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field, PrivateAttr

from resources.generators import (
    ConversationGenerator,
    ConversationRequest,
    GeneratedConversation,
    GenerationError,
    Usage,
    _tokens,
    _turn_range,
)
from resources.limits import RateLimiter, shared_limiter
from resources.prices import price_of

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import Message
    from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

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


class _Call(threading.local):
    """The Messages API call this thread is making: what its attempts reserve from the limiter and how many went."""

    limiter: RateLimiter | None = None
    reserved: tuple[int, int] = (0, 0)
    attempts: int = 0
    label: str = ""


class AnthropicGenerator(ConversationGenerator):
    """Conversations from Claude. Thread-safe: one SDK client and the process's rate limiter serve every thread."""

    api_key: str = Field(
        default=dg.EnvVar("ANTHROPIC_API_KEY"), repr=False,
        description="Anthropic API key; give it as an EnvVar (the default reads ANTHROPIC_API_KEY). Never logged.",
    )
    model: str = Field(default="claude-sonnet-5", description="Claude model id.")
    mode: Literal["messages", "batch"] = Field(
        default="messages",
        description="messages: one request per conversation, as they go; batch: the Message Batches API, half the "
        "price, results within 24 hours.",
    )
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
    max_retries: int = Field(
        default=4, description="The SDK's retries of one call (408, 409, 429, 5xx, connection errors, timeouts)."
    )
    requests_per_minute: int | None = Field(
        default=50,
        description="Messages API requests per minute for the whole process (unset or 0: no limit).",
    )
    input_tokens_per_minute: int | None = Field(
        default=None, description="Input tokens per minute for the whole process (unset or 0: no limit)."
    )
    output_tokens_per_minute: int | None = Field(
        default=None, description="Output tokens per minute for the whole process (unset or 0: no limit)."
    )
    input_price_per_mtok: float | None = Field(
        default=None, description="US dollars per million input tokens; unset: the model's in resources/prices.py."
    )
    output_price_per_mtok: float | None = Field(
        default=None, description="US dollars per million output tokens; unset: the model's in resources/prices.py."
    )
    batch_attempts: int = Field(
        default=3, ge=1, description="Batch mode: times an item is sent before an errored, expired or invalid result "
        "fails it.",
    )
    batch_poll_s: float = Field(default=10.0, gt=0, description="Batch mode: first wait between polls of a batch.")
    batch_poll_max_s: float = Field(default=300.0, gt=0, description="Batch mode: longest wait between polls.")
    max_requests_per_batch: int = Field(default=100_000, ge=1, le=100_000,
                                        description="Batch mode: requests in one message batch (the API's limit).")

    _client: anthropic.Anthropic | None = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _call: _Call = PrivateAttr(default_factory=_Call)
    _replies: list[int] = PrivateAttr(default_factory=lambda: [0, 0])  # replies seen, their output tokens

    @property
    def name(self) -> str:
        return "anthropic"

    @property
    def batched(self) -> bool:
        return self.mode == "batch"

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        system, user = render_prompt(request)
        usage = Usage()
        failures = []
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            message, usage = self._reply(system, user, usage, request)
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
        """US dollars for `usage` at the model's price (resources/prices.py), halved in batch mode."""
        return price_of(self.model, self.input_price_per_mtok, self.output_price_per_mtok).cost(
            usage, batch=self.batched)

    # Batch mode: the processing loop's message_batches module drives these.

    def batch_request(self, custom_id: str, request: ConversationRequest) -> dict[str, Any]:
        """One request of a message batch, as the Message Batches API takes it."""
        system, user = render_prompt(request)
        return {"custom_id": custom_id, "params": self._parameters(system, user)}

    def create_batch(self, requests: list[dict[str, Any]]) -> str:
        """Submit a message batch; its id."""
        return self._api(lambda c: c.messages.batches.create(requests=requests)).id

    def retrieve_batch(self, batch_id: str) -> MessageBatch:
        return self._api(lambda c: c.messages.batches.retrieve(batch_id))

    def batch_results(self, batch_id: str) -> Iterator[MessageBatchIndividualResponse]:
        """An ended batch's results, streamed in the order the API sends them (not the order submitted)."""
        return iter(self._api(lambda c: c.messages.batches.results(batch_id)))

    def cancel_batch(self, batch_id: str) -> None:
        self._api(lambda c: c.messages.batches.cancel(batch_id))

    def conversation_from(self, message: Message, request: ConversationRequest) -> GeneratedConversation:
        """A batch's succeeded result as a conversation, or AnthropicGenerationError (with its usage) saying why not."""
        usage = _usage_of(message, requests=0)
        try:
            turns = validate_reply(message, request)
        except InvalidReply as exc:
            raise AnthropicGenerationError(f"the model's reply failed validation ({exc})", usage=usage) from None
        return GeneratedConversation(turns=turns, total_tokens=usage.total_tokens, raw=message.to_json(), usage=usage)

    def close(self) -> None:
        """Close the HTTP connections; the next call opens new ones."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def _reply(self, system: str, user: str, usage: Usage, request: ConversationRequest) -> tuple[Message, Usage]:
        """One reply from the API (the SDK retries what is worth retrying); returns it and `usage` plus what it took."""
        import anthropic

        client = self._sdk_client()
        estimate = self.estimate_usage(request)
        # Output tokens are reserved at the mean reply seen so far (the estimate until there is one): a reservation
        # far above what replies take would hold back calls the limit allows until each reply settles it.
        seen, output_tokens = self._replies
        reserved = (estimate.input_tokens, output_tokens // seen if seen else estimate.output_tokens)
        call = self._call
        call.limiter = shared_limiter(str(client.base_url), self.model, self.requests_per_minute,
                                      self.input_tokens_per_minute, self.output_tokens_per_minute)
        call.reserved, call.attempts, call.label = reserved, 0, request.seed
        try:
            message = client.messages.create(**self._parameters(system, user))
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            tries = f" (gave up after {call.attempts} attempts)" if call.attempts > 1 else ""
            raise AnthropicGenerationError(
                self.redact(_describe(exc, self.timeout_s)) + tries, usage=usage + Usage(requests=call.attempts),
                status_code=getattr(exc, "status_code", None), error_type=_error_body(exc)[0],
            ) from None  # the SDK's exception repeats the body unredacted; the message above has its cause
        finally:
            call.limiter = None
        used = _usage_of(message, requests=call.attempts)
        shared_limiter(str(client.base_url), self.model, self.requests_per_minute, self.input_tokens_per_minute,
                       self.output_tokens_per_minute).settle(
            reserved, (used.input_tokens + used.cache_creation_input_tokens, used.output_tokens))
        with self._client_lock:
            self._replies[0] += 1
            self._replies[1] += used.output_tokens
        return message, usage + used

    def _attempt(self, request, call_next):
        """The SDK middleware around every HTTP attempt: the shared limits, the shared pause, counting, warnings."""
        import anthropic

        call = self._call
        limiter = call.limiter
        if limiter is not None:  # a Messages API call (batch endpoints have limits of their own)
            limiter.acquire(*call.reserved)
            call.attempts += 1
        try:
            response = call_next(request)
        except anthropic.APIConnectionError as exc:
            if limiter is not None:
                limiter.settle(call.reserved, (0, 0))
            log.warning("anthropic: %s: %s (attempt %d of %d)", call.label or request.url,
                        _describe(exc, self.timeout_s), request.retries_taken + 1, self.max_retries + 1)
            raise
        if response.status_code >= 400:
            if limiter is not None:
                limiter.settle(call.reserved, (0, 0))
            wait = _retry_after(response.http_response.headers) if response.status_code == 429 else None
            if limiter is not None and wait is not None:
                limiter.pause(wait)  # every thread, not only the one the SDK makes wait
            log.warning("anthropic: %s: HTTP %d %s (attempt %d of %d)", call.label or request.url,
                        response.status_code, self.redact(_status_text(response)), request.retries_taken + 1,
                        self.max_retries + 1)
        return response

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

    def _api(self, call):
        """A Message Batches API call; its failure as AnthropicGenerationError with the API's own cause."""
        import anthropic

        try:
            return call(self._sdk_client())
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            raise AnthropicGenerationError(
                self.redact(_describe(exc, self.timeout_s)), status_code=getattr(exc, "status_code", None),
                error_type=_error_body(exc)[0],
            ) from None

    def _sdk_client(self) -> anthropic.Anthropic:
        import anthropic

        with self._client_lock:
            if self._client is None:
                self._client = anthropic.Anthropic(
                    api_key=self._key(), base_url=self.base_url, max_retries=self.max_retries,
                    timeout=self.timeout_s, middleware=[self._attempt],
                )
            return self._client

    def _key(self) -> str:
        """The key itself: outside a Dagster run an EnvVar field still holds the variable's name."""
        key = self.api_key.get_value() if isinstance(self.api_key, dg.EnvVar) else self.api_key
        if not key:
            name = self.api_key.env_var_name if isinstance(self.api_key, dg.EnvVar) else "api_key"
            raise AnthropicGenerationError(f"no Anthropic API key: {name} is not set")
        return key

    def redact(self, text: str) -> str:
        """A proxy may echo the key in an error body; it must not reach our messages."""
        key = self._key()
        return text.replace(key, "[redacted]") if key else text


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


def _retry_after(headers) -> float | None:
    """Seconds the API asked us to wait (`retry-after-ms`, or `retry-after` in seconds or as a date)."""
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


def _status_text(response) -> str:
    """An error response's `error.type: error.message` (its body read, which the SDK then reuses)."""
    try:
        error = json.loads(response.http_response.read()).get("error") or {}
    except (ValueError, AttributeError):
        return "error"
    return f"{error.get('type') or 'error'}: {str(error.get('message') or '')[:500]}"


def _usage_of(message: Message, *, requests: int) -> Usage:
    """The API's usage for one reply, cache tokens included."""
    u = message.usage
    return Usage(requests=requests, replies=1, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                 cache_creation_input_tokens=u.cache_creation_input_tokens or 0,
                 cache_read_input_tokens=u.cache_read_input_tokens or 0)


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
