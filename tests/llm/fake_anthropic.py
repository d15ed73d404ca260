"""A loopback fake of the Anthropic Messages API and Message Batches API: a real HTTP server that the real
SDK talks to.

`POST /v1/messages` answers as the API does: a `message` object with a text block and `usage`,
or an error body `{"type": "error", "error": {"type", "message"}}` with the API's status codes
and headers (`request-id`, `retry-after`). Each request takes the next behaviour from a script
(a valid conversation once the script is empty). A valid conversation is built from the prompt,
as a model would: the persona's `Name:` line, the topic's `Topic:` line and the `between A and
B exchanges` length. The server records every request (headers, the API key, body, arrival time) and the
largest number it was ever answering at once.

Limits (`ServerLimits`): requests, input tokens and output tokens per minute, each a token bucket
holding `burst_s` seconds' worth, as the API keeps them; a request over any of them gets 429
`rate_limit_error` with an integer `retry-after`, and is not answered.

Message Batches: `POST /v1/messages/batches` takes the requests (each answered by the next behaviour
of `batch_script`, else a valid conversation, plus `ERRORED` and `EXPIRED`); the batch stays
`in_progress` for `polls_to_end` retrieves, then `ended` with its `results_url`; the results are
JSONL in another order than submitted (reversed, then odd positions first); `cancel` ends it with
every result `canceled`. Every batch and request is kept in `batches`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request: `kind` is a reply's flaw or "error" (then `status`)."""

    kind: str = "valid"  # valid | malformed | truncated | wrong_persona | too_few_turns | too_many_turns | error
    delay_s: float = 0.0
    status: int = 200
    error_type: str = ""
    message: str = ""
    retry_after: str | None = None
    cache_creation: int = 0  # prompt-cache tokens the reply's usage reports written ...
    cache_read: int = 0  # ... and read


VALID = Behaviour()
MALFORMED = Behaviour("malformed")
TRUNCATED = Behaviour("truncated")  # cut off at max_tokens
WRONG_PERSONA = Behaviour("wrong_persona")
TOO_FEW_TURNS = Behaviour("too_few_turns")
TOO_MANY_TURNS = Behaviour("too_many_turns")
OTHER_PERSONA = "Jordan Avery"


ERRORED = Behaviour("errored")  # a batch result: the request errored (an api_error)
EXPIRED = Behaviour("expired")  # a batch result: not processed before the batch expired


@dataclass(frozen=True)
class ServerLimits:
    """Per-minute limits the server enforces with 429 (None: that one is not limited)."""

    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None
    burst_s: float = 1.0  # each bucket holds this many seconds' worth

    def per_item_s(self, input_tokens: int, output_tokens: int) -> float:
        """The most items a second these limits let through, for items of these sizes."""
        rates = [r / 60 / n for r, n in ((self.requests_per_minute, 1), (self.input_tokens_per_minute, input_tokens),
                                         (self.output_tokens_per_minute, output_tokens)) if r]
        return min(rates) if rates else math.inf


class _ServerBucket:
    def __init__(self, per_minute: int | None, burst_s: float):
        self.rate = per_minute / 60 if per_minute else None
        self.capacity = (self.rate or 0) * burst_s
        self.level, self.stamp = self.capacity, time.monotonic()

    def refill(self, now: float) -> None:
        if self.rate:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def short_s(self, amount: float) -> float:
        """Seconds until `amount` is there (0: it is)."""
        return 0.0 if not self.rate or self.level >= amount else (amount - self.level) / self.rate


@dataclass
class FakeBatch:
    id: str
    requests: list[dict]
    behaviours: list[Behaviour]
    created: float
    polls: int = 0
    canceled: bool = False
    results: list[dict] | None = None  # once ended, in the order they are served


def rate_limited(retry_after: str = "1") -> Behaviour:
    return Behaviour("error", status=429, error_type="rate_limit_error", retry_after=retry_after,
                     message="Number of request tokens has exceeded your per-minute rate limit")


def overloaded() -> Behaviour:
    return Behaviour("error", status=529, error_type="overloaded_error", message="Overloaded")


