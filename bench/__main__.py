"""`python -m bench`: every figure of the benchmark suite in one run, on an embedded PostgreSQL of its own.

Prints a Markdown table and writes bench/results.json: the figures as top-level keys, and
under "raw" the measurements they come from and the machine they ran on.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from bench import audit, contract_extract, demo, generation, llm, migration, orchestration
from bench.common import ITEMS_PER_TOPIC, Server, fixed_template, legacy_template

RESULTS = Path(__file__).with_name("results.json")
PARTS = ("audit", "generation", "migration", "llm", "dagster", "demo", "contract")

# key -> (what, goal as text, predicate or None for "report")
FIGURES = {
    "generation_vs_io_floor": ("floor ÷ pipeline time, template generation", "≥ 0.5", lambda v: v >= 0.5),
    "migration_max_exclusive_lock_ms": ("longest ACCESS EXCLUSIVE on batch_jobs, migration", "≤ 50", lambda v: v <= 50),
    "migration_writer_errors": ("errors the concurrent writer saw, migration", "0", lambda v: v == 0),
    "seed_sql_max_exclusive_lock_ms": ("longest ACCESS EXCLUSIVE on batch_jobs, seed SQL", "report", None),
    "migration_enum_max_exclusive_lock_ms": ("longest ACCESS EXCLUSIVE, migration, status an enum type", "≤ 50",
                                             lambda v: v <= 50),
    "migration_varchar_max_exclusive_lock_ms": ("longest ACCESS EXCLUSIVE, migration, status a varchar(9) under a "
                                                "view", "≤ 50", lambda v: v <= 50),
    "migration_wall_vs_seed_sql": ("migration wall time ÷ seed SQL's, same rows", "report", None),
    "audit_scale_ratio": ("audit time with ÷ without the unrelated tables", "≤ 1.5", lambda v: v <= 1.5),
    "llm_concurrency_efficiency": ("achieved ÷ ideal items/s, LLM generator", "≥ 0.9", lambda v: v >= 0.9),
    "llm_batch_cost_ratio": ("cost through message batches ÷ through messages", "≤ 0.55", lambda v: v <= 0.55),
    "llm_rate_limit_utilization": ("items/s ÷ the enforced limits' ceiling, 60 s", "≥ 0.9", lambda v: v >= 0.9),
    "llm_failed_items": ("items failed in the LLM runs", "0", lambda v: v == 0),
    "dagster_overhead_s": ("Dagster run − direct call, 20 topics (s)", "≤ 1.0", lambda v: v <= 1.0),
    "dagster_overhead_s_200": ("Dagster run − direct call, 200 topics (s)", "≤ 2.0", lambda v: v <= 2.0),
    "demo_wall_s": ("`bulkgen demo` from a stopped database (s)", "report", None),
    "contract_extract_s_per_1000_files": ("contract extraction, 500-file app tree (s per 1000 files)", "≤ 10",
                                          lambda v: v <= 10),
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    root = Path(os.environ.get("BENCH_TMPDIR") or "/tmp") / f"bulkgen-bench-{os.getpid()}"
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # registered first: runs after the server stops
    work = root / "work"
    work.mkdir(parents=True)
    load_before = os.getloadavg()
    databases = {}

    def template(name: str):
        """The server and its templates, started on first use: `--only contract` needs no database."""
        if not databases:
            server = databases["server"] = Server(root / "pgdata")
            _say(f"embedded PostgreSQL {server.version}; templates ...")
            topics = max(-(-args.generation_items // ITEMS_PER_TOPIC), args.dagster_topics_200, args.dagster_topics,
                         -(-max(args.llm_items, args.llm_batch_items, int(args.llm_utilization_s * 10))
                           // ITEMS_PER_TOPIC))
            databases["legacy"] = legacy_template(server, topics)
            databases["fixed"] = fixed_template(server, databases["legacy"])
        return databases[name]

    results, raw = {}, {}
    steps = [
        ("audit", lambda: audit.measure(template("server"), template("legacy"), tables=args.audit_tables,
                                        repeats=args.audit_repeats)),
        ("generation", lambda: generation.measure(template("server"), template("fixed"),
                                                  args.files_dir or generation.files_dir(work),
                                                  items=args.generation_items,
                                                  concurrency=args.generation_concurrency,
                                                  repeats=args.generation_repeats)),
        ("migration", lambda: migration.measure(template("server"), template("legacy"), rows=args.migration_rows,
                                                writer_interval_ms=args.writer_interval_ms)),
        ("llm", lambda: llm.measure(template("server"), template("fixed"), work, items=args.llm_items,
                                    concurrency=args.llm_concurrency, latency_s=args.llm_latency_s,
                                    batch_items=args.llm_batch_items, utilization_s=args.llm_utilization_s)),
        ("dagster", lambda: orchestration.measure(template("server"), template("fixed"), work,
                                                  topics=args.dagster_topics, topics_200=args.dagster_topics_200,
                                                  repeats=args.dagster_repeats)),
        ("demo", lambda: demo.measure(work)),
        ("contract", lambda: contract_extract.measure(work, files=args.contract_files)),
    ]
    for name, run in steps:
        if args.only and name not in args.only:
            continue
        _say(f"{name} ...")
        step_started = time.perf_counter()
        measured = run()
        raw[name] = {**measured.pop("raw"), "benchmark_s": round(time.perf_counter() - step_started, 1)}
        results.update(measured)
        _say("  " + ", ".join(f"{k} = {_fmt(v)}" for k, v in measured.items()))
    if not args.only and set(results) != set(FIGURES):
        raise RuntimeError(f"figures missing or extra: {set(FIGURES) ^ set(results)}")
    raw["machine"] = _machine(databases["server"].version if databases else None, load_before)
    raw["sizes"] = vars(args) | {"out": str(args.out)}
    raw["total_s"] = round(time.perf_counter() - started, 1)
    ordered = {key: results[key] for key in FIGURES if key in results}
    if args.only and args.out.exists():  # the parts run replace theirs; the others' figures stay as measured
        earlier = json.loads(args.out.read_text())
        raw = {**earlier.get("raw", {}), **raw}
        ordered = {key: ordered.get(key, earlier.get(key)) for key in FIGURES if key in ordered or key in earlier}
    args.out.write_text(json.dumps({**ordered, "raw": raw}, indent=2, default=str) + "\n")
    print(table(ordered))
    print(f"\n{machine_line(raw['machine'])}; {raw['total_s']:.0f} s in all. Written to {args.out}.")
    return 0


def table(results: dict) -> str:
    lines = ["| figure | value | goal | met |", "|---|---|---|---|"]
    for key, (what, goal, met) in FIGURES.items():
        if key not in results:
            continue
        verdict = "report" if met is None else ("yes" if met(results[key]) else "**no**")
        lines.append(f"| `{key}` ({what}) | {_fmt(results[key])} | {goal} | {verdict} |")
    return "\n".join(lines)


def machine_line(m: dict) -> str:
    database = f"PostgreSQL {m['postgresql']} (embedded)" if m["postgresql"] else "no database"
    return (f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {database}, "
            f"Python {m['python']}; load average {m['load_before']} before, {m['load_after']} after")


def _machine(pg_version: str, load_before: tuple[float, ...]) -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    memory = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(memory / 2**20, 1),
            "postgresql": pg_version, "python": platform.python_version(),
            "load_before": round(load_before[0], 2), "load_after": round(os.getloadavg()[0], 2)}


def _fmt(value) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--generation-items", type=int, default=10_000)
    p.add_argument("--generation-concurrency", type=int, default=3, help="the asset's default")
    p.add_argument("--generation-repeats", type=int, default=4, help="each part at its fastest counts")
    p.add_argument("--files-dir", type=Path, help="where generation's files go (default: /dev/shm when writable)")
    p.add_argument("--migration-rows", type=int, default=1_000_000)
    p.add_argument("--writer-interval-ms", type=float, default=1.0, help="the writer's pause between UPDATEs")
    p.add_argument("--audit-tables", type=int, default=5_000)
    p.add_argument("--audit-repeats", type=int, default=41)
    p.add_argument("--llm-items", type=int, default=240)
    p.add_argument("--llm-concurrency", type=int, default=10, help="concurrent_processing (at most 10)")
    p.add_argument("--llm-latency-s", type=float, default=0.5)
    p.add_argument("--llm-batch-items", type=int, default=1000, help="conversations priced in each mode")
    p.add_argument("--llm-utilization-s", type=float, default=60.0, help="about how long the limited run lasts")
    p.add_argument("--dagster-topics", type=int, default=20)
    p.add_argument("--dagster-topics-200", type=int, default=200)
    p.add_argument("--dagster-repeats", type=int, default=3)
    p.add_argument("--contract-files", type=int, default=500, help="source files in the extracted app tree")
    p.add_argument("--only", action="append", choices=PARTS, metavar="PART",
                   help=f"run only this part (repeatable): {', '.join(PARTS)}")
    p.add_argument("--output", "--out", dest="out", type=Path, default=RESULTS, help="where the results go")
    return p


if __name__ == "__main__":
    sys.exit(main())
