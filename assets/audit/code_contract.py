"""The contract read from the app's own code: every Supabase write, the values each column gets, with evidence.

A write is `.from('<table>')` ... `.insert(...)`, `.update(...)` or `.upsert(...)` on a query
builder (Supabase Storage's `.storage.from(bucket)` is a bucket, not a table). The hand-kept
contract can drift from the code; this is what the code itself says, on every run.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

import tree_sitter as ts
import yaml

from assets.audit.typescript_source import (
    Located,
    Resolver,
    Shape,
    SourceFile,
    SourceTree,
    Unbounded,
    text,
)

WRITE_METHODS = ("insert", "update", "upsert")
_WRITES = "(call_expression function: (member_expression object: (_) @builder property: (property_identifier) @method)" \
          " arguments: (arguments) @args)"
_THROUGH = {"await_expression", "parenthesized_expression", "non_null_expression", "as_expression"}


@dataclass
class ColumnWrites:
    values: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # value -> where spelled
    unbounded: set[Unbounded] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)  # the write calls that set this column

    @property
    def bounded(self) -> bool:
        """The code's values are all it can write here (and it writes some)."""
        return bool(self.values) and not self.unbounded

    def as_dict(self) -> dict:
        return {
            "values": sorted(self.values),
            "evidence": {v: ordered(self.values[v]) for v in sorted(self.values)},
            "unbounded": [_unbounded(u) for u in sorted(self.unbounded, key=lambda u: (place(u.at), u.expression))],
            "writes": ordered(self.writes),
        }


@dataclass
class TableWrites:
    columns: dict[str, ColumnWrites] = field(default_factory=lambda: defaultdict(ColumnWrites))
    writes: set[str] = field(default_factory=set)
    unbounded: set[Unbounded] = field(default_factory=set)  # payloads it cannot see into

    def as_dict(self) -> dict:
        files = sorted({w.rsplit(":", 1)[0] for w in self.writes})
        entry = {"source": ", ".join(files),
                 "columns": {name: self.columns[name].as_dict() for name in sorted(self.columns)}}
        if self.unbounded:
            entry["unbounded"] = [_unbounded(u) for u in sorted(self.unbounded, key=lambda u: place(u.at))]
        return entry


@dataclass
class CodeContract:
    source: str
    files: int
    tables: dict[str, TableWrites]
    dynamic_tables: list[dict]  # writes to a table the code names at run time: reported, never guessed

    def column(self, table: str, column: str) -> ColumnWrites | None:
        found = self.tables.get(table)
        return found.columns.get(column) if found else None

    def as_dict(self) -> dict:
        return {"tables": {name: self.tables[name].as_dict() for name in sorted(self.tables)},
                "dynamic_tables": self.dynamic_tables}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.as_dict(), sort_keys=False, width=120)

    def fingerprint(self) -> str:
        """Changes exactly when what the code writes (or where) changes: the deploy sensor's sign of a code deploy."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def extract_code_contract(source: str) -> CodeContract:
    """Every table write under the folder `source`; raises SourceError when it holds no app."""
    tree = SourceTree(source)
    values, static = Resolver(tree), Resolver(tree, through_parameters=False)
    tables: dict[str, TableWrites] = defaultdict(TableWrites)
    dynamic = []
    for file, captures in tree.query(_WRITES):
        method = captures["method"][0]
        if text(method) not in WRITE_METHODS:
            continue
        table = _table_argument(captures["builder"][0], file, static)
        if table is None:
            continue  # not a Supabase table builder: a hash's .update(), a Map, a bucket
        args = [a for a in captures["args"][0].named_children if a.type != "comment"]
        where = file.at(method)
        names = static.items(table, file)
        payload = values.items(args[0], file) if args else []
        if not names or not all(isinstance(n, Located) for n in names):
            dynamic.append({"expression": " ".join(text(table).split()), "evidence": where,
                            "operation": text(method), "columns": sorted(_columns(payload))})
            continue
        for name in dict.fromkeys(n.value for n in names):
            _record(tables[name], payload, where)
    return CodeContract(source=str(source), files=len(tree.files), tables=dict(tables),
                        dynamic_tables=sorted(dynamic, key=lambda d: place(d["evidence"])))


def _record(table: TableWrites, payload: list, where: str) -> None:
    table.writes.add(where)
    for item in payload:
        if isinstance(item, Unbounded):
            table.unbounded.add(item)
        elif isinstance(item, Shape):
            table.unbounded.update(item.opaque)
            for name, resolve in item.props.items():
                column = table.columns[name]
                column.writes.add(where)
                for value in resolve():
                    if isinstance(value, Located):
                        column.values[value.value].add(value.at)
                    elif isinstance(value, Unbounded):
                        column.unbounded.add(value)
                    # a Shape is a JSON object, not a text value


def _columns(payload: list) -> set[str]:
    return {name for item in payload if isinstance(item, Shape) for name in item.props}


def _table_argument(builder: ts.Node, file: SourceFile, resolver: Resolver) -> ts.Node | None:
    """The argument of the `.from(...)` this builder chain starts from, following a builder held in a variable."""
    node, hops = builder, 0
    while hops < 20:
        hops += 1
        if node.type in _THROUGH and node.named_children:
            node = node.named_children[0]
        elif node.type == "call_expression":
            callee = node.child_by_field_name("function")
            if callee.type != "member_expression":
                return None
            target = callee.child_by_field_name("object")
            if text(callee.child_by_field_name("property")) == "from":
                if target.type == "member_expression" and text(target.child_by_field_name("property")) == "storage":
                    return None
                args = [a for a in node.child_by_field_name("arguments").named_children if a.type != "comment"]
                return args[0] if args else None
            node = target
        elif node.type == "member_expression":
            node = node.child_by_field_name("object")
        elif node.type == "identifier":
            binding = resolver.lookup(text(node), node, file, {"var"})
            init = binding.node.child_by_field_name("value") if binding else None
            if init is None:
                return None
            node = init
        else:
            return None
    return None


def _unbounded(u: Unbounded) -> dict:
    return {"expression": u.expression, "evidence": u.at, "reason": u.reason}


def ordered(places: set[str]) -> list[str]:
    """`path:line` places by file, then line as a number."""
    return sorted(places, key=place)


def place(at: str) -> tuple[str, int]:
    path, _, line = at.rpartition(":")
    return (path, int(line)) if line.isdigit() else (at, 0)

