"""The loopback Messages API server (tests/llm/fake_anthropic.py) in a process of its own, every reply
taking a fixed latency: the API is elsewhere, so its CPU is not the benchmark's.

    python -m bench.fake_llm LATENCY_S REQUESTS   (prints its URL, serves until standard input closes,
                                                   then prints what it saw as JSON)
"""

from __future__ import annotations

import json
import sys

from tests.llm.fake_anthropic import FakeAnthropic, slow


def main() -> None:
    latency, requests = float(sys.argv[1]), int(sys.argv[2])
    with FakeAnthropic() as server:
        server.script(*[slow(latency)] * requests)
        print(server.url, flush=True)
        sys.stdin.read()
        print(json.dumps({"requests": len(server.requests), "max_in_flight": server.max_in_flight}), flush=True)


if __name__ == "__main__":
    main()