def server_error() -> Behaviour:
    return Behaviour("error", status=500, error_type="api_error", message="Internal server error")


def unauthorized() -> Behaviour:
    """A 401 whose message echoes the key it was sent, as a careless proxy might."""
    return Behaviour("error", status=401, error_type="authentication_error", message="invalid x-api-key: {key}")


def slow(delay_s: float, then: Behaviour = VALID) -> Behaviour:
    return dataclasses.replace(then, delay_s=delay_s)


@dataclass
class Recorded:
    """One request as the server saw it, and what it billed (None for an error)."""

    headers: dict[str, str]
    body: dict
    arrived: float  # by the server's clock (time.monotonic unless a test gives its own)
    behaviour: Behaviour
    usage: dict | None = None

    @property
    def api_key(self) -> str | None:
        """The key sent, as `x-api-key` or (as SDK 2 sends it) `Authorization: Bearer`."""
        bearer = self.headers.get("authorization", "")
        return self.headers.get("x-api-key") or (bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None)

    @property
    def prompt(self) -> str:
        content = self.body["messages"][-1]["content"]
        return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


class FakeAnthropic:
    """The server; use it as a context manager (it stops on exit)."""

    def __init__(self, limits: ServerLimits | None = None, *, polls_to_end: int = 2):
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.limits = limits or ServerLimits()
        self.rate_limited = 0  # requests refused with 429
        self.batches: dict[str, FakeBatch] = {}
        self.polls_to_end = polls_to_end
        self.batch_billed: list[dict] = []  # the usage of every succeeded batch result served
        self._buckets = [_ServerBucket(r, self.limits.burst_s) for r in (
            self.limits.requests_per_minute, self.limits.input_tokens_per_minute, self.limits.output_tokens_per_minute)]
        self._script: deque[Behaviour] = deque()
        self._batch_script: deque[Behaviour] = deque()
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._gather, self._gather_timeout = 0, 0.0
        self.clock: Callable[[], float] = time.monotonic
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-anthropic", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *behaviours: Behaviour) -> None:
        """Queue how the next requests are answered, in order."""
        with self._lock:
            self._script.extend(behaviours)

    def batch_script(self, *behaviours: Behaviour) -> None:
        """Queue how the next batch requests are answered, in the order they are submitted."""
        with self._lock:
            self._batch_script.extend(behaviours)

    def gather(self, requests: int, timeout_s: float = 30.0) -> None:
        """Hold every reply until `requests` are in flight at once (or `timeout_s` has passed): how a test
        sees calls overlap without timing them."""
        with self._lock:
            self._gather, self._gather_timeout = requests, timeout_s

    def billed(self) -> tuple[int, int]:
        """Input and output tokens over every reply the server sent."""
        usages = [r.usage for r in self.requests if r.usage]
        return sum(u["input_tokens"] for u in usages), sum(u["output_tokens"] for u in usages)

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _arrive(self, headers: dict[str, str], body: dict) -> tuple[Recorded, int]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            behaviour = self._script.popleft() if self._script else VALID
            recorded = Recorded(headers, body, self.clock(), behaviour)
            self.requests.append(recorded)
            self._lock.notify_all()
            self._lock.wait_for(lambda: self.in_flight >= self._gather or self.max_in_flight >= self._gather,
                                self._gather_timeout if self._gather else 0)
            return recorded, next(self._ids)

    def _leave(self, usage: dict | None = None) -> None:
        with self._lock:
            self.in_flight -= 1
            if usage:
                self._buckets[2].refill(time.monotonic())
                self._buckets[2].level -= usage["output_tokens"]

    def _admit(self, input_tokens: int) -> float:
        """0 when the request is within the limits (and is charged), else the seconds until it would be."""
        with self._lock:
            now = time.monotonic()
            for bucket in self._buckets:
                bucket.refill(now)
            requests, inputs, outputs = self._buckets
            short = max(requests.short_s(1), inputs.short_s(input_tokens), outputs.short_s(0))
            if short > 0:
                self.rate_limited += 1
                return short
            requests.level -= 1
            inputs.level -= input_tokens
            return 0.0

    def _create_batch(self, body: dict) -> dict:
        with self._lock:
            number = next(self._ids)
            requests = body["requests"]
            behaviours = [self._batch_script.popleft() if self._batch_script else VALID for _ in requests]
            batch = FakeBatch(f"msgbatch_fake_{number:06d}", requests, behaviours, time.time())
            self.batches[batch.id] = batch
            return self._batch_json(batch)

    def _retrieve_batch(self, batch_id: str) -> dict | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            batch.polls += 1
            if batch.results is None and (batch.canceled or batch.polls >= self.polls_to_end):
                batch.results = _shuffled([self._result(batch, i) for i in range(len(batch.requests))])
            return self._batch_json(batch)

    def _cancel_batch(self, batch_id: str) -> dict | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            if batch.results is None:
                batch.canceled = True
            return self._batch_json(batch) | ({"processing_status": "canceling"} if batch.results is None else {})

    def _result(self, batch: FakeBatch, index: int) -> dict:
        request, behaviour = batch.requests[index], batch.behaviours[index]
        custom_id = request["custom_id"]
        if batch.canceled:
            return {"custom_id": custom_id, "result": {"type": "canceled"}}
        if behaviour.kind in ("errored", "error"):
            return {"custom_id": custom_id, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": "api_error", "message": "Internal server error"}}}}
        if behaviour.kind == "expired":
            return {"custom_id": custom_id, "result": {"type": "expired"}}
        recorded = Recorded({}, request["params"], time.monotonic(), behaviour)
        message = _message(recorded, f"msg_fake_batch_{batch.id[-6:]}_{index:06d}")
        self.batch_billed.append(message["usage"])
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}

    def _batch_json(self, batch: FakeBatch) -> dict:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.results is None:
            counts["processing"] = len(batch.requests)
        else:
            for result in batch.results:
                counts[result["result"]["type"]] += 1
        ended = batch.results is not None
        stamp = _iso(batch.created)
        return {
            "id": batch.id, "type": "message_batch", "created_at": stamp, "expires_at": _iso(batch.created + 86400),
            "processing_status": "ended" if ended else "in_progress", "request_counts": counts,
            "ended_at": _iso(time.time()) if ended else None, "archived_at": None,
            "cancel_initiated_at": stamp if batch.canceled else None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stopping
    fake: FakeAnthropic


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # headers and body go in two writes: without this, 40 ms of delayed ACK each
    server: _Server

    def do_GET(self) -> None:
        fake, path = self.server.fake, self.path.split("?")[0]
        match = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results)?", path)
        if not match or match[1] not in fake.batches:
            return self._send(404, _error("not_found_error", f"no route {self.path}"), {})
        batch = fake._retrieve_batch(match[1]) if not match[2] else None
        if batch is not None:
            return self._send(200, batch, {})
        results = fake.batches[match[1]].results
        if results is None:
            return self._send(400, _error("invalid_request_error", "the batch has not ended"), {})
        self._send_bytes(200, "".join(json.dumps(r) + "\n" for r in results).encode(), "application/binary", {})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        fake, path = self.server.fake, self.path.split("?")[0]
        if cancel := re.fullmatch(r"/v1/messages/batches/([\w-]+)/cancel", path):
            batch = fake._cancel_batch(cancel[1])
            return self._send(200, batch, {}) if batch else self._send(404, _error("not_found_error", "no batch"), {})
        if path not in ("/v1/messages", "/v1/messages/batches"):
            return self._send(404, _error("not_found_error", f"no route {self.path}"), {})
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._send(400, _error("invalid_request_error", "the body is not JSON"), {})
        if path == "/v1/messages/batches":
            if not isinstance(body.get("requests"), list) or not body["requests"]:
                return self._send(400, _error("invalid_request_error", "requests: a non-empty list is required"), {})
            return self._send(200, fake._create_batch(body), {})
        if (short := fake._admit(_input_tokens(body))) > 0:
            return self._send(429, _error("rate_limit_error", "This request would exceed your rate limit"),
                              {"retry-after": str(math.ceil(short))})
        headers = {k.lower(): v for k, v in self.headers.items()}
        recorded, number = fake._arrive(headers, body)
        try:
            time.sleep(recorded.behaviour.delay_s)
            status, payload, extra = _answer(recorded, number)
            self._send(status, payload, {"request-id": f"req_fake_{number:06d}", **extra})
        finally:
            fake._leave(recorded.usage)

    def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
        pass


