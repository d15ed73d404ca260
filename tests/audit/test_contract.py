"""The contract loader accepts the real contract and names file, entry and problem for bad ones."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.audit.contract import DEFAULT_CONTRACT, TYPE_FAMILIES, ContractError, load_contract, parse_contract


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


_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
_documents = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)


@given(st.dictionaries(st.sampled_from(["schema", "scope", "tables", "extra"]), _documents, max_size=4))
@settings(max_examples=300, deadline=None)
def test_any_document_loads_or_fails_with_a_contract_error(document):
    """Whatever the YAML holds, the loader returns a contract or says what is wrong: nothing else."""
    try:
        contract = parse_contract(document, "fuzz.yaml")
    except ContractError as error:
        assert str(error).startswith("fuzz.yaml: ") and "\n" not in str(error)
    else:
        assert contract.tables and all(c.type in TYPE_FAMILIES for t in contract.tables for c in t.columns)


@given(st.text(min_size=1, max_size=40), st.lists(st.text(max_size=20), min_size=1, max_size=6, unique=True))
@settings(max_examples=200, deadline=None)
def test_value_sets_round_trip(column, values):
    document = {"tables": {"t": {"columns": {column: {"type": "text", "values": values}}}}}
    try:
        contract = parse_contract(document, "fuzz.yaml")
    except ContractError as error:  # only names that are blank or hold NUL are refused
        assert not column.strip() or "\x00" in column, error
    else:
        assert contract.table("t").column(column).values == tuple(values)
