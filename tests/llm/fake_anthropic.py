"""A loopback fake of the Anthropic Messages API: a real HTTP server that the real SDK talks to.

`POST /v1/messages` answers as the API does: a `message` object with a text block and `usage`,
or an error body `{"type": "error", "error": {"type", "message"}}` with the API's status codes
and headers (`request-id`, `retry-after`). Each request takes the next behaviour from a script
(a valid conversation once the script is empty). A valid conversation is built from the prompt,
as a model would: the persona's `Name:` line, the topic's `Topic:` line and the `between A and
B exchanges` length. The server records every request (headers, the API key, body, arrival time) and the
largest number it was ever answering at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
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


VALID = Behaviour()
MALFORMED = Behaviour("malformed")
TRUNCATED = Behaviour("truncated")  # cut off at max_tokens
WRONG_PERSONA = Behaviour("wrong_persona")
TOO_FEW_TURNS = Behaviour("too_few_turns")
TOO_MANY_TURNS = Behaviour("too_many_turns")
OTHER_PERSONA = "Jordan Avery"


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

    def __init__(self):
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[Behaviour] = deque()
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

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stopping
    fake: FakeAnthropic


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # headers and body go in two writes: without this, 40 ms of delayed ACK each
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.split("?")[0] != "/v1/messages":
            return self._send(404, _error("not_found_error", f"no route {self.path}"), {})
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._send(400, _error("invalid_request_error", "the body is not JSON"), {})
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake = self.server.fake
        recorded, number = fake._arrive(headers, body)
        try:
            time.sleep(recorded.behaviour.delay_s)
            status, payload, extra = _answer(recorded, number)
            self._send(status, payload, {"request-id": f"req_fake_{number:06d}", **extra})
        finally:
            fake._leave()

    def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
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
    text = _conversation(recorded.prompt, behaviour.kind)
    system = body.get("system") or ""
    system = system if isinstance(system, str) else "".join(b.get("text", "") for b in system)
    recorded.usage = {"input_tokens": max(1, len(system + recorded.prompt) // 4), "output_tokens": max(1, len(text) // 4)}
    return 200, {
        "id": f"msg_fake_{number:06d}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if behaviour.kind == "truncated" else "end_turn",
        "stop_sequence": None,
        "usage": recorded.usage,
    }, {}


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
