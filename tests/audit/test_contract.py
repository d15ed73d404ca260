"""The contract loader accepts the real contract and names file, entry and problem for bad ones."""

import pytest

from assets.audit.contract import DEFAULT_CONTRACT, ContractError, load_contract


def test_the_project_contract_loads_with_the_code_values():
    contract = load_contract()
    assert contract.table("batch_jobs").column("status").values == (
        "queued", "processing", "paused", "completed", "failed", "cancelled",
    )
    assert contract.table("batch_items").column("status").values == (
        "queued", "processing", "completed", "failed", "cancelled",
    )
    assert contract.table("batch_jobs").column("error_handling").values == ("stop", "continue")
    assert contract.table("batch_jobs").column("priority").values == ("low", "normal", "high")
    for table in ("batch_items", "conversations"):
        assert contract.table(table).column("tier").values == ("template", "scenario", "edge_case")
    seed_columns = {  # seed audit, sections 1.1 and 2.1
        "batch_jobs": "id name job_type status priority total_items completed_items failed_items successful_items "
        "tier shared_parameters concurrent_processing error_handling created_by started_at completed_at "
        "estimated_time_remaining created_at updated_at",
        "batch_items": "id batch_job_id position topic tier parameters status progress estimated_time "
        "conversation_id error_message created_at updated_at",
    }
    for table, names in seed_columns.items():
        assert [c.name for c in contract.table(table).columns] == names.split()


@pytest.mark.parametrize(
    "text, entry, problem",
    [
        ("tables: [1, 2]", "tables", "non-empty mapping"),
        ("tables:\n  t:\n    columns:\n      s: {type: txt}", "tables.t.columns.s.type", "expected one of"),
        ("tables:\n  t:\n    columns:\n      s: {type: text, values: []}", "tables.t.columns.s.values", "non-empty list"),
        ("tables:\n  t:\n    columns:\n      s: {type: text, values: [a, a]}", "tables.t.columns.s.values", "twice"),
        ("tables:\n  t:\n    columns:\n      n: {type: integer, values: [a]}", "tables.t.columns.n.values", "text"),
        ("tables:\n  t:\n    columns:\n      s: {type: text, nulable: true}", "tables.t.columns.s", "unknown key(s) nulable"),
        ("tables:\n  t:\n    colums: {}", "tables.t", "unknown key(s) colums"),
        ("tables:\n  t:\n    columns:\n      s: {type: text, nullable: maybe}", "tables.t.columns.s.nullable", "true or false"),
        ("tables: {t: {columns: {s: {type: text}}}}\nscope: 3", "scope", "LIKE patterns"),
        ("- just\n- a list", "<top level>", "mapping"),
        ("tables: {t: [", "not valid YAML", ""),
    ],
)
def test_malformed_contract_names_file_entry_and_problem(tmp_path, text, entry, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ContractError) as error:
        load_contract(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert entry in message and problem in message
    assert "\n" not in message


def test_missing_contract_file(tmp_path):
    with pytest.raises(ContractError, match="cannot read contract"):
        load_contract(tmp_path / "nope.yaml")


def test_default_contract_is_in_the_repository():
    assert DEFAULT_CONTRACT.is_file()
