"""The contract read from the fixture app's code (tests/fixtures/app): exact values, each with its evidence.

Places are found by the text on their line, so each expectation names the code it stands for.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from assets.audit.code_contract import extract_code_contract
from assets.audit.typescript_source import SourceError

APP = Path(__file__).resolve().parents[1] / "fixtures" / "app"
SERVICE = "src/lib/services/batch-job-service.ts"
PROCESSOR = "src/lib/services/batch-processor.ts"
TYPES = "src/lib/types/index.ts"
STORAGE = "src/lib/services/conversation-storage.ts"


def at(path: str, snippet: str, root: Path = APP) -> str:
    """`path:line` of the one line of `path` holding `snippet`."""
    lines = [n for n, line in enumerate((root / path).read_text().splitlines(), 1) if snippet in line]
    assert len(lines) == 1, f"{snippet!r} is on lines {lines} of {path}"
    return f"{path}:{lines[0]}"


@pytest.fixture(scope="module")
def code():
    return extract_code_contract(str(APP)).as_dict()


def column(code, table, name):
    return code["tables"][table]["columns"][name]


def test_only_the_apps_tables_are_written(code):
    # Not the bucket of `.storage.from(...).update`, not a hash's `.update`, nothing under node_modules.
    assert set(code["tables"]) == {"batch_jobs", "batch_items", "conversations"}


def test_batch_jobs_status_every_pattern_with_its_evidence(code):
    job_status = at(TYPES, "export type JobStatus")
    typed = at(PROCESSOR, "const status: 'queued' | 'paused'")  # a variable its type bounds, not its value
    assert column(code, "batch_jobs", "status")["evidence"] == {
        # `{ status }` shorthand, its parameter typed JobStatus: the alias's members
        "processing": [job_status],
        "queued": [at(SERVICE, "status: 'queued' as const"), typed, job_status],  # `as const`
        "paused": [at(SERVICE, "update({ status: 'paused' })"), typed, job_status],
        "cancelled": [at(SERVICE, "update({ status: 'cancelled', completed_at"), job_status],
        # a variable holding an object, a property assigned to it later with a ternary
        "completed": [at(PROCESSOR, "finish.status = "), job_status],
        "failed": [at(PROCESSOR, "finish.status = "), job_status],
    }
    assert column(code, "batch_jobs", "status")["unbounded"] == []


def test_batch_items_status_through_call_sites_types_and_constants(code):
    item_statuses = at(TYPES, "export const ITEM_STATUSES")  # typeof ITEM_STATUSES[number], through Pick<BatchItem>
    assert column(code, "batch_items", "status")["evidence"] == {
        "queued": [at("scripts/requeue.js", "update({ status: 'queued'"), at(SERVICE, "status: 'queued',"),
                   item_statuses],
        # a parameter typed plain string: the literal arguments at its call sites, in another file
        "processing": [at(PROCESSOR, "updateItemStatus(itemId, 'processing')"), item_statuses],
        "completed": [at(PROCESSOR, "updateItemStatus(itemId, 'completed')"), item_statuses],
        "failed": [at("src/lib/constants.ts", "FAILED: 'failed'"), item_statuses],  # ITEM_STATUS.FAILED via a barrel
        "cancelled": [at(SERVICE, "update({ status: 'cancelled' })"), item_statuses],
    }


def test_defaults_ternaries_enums_and_interface_members(code):
    options = at(SERVICE, "errorHandling?: 'stop' | 'continue'")
    assert column(code, "batch_jobs", "error_handling")["evidence"] == {
        "continue": [options, at(SERVICE, "?? 'continue'")], "stop": [options]}
    assert column(code, "batch_jobs", "job_type")["evidence"] == {"generation": [at(TYPES, "Generation = 'generation'")]}
    assert column(code, "batch_items", "tier")["evidence"] == {
        "edge_case": [at(SERVICE, "? 'edge_case' : 'template'"), at(TYPES, "export type Tier")],
        "scenario": [at(TYPES, "export type Tier")],
        "template": [at(SERVICE, "? 'edge_case' : 'template'"), at(TYPES, "export type Tier")],
    }
    # options comes from an API request: the type of each member still bounds it
    assert column(code, "batch_jobs", "tier")["values"] == ["edge_case", "scenario", "template"]


def test_a_value_it_cannot_bound_is_reported_never_guessed(code):
    priority = column(code, "batch_jobs", "priority")
    assert priority["evidence"] == {"high": [at("src/components/JobControls.tsx", "setJobPriority(jobId, 'high')")],
                                    "normal": [at(SERVICE, "options.priority || 'normal'")]}
    assert [(u["expression"], u["evidence"]) for u in priority["unbounded"]] == [
        ("body.priority", at("src/app/api/jobs/route.ts", "body.priority")),
        ("options.priority", at(SERVICE, "options.priority || 'normal'")),
    ]
    assert all(u["reason"] for u in priority["unbounded"])


def test_reads_are_not_writes(code):
    everything = json.dumps(code)
    assert "pending" not in everything.replace("pending_review", "")  # `.eq('status', 'pending')`, a read
    assert "running" not in everything  # only a dependency under node_modules writes it
    in_filter = at(SERVICE, ".in('status', ['queued', 'processing'])")
    assert all(in_filter not in places for places in column(code, "batch_items", "status")["evidence"].values())


def test_another_tables_write_in_the_same_function(code):
    jobs, items = at(SERVICE, "status: 'cancelled', completed_at"), at(SERVICE, "update({ status: 'cancelled' })")
    assert items not in column(code, "batch_jobs", "status")["writes"]
    assert jobs not in column(code, "batch_items", "status")["writes"]
    assert "completed_at" not in code["tables"]["batch_items"]["columns"]


def test_a_column_written_under_an_alias(code):
    # `const { status: nextStatus } = change` and a query builder held in a variable: `items.update(...)`
    write = at(SERVICE, "items.update({ status: nextStatus, tier })")
    assert write in column(code, "batch_items", "status")["writes"]
    assert write in column(code, "batch_items", "tier")["writes"]
    assert "nextStatus" not in code["tables"]["batch_items"]["columns"]


def test_a_dynamic_table_name_is_reported_not_guessed(code):
    assert code["dynamic_tables"] == [{"expression": "table", "evidence": at("src/lib/utils/db.ts", "from(table)"),
                                       "operation": "update", "columns": ["updated_at"]}]
    assert all("db.ts" not in w for t in code["tables"].values() for c in t["columns"].values() for w in c["writes"])


def test_another_tables_values_and_every_value_carries_evidence(code):
    conversations = code["tables"]["conversations"]
    assert conversations["source"] == STORAGE
    assert conversations["columns"]["status"]["evidence"] == {"pending_review": [at(STORAGE, "'pending_review'")]}
    assert conversations["columns"]["processing_status"]["values"] == ["completed"]
    for table in code["tables"].values():
        for entry in table["columns"].values():
            assert set(entry["evidence"]) == set(entry["values"])
            assert all(places for places in entry["evidence"].values())
            assert entry["writes"]


def test_yaml_and_json_say_the_same(code):
    extracted = extract_code_contract(str(APP))
    assert yaml.safe_load(extracted.to_yaml()) == json.loads(extracted.to_json()) == code


def test_the_fingerprint_moves_with_what_the_code_writes(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    before = extract_code_contract(str(app)).fingerprint()
    assert extract_code_contract(str(app)).fingerprint() == before
    (app / "README.md").write_text("not code")
    assert extract_code_contract(str(app)).fingerprint() == before
    service = app / SERVICE
    service.write_text(service.read_text().replace("update({ status: 'paused' })", "update({ status: 'on_hold' })"))
    after = extract_code_contract(str(app))
    assert after.fingerprint() != before
    assert after.column("batch_jobs", "status").values["on_hold"] == {at(SERVICE, "'on_hold'", app)}


def test_bad_source_folders(tmp_path):
    with pytest.raises(SourceError, match="not a directory"):
        extract_code_contract(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("no code")
    with pytest.raises(SourceError, match=r"no \.ts, \.tsx, \.js"):
        extract_code_contract(str(tmp_path))
