"""The loopback Anthropic API server (tests/llm/fake_anthropic.py) in a process of its own: the API is elsewhere,
so its CPU is not the benchmark's.

    python -m bench.fake_llm [--latency-s S] [--requests N] [--requests-per-minute N]
                             [--input-tokens-per-minute N] [--output-tokens-per-minute N] [--burst-s S]

It prints its URL, serves until standard input closes, then prints what it saw as JSON. The first
N Messages API requests take the latency; the limits are enforced with 429 and retry-after.
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.llm.fake_anthropic import FakeAnthropic, ServerLimits, slow


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fake_llm")
    p.add_argument("--latency-s", type=float, default=0.0)
    p.add_argument("--requests", type=int, default=0, help="how many requests take the latency")
    p.add_argument("--requests-per-minute", type=int)
    p.add_argument("--input-tokens-per-minute", type=int)
    p.add_argument("--output-tokens-per-minute", type=int)
    p.add_argument("--burst-s", type=float, default=2.0, help="each limit's bucket holds this many seconds' worth")
    args = p.parse_args()
    limits = ServerLimits(args.requests_per_minute, args.input_tokens_per_minute, args.output_tokens_per_minute,
                          burst_s=args.burst_s)
    with FakeAnthropic(limits, polls_to_end=2) as server:
        server.script(*[slow(args.latency_s)] * args.requests)
        print(server.url, flush=True)
        sys.stdin.read()
        billed = [r.usage for r in server.requests if r.usage]
        print(json.dumps({
            "requests": len(server.requests), "max_in_flight": server.max_in_flight,
            "rate_limited": server.rate_limited, "batches": len(server.batches),
            "batch_requests": sum(len(b.requests) for b in server.batches.values()),
            "input_tokens": sum(u["input_tokens"] for u in billed),
            "output_tokens": sum(u["output_tokens"] for u in billed),
        }), flush=True)


if __name__ == "__main__":
    main()
