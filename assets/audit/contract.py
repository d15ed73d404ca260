"""The contract: what the application code reads and writes, loaded from a reviewable YAML file."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from assets.one_line import one_line

DEFAULT_CONTRACT = files("contracts") / "bulkgen.yaml"

# text_list: a list of text as the code sees it, whether the column holds a JSON array or a text[]/varchar[].
TYPE_FAMILIES = ("text", "integer", "numeric", "boolean", "uuid", "json", "text_list", "timestamp", "date")
_COLUMN_KEYS = {"type", "nullable", "optional", "values", "owner"}
_TABLE_KEYS = {"source", "columns"}
_TOP_KEYS = {"schema", "scope", "tables"}


class ContractError(ValueError):
    """The contract file is malformed; the message names the file, the entry and the problem."""


@dataclass(frozen=True)
class ColumnContract:
    name: str
    type: str
    nullable: bool = False
    optional: bool = False
    values: tuple[str, ...] | None = None
    owner: bool = False  # holds the run's owner, the app user the rows are made for


@dataclass(frozen=True)
class TableContract:
    name: str
    source: str
    columns: tuple[ColumnContract, ...]

    def column(self, name: str) -> ColumnContract:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Contract:
    path: str
    schema: str
    scope: tuple[str, ...]
    tables: tuple[TableContract, ...]

    def table(self, name: str) -> TableContract:
        return next(t for t in self.tables if t.name == name)

    def value_set_columns(self) -> list[tuple[TableContract, ColumnContract]]:
        """Every (table, column) whose contract names the exact values the code writes."""
        return [(t, c) for t in self.tables for c in t.columns if c.values is not None]

    def owner_columns(self) -> list[tuple[TableContract, ColumnContract]]:
        """Every (table, column) generation writes the run's owner into."""
        return [(t, c) for t in self.tables for c in t.columns if c.owner]


def load_contract(path: str | Path = DEFAULT_CONTRACT) -> Contract:
    """Read and validate a contract file; raise ContractError naming what is wrong and where."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContractError(f"{path}: cannot read contract: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise ContractError(f"{path}: not UTF-8 text: byte {byte:#04x} at offset {exc.start}") from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_contract(raw, str(path))


def parse_contract(raw: object, path: str) -> Contract:
    """Validate an already-parsed contract document (`path` only names it in errors)."""

    def fail(entry: str, problem: str) -> ContractError:
        return ContractError(one_line(f"{path}: {entry}: {problem}"))  # names from the document, quoted as they are

    if not isinstance(raw, dict):
        raise fail("<top level>", "expected a mapping with 'tables'")
    _reject_unknown(raw, _TOP_KEYS, "<top level>", fail)
    schema = raw.get("schema", "public")
    if not _is_name(schema):
        raise fail("schema", f"expected a non-empty name, got {schema!r}")
    scope = raw.get("scope", [])
    if not isinstance(scope, list) or not all(_is_name(p) for p in scope):
        raise fail("scope", "expected a list of LIKE patterns")
    tables = raw.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise fail("tables", "expected a non-empty mapping of table name to table entry")
    return Contract(
        path=path,
        schema=schema,
        scope=tuple(scope),
        tables=tuple(_parse_table(name, entry, fail) for name, entry in tables.items()),
    )


def _parse_table(name: object, entry: object, fail) -> TableContract:
    where = f"tables.{name}"
    if not _is_name(name):
        raise fail(where, "table name must be a non-empty string")
    if not isinstance(entry, dict):
        raise fail(where, "expected a mapping with 'columns'")
    _reject_unknown(entry, _TABLE_KEYS, where, fail)
    columns = entry.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise fail(f"{where}.columns", "expected a non-empty mapping of column name to column entry")
    return TableContract(
        name=name,
        source=str(entry.get("source", "")),
        columns=tuple(_parse_column(f"{where}.columns.{col}", col, spec, fail) for col, spec in columns.items()),
    )


def _parse_column(where: str, name: object, spec: object, fail) -> ColumnContract:
    if not _is_name(name):
        raise fail(where, "column name must be a non-empty string")
    if not isinstance(spec, dict):
        raise fail(where, "expected a mapping like {type: text}")
    _reject_unknown(spec, _COLUMN_KEYS, where, fail)
    family = spec.get("type")
    if family not in TYPE_FAMILIES:
        raise fail(f"{where}.type", f"expected one of {', '.join(TYPE_FAMILIES)}, got {family!r}")
    for flag in ("nullable", "optional", "owner"):
        if not isinstance(spec.get(flag, False), bool):
            raise fail(f"{where}.{flag}", f"expected true or false, got {spec[flag]!r}")
    values = spec.get("values")
    if values is not None:
        if family != "text":
            raise fail(f"{where}.values", f"value sets are for text columns, this one is {family}")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise fail(f"{where}.values", "expected a non-empty list of strings")
        if len(set(values)) != len(values):
            raise fail(f"{where}.values", "lists a value twice")
        values = tuple(values)
    if spec.get("owner") and family != "uuid":
        raise fail(f"{where}.owner", f"an owner column holds a user id (uuid), this one is {family}")
    return ColumnContract(
        name=name,
        type=family,
        nullable=spec.get("nullable", False),
        optional=spec.get("optional", False),
        values=values,
        owner=spec.get("owner", False),
    )


def _reject_unknown(mapping: dict, allowed: set[str], where: str, fail) -> None:
    unknown = sorted(map(str, set(mapping) - allowed))
    if unknown:
        raise fail(where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\x00" not in value


CONTRACT: Contract = load_contract()  # the contract the code location runs by, loaded once for every asset and command
