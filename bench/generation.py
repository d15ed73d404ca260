"""generation_vs_io_floor: the generation path against the plainest code that leaves the same rows and files.

The pipeline: `generate_conversations` with the template generator (no delay) on a fixed
database: it creates the batch job and its items, claims them, generates each conversation,
stores its file and records every outcome, counters included.

The floor: the very rows the pipeline left (its batch_jobs row, every batch_items and
conversations row, exported as binary COPY) COPY'd into a fresh clone of the same database,
and the very files it wrote (their bytes, read back) written with plain `os.open`/`os.write` calls,
each file's conversation generated first by the same template generator: the files' content
is that generator's work, and no code writes the same files without doing it. The faster of
running the COPY before or beside (in a thread) the files counts.

The raw figures also give the floor without the generator (`bytes_floor_s`, the bytes
replayed) and the generator alone (`generator_s`), so each part of the floor can be seen, and two
halves of the pipeline, each alone: `produce_s`, what its workers do per item (generate, then
`ConversationStore.write`: JSON and a write in place), on one thread without any SQL; and
`lifecycle_sql_s`, the batch lifecycle's own SQL for the same items with nothing generated
(`open_job` with its COPY, `claim_items` and `record_outcomes` 500 at a time, `finish_job`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from pathlib import Path
from uuid import UUID, uuid4

import psycopg

from assets.generation.batch import (
    CONVERSATION_STATUS,
    ConversationInsert,
    ConversationRow,
    Item,
    JobSettings,
    Outcome,
    claim_items,
    finish_job,
    open_job,
    record_outcomes,
    start_job,
    unlinked_items,
    unlock_job,
)
from assets.generation.processing import generate_conversations
from assets.generation.scaffolding import load_job_rows, load_scaffolding
from bench.common import ITEMS_PER_TOPIC, Server, timed, topic_keys
from resources.conversation_store import ConversationStore
from resources.generators import ConversationRequest, TemplateGenerator

TABLES = ("batch_jobs", "conversations", "batch_items")  # in foreign-key order
GENERATOR = TemplateGenerator(delay_ms=0)


def measure(server: Server, fixed: str, workdir: Path, *, items: int, concurrency: int, repeats: int) -> dict:
    """`workdir` holds every file the pipeline and the floors write (a tmpfs by default: see `files_dir`)."""
    keys = topic_keys(math.ceil(items / ITEMS_PER_TOPIC))
    # Files are deleted only at the end: on a disk, deleting thousands of files can slow the creations
    # that follow, which would tax whichever part came next.
    workdir = workdir / f"bulkgen-bench-generation-{os.getpid()}"
    runs, clones = [], []  # the databases cloned, dropped at the end too (dropping one deletes its files)
    try:
        for rep in range(repeats):
            runs.append(_repeat(server, fixed, workdir, rep, keys, concurrency, clones))
    finally:
        for name in clones:
            server.drop(name)
        shutil.rmtree(workdir, ignore_errors=True)
    best = {key: min(run[key] for run in runs) for key in runs[0] if key != "shape"}  # each part at its fastest
    shape = runs[0]["shape"]
    return {
        "generation_vs_io_floor": best["floor_s"] / best["pipeline_s"],
        "raw": {**shape, "topics": len(keys), "concurrency": concurrency, "files_dir": str(workdir.parent), **best,
                "pipeline_items_per_s": shape["items"] / best["pipeline_s"],
                "bytes_floor_ratio": best["bytes_floor_s"] / best["pipeline_s"],
                # The ratio if generating and storing cost nothing and overlapped the SQL perfectly.
                "lifecycle_sql_ceiling": best["floor_s"] / best["lifecycle_sql_s"],
                # The ratio if the CPU the pipeline burnt (Python's, the server's) were spread perfectly over
                # the cores, Python's on one of them at a time (the GIL).
                "cpu_ceiling": best["floor_s"] / max(best["pipeline_python_cpu_s"], (
                    best["pipeline_python_cpu_s"] + best["pipeline_server_cpu_s"]) / os.cpu_count()),
                "runs": [{k: v for k, v in run.items() if k != "shape"} for run in runs]},
    }


def files_dir(fallback: Path) -> Path:
    """Where the files go: a tmpfs when there is one, for the pipeline and the floors alike.

    This VM's disk is ext4 without a journal, where creating a file within minutes of mass deletions
    (a test suite's, another benchmark's) rescans every recently freed inode: file creation there
    swings threefold from one minute to the next, and would decide the figure. In memory both sides
    pay the same system calls, and the floor is faster, so the ratio is no easier to meet.
    """
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback


def _repeat(server: Server, fixed: str, workdir: Path, rep: int, keys: list[str], concurrency: int,
            clones: list[str]) -> dict:
    """One pipeline run, then each floor and half of it over the very rows and files it left."""
    def clone() -> str:
        clones.append(server.create(fixed))
        return clones[-1]

    root = workdir / f"pipeline-{rep}"
    with psycopg.connect(server.dsn(clone()), autocommit=True) as conn:
        server.settle()
        before = os.times(), server.cpu_seconds()
        seconds, result = timed(lambda: generate_conversations(
            conn, keys, GENERATOR, ConversationStore(root=str(root)),
            JobSettings(concurrent_processing=concurrency), label="bench"))
        after = os.times(), server.cpu_seconds()
        if (result.status, result.succeeded) != ("completed", result.job.total_items):
            raise RuntimeError(f"the pipeline did not complete every item: {result.summary}")
        rows = _export(conn, result.job.id)
        files = _files(conn, result.job.id, root)
    floors = {mode: _floor(server, clone(), workdir / f"floor-{rep}-{mode}", rows, files,
                           overlapped=mode == "overlapped", generate=True)
              for mode in ("sequential", "overlapped")}
    return {
        "shape": {"items": result.job.total_items, "files": len(files),
                  "file_bytes": sum(len(d) for _, _, d in files), "rows_bytes": {t: len(b) for t, b in rows.items()}},
        "pipeline_s": seconds,
        "pipeline_python_cpu_s": sum(after[0][:2]) - sum(before[0][:2]),  # user and system, every thread
        "pipeline_server_cpu_s": after[1] - before[1],
        "floor_s": min(floors.values()),
        "floor_sequential_s": floors["sequential"],
        "floor_overlapped_s": floors["overlapped"],
        "bytes_floor_s": _floor(server, clone(), workdir / f"floor-{rep}-bytes", rows, files, overlapped=False,
                                generate=False),
        "generator_s": timed(lambda: [GENERATOR.generate(request) for request, _, _ in files])[0],
        "produce_s": _produce_alone(server, workdir / f"produce-{rep}", files),
        "lifecycle_sql_s": _lifecycle_sql(server, clone(), keys, files, concurrency),
    }


def _export(conn: psycopg.Connection, job_id) -> dict[str, bytes]:
    """The job's rows in each table, as binary COPY data."""
    queries = {
        "batch_jobs": "SELECT * FROM batch_jobs WHERE id = %s",
        "conversations": "SELECT * FROM conversations WHERE id IN (SELECT conversation_id FROM batch_items"
                         " WHERE batch_job_id = %s)",
        "batch_items": "SELECT * FROM batch_items WHERE batch_job_id = %s",
    }
    exported = {}
    with conn.cursor() as cur:
        for table, query in queries.items():
            query = query.replace("%s", psycopg.sql.Literal(str(job_id)).as_string(conn))
            with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as copy:
                exported[table] = b"".join(bytes(block) for block in copy)
    return exported


