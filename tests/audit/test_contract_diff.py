"""`bulkgen contract diff`: where the hand-kept contract and the fixture app's code disagree."""

from pathlib import Path

import yaml

from assets.audit.code_contract import extract_code_contract
from assets.audit.contract import load_contract, parse_contract
from assets.audit.contract_diff import diff_contract
from pipelines.cli import main
from tests.audit.test_code_contract import APP, SERVICE, STORAGE, TYPES, at

ITEMS_CANCELLED = at(SERVICE, "update({ status: 'cancelled' })")
CONTRACT_PATH = Path(__file__).resolve().parents[2] / "contracts" / "bulkgen.yaml"


def test_the_project_contract_against_the_fixture_app():
    found = {(d.table, d.column, d.kind, d.value): d.evidence
             for d in diff_contract(load_contract(CONTRACT_PATH), extract_code_contract(str(APP)))}
    row = at(STORAGE, "upsert(row")
    assert found == {
        ("conversations", "content_hash", "column_not_in_contract", None): [row],
        **{("conversations", "processing_status", "value_not_written", v): [row]
           for v in ("pending", "processing", "failed")},
        **{("conversations", "tier", "value_not_written", v): [] for v in ("template", "scenario", "edge_case")},
    }


def agreeing(tmp_path, **changes) -> Path:
    """The project contract with the conversations the fixture app writes, changed by `changes`."""
    raw = yaml.safe_load(CONTRACT_PATH.read_text())
    columns = raw["tables"]["conversations"]["columns"]
    columns["status"]["values"] = ["pending_review"]
    columns["tier"].pop("values")
    columns.update({"processing_status": {"type": "text"}, "storage_bucket": {"type": "text"},
                    "content_hash": {"type": "text"}})
    for dotted, values in changes.items():
        table, column = dotted.split("__")
        raw["tables"][table]["columns"][column]["values"] = values
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    parse_contract(raw, str(path))
    return path


def test_agreement_exits_0(tmp_path, capsys):
    assert main(["contract", "diff", "--source", str(APP), "--contract", str(agreeing(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The contract and the code agree.")
    assert "note: update on a table named at run time (table)" in out  # reported, not compared


def test_a_missing_and_an_unwritten_value_exit_1(tmp_path, capsys):
    path = agreeing(tmp_path, batch_items__status=["queued", "processing", "completed", "failed", "archived"])
    assert main(["contract", "diff", "--source", str(APP), "--contract", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "batch_items.status: the code writes 'cancelled', the contract lacks it "
        f"({ITEMS_CANCELLED}, {at(TYPES, 'export const ITEM_STATUSES')})",
        "batch_items.status: the contract lists 'archived', no code writes it (" + ", ".join(
            extract_code_contract(str(APP)).as_dict()["tables"]["batch_items"]["columns"]["status"]["writes"]) + ")",
    ]


def test_an_unbounded_column_never_lacks_a_contract_value(tmp_path, capsys):
    # batch_jobs.priority is partly unbounded (an API request's body): 'low' may be written, so no disagreement
    path = agreeing(tmp_path)
    assert main(["contract", "diff", "--source", str(APP), "--contract", str(path), "--format", "json"]) == 0
    assert "batch_jobs.priority" not in capsys.readouterr().out


def test_extract_prints_the_code_contract(capsys):
    assert main(["contract", "extract", "--source", str(APP), "--format", "json"]) == 0
    assert '"batch_items"' in capsys.readouterr().out
    assert main(["contract", "extract", "--source", str(APP)]) == 0
    extracted = yaml.safe_load(capsys.readouterr().out)
    assert extracted["tables"]["conversations"]["columns"]["status"]["values"] == ["pending_review"]


def test_extract_on_a_file_is_a_one_line_error(capsys):
    assert main(["contract", "extract", "--source", str(CONTRACT_PATH)]) == 2
    assert capsys.readouterr().err == f"bulkgen: error: --source {CONTRACT_PATH}: not a directory\n"