def _answer(recorded: Recorded, number: int) -> tuple[int, dict, dict[str, str]]:
    behaviour, body = recorded.behaviour, recorded.body
    if not recorded.api_key:
        return 401, _error("authentication_error", "x-api-key header is required"), {}
    missing = [f for f in ("model", "max_tokens", "messages") if f not in body]
    if missing:
        return 400, _error("invalid_request_error", f"{missing[0]}: Field required"), {}
    if behaviour.kind == "error":
        extra = {"retry-after": behaviour.retry_after} if behaviour.retry_after is not None else {}
        message = behaviour.message.replace("{key}", recorded.api_key)
        return behaviour.status, _error(behaviour.error_type, message), extra
    return 200, _message(recorded, f"msg_fake_{number:06d}"), {}


def _message(recorded: Recorded, message_id: str) -> dict:
    """The `message` a model would answer the recorded request with (its usage kept on `recorded`)."""
    text = _conversation(recorded.prompt, recorded.behaviour.kind)
    recorded.usage = {"input_tokens": _input_tokens(recorded.body), "output_tokens": max(1, len(text) // 4),
                      "cache_creation_input_tokens": recorded.behaviour.cache_creation,
                      "cache_read_input_tokens": recorded.behaviour.cache_read}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": recorded.body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if recorded.behaviour.kind == "truncated" else "end_turn",
        "stop_sequence": None,
        "usage": recorded.usage,
    }