def _produce_alone(server: Server, root: Path, files: list[tuple[ConversationRequest, str, bytes]]) -> float:
    """Seconds to generate each conversation and store its document as the workers do, on one thread."""
    store = ConversationStore(root=str(root))
    documents = [(request, rel, json.loads(data)) for request, rel, data in files]
    server.settle()
    seconds, _ = timed(lambda: [(GENERATOR.generate(request), store.write(rel, document))
                                for request, rel, document in documents])
    return seconds


def _lifecycle_sql(server: Server, name: str, keys: list[str], files, concurrency: int) -> float:
    """Seconds for the batch lifecycle's SQL over the same items (on database `name`), the rows made up front."""
    sizes = {position: (rel, len(data)) for position, (_, rel, data) in enumerate(files, start=1)}  # by b.position
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        def run():
            job = open_job(conn, load_scaffolding(conn, keys), JobSettings(concurrency), label="bench sql",
                           generator=GENERATOR.name)
            start_job(conn, job.id)
            insert = ConversationInsert.for_table(conn, owner=job.settings.owner, status=CONVERSATION_STATUS,
                                                  bucket="conversation-files")
            while items := claim_items(conn, job.id, 500, None):
                record_outcomes(conn, job.id, [Outcome(item, _row(item, *sizes[item.position])) for item in items],
                                0.001, insert)
            unlinked_items(conn, job.id)
            finish_job(conn, job.id, stopped=False, cancelled=False)
            unlock_job(conn, job.id)

        server.settle()
        seconds, _ = timed(run)
    return seconds