def _input_tokens(body: dict) -> int:
    """What the fake bills a request's prompt: a token per four characters of the system and user prompts."""
    system = body.get("system") or ""
    system = system if isinstance(system, str) else "".join(b.get("text", "") for b in system)
    content = (body.get("messages") or [{}])[-1].get("content") or ""
    prompt = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    return max(1, len(system + prompt) // 4)


def _shuffled(results: list[dict]) -> list[dict]:
    """Another order than submitted, as the API gives: reversed, odd positions first."""
    backwards = results[::-1]
    return backwards[1::2] + backwards[0::2]


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _conversation(prompt: str, kind: str) -> str:
    """The reply a model would give to the prompt, with the flaw `kind` names."""
    name = _found(r"^Name: (.+)$", prompt) or "Alex Doe"
    topic = (_found(r"^Topic: (.+)$", prompt) or "money").lower()
    length = re.search(r"between (\d+) and (\d+) exchanges", prompt)
    low, high = (int(length[1]), int(length[2])) if length else (3, 5)
    exchanges = {"too_few_turns": low - 1, "too_many_turns": high + 1}.get(kind, low)
    first = name.split()[0]
    start, end = _found(r"^Starting emotion: (.+)$", prompt), _found(r"^Ending emotion: (.+)$", prompt)
    turns = []
    for i in range(1, exchanges + 1):
        emotion = start if i == 1 else end if i == exchanges else "steadier"
        turns.append({"role": "user", "content": f"This is {first}. About {topic}, question {i}: where do I start?",
                      "emotion": emotion})
        turns.append({"role": "assistant", "content": f"Good question, {first}. On {topic}, step {i} is to list the numbers.",
                      "strategy": f"step {i}: list the numbers"})
    persona = OTHER_PERSONA if kind == "wrong_persona" else name
    text = json.dumps({"persona": persona, "turns": turns})
    return text[: len(text) // 2] if kind in ("malformed", "truncated") else text


def _found(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match[1].strip() if match else None


def _error(error_type: str, message: str) -> dict:
    return {"type": "error", "error": {"type": error_type, "message": message}}