def _row(item: Item, path: str, size: int) -> ConversationRow:
    p = item.parameters
    conversation = uuid4()
    return ConversationRow(id=conversation, conversation_id=str(conversation), conversation_name="bench",
                           persona_id=UUID(p["persona_id"]), emotional_arc_id=UUID(p["arc_id"]),
                           training_topic_id=UUID(p["topic_id"]), persona_key=p["persona_key"],
                           emotional_arc_key=p["arc_key"], topic_key=p["topic_key"], tier=item.tier,
                           parameters={k: p[k] for k in ("topic_key", "persona_key", "arc_key")}, turn_count=4,
                           total_tokens=800, quality_score=None, starting_emotion="worry", ending_emotion="calm",
                           file_path=path, file_size=size)


def _files(conn: psycopg.Connection, job_id, root: Path) -> list[tuple[ConversationRequest, str, bytes]]:
    """Each conversation's request (as the item asked it of the generator), file path and bytes."""
    rows = load_job_rows(conn, job_id)
    files = []
    for parameters, tier, path in conn.execute(
        "SELECT b.parameters, b.tier, c.file_path FROM batch_items b JOIN conversations c ON c.id = b.conversation_id"
        " WHERE b.batch_job_id = %s ORDER BY b.position", [job_id],
    ):
        request = ConversationRequest(
            persona=rows.personas[parameters["persona_id"]], arc=rows.arcs[parameters["arc_id"]],
            topic=rows.topics[parameters["topic_id"]], tier=tier,
            seed=f"{parameters['topic_key']}|{parameters['persona_key']}|{parameters['arc_key']}")
        files.append((request, path, (root / path).read_bytes()))
    on_disk = sum(1 for p in root.rglob("*") if p.is_file())
    if on_disk != len(files):
        raise RuntimeError(f"the pipeline left {on_disk} files for {len(files)} conversations")
    return files


def _floor(server: Server, name: str, root: Path, rows: dict[str, bytes],
           files: list[tuple[ConversationRequest, str, bytes]], *, overlapped: bool, generate: bool) -> float:
    """Seconds to COPY `rows` into database `name` (a fresh clone) and write `files` under `root`, plainly."""
    with psycopg.connect(server.dsn(name)) as conn:
        def load():
            with conn.cursor() as cur:
                for table in TABLES:
                    with cur.copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
                        copy.write(rows[table])
            conn.commit()

        def write():
            for folder in {str(Path(rel).parent) for _, rel, _ in files}:
                (root / folder).mkdir(parents=True, exist_ok=True)
            for request, rel, data in files:
                if generate:
                    GENERATOR.generate(request)
                fd = os.open(f"{root}/{rel}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                os.write(fd, data)
                os.close(fd)

        def both():
            if overlapped:
                thread = threading.Thread(target=load)
                thread.start()
                write()
                thread.join()
            else:
                load()
                write()

        server.settle()
        seconds, _ = timed(both)
        (count,) = conn.execute("SELECT count(*) FROM batch_items WHERE status = 'completed'").fetchone()
        if count == 0:
            raise RuntimeError("the floor loaded no items")
    return seconds
