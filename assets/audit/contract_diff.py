"""Where the hand-kept contract and the app's code disagree about what is written."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from assets.audit.code_contract import CodeContract, ordered, place
from assets.audit.contract import Contract


@dataclass(frozen=True)
class Disagreement:
    table: str
    column: str | None
    kind: str  # table_not_in_contract, column_not_in_contract, value_not_in_contract, value_not_written
    value: str | None
    evidence: list[str]  # where the code writes it; for value_not_written, the column's writes (if any)

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        at = f" ({', '.join(self.evidence)})" if self.evidence else ""
        return {
            "table_not_in_contract": f"{where}: the code writes this table, the contract lacks it{at}",
            "column_not_in_contract": f"{where}: the code writes this column, the contract lacks it{at}",
            "value_not_in_contract": f"{where}: the code writes {self.value!r}, the contract lacks it{at}",
            "value_not_written": f"{where}: the contract lists {self.value!r}, no code writes it{at}",
        }[self.kind]


def diff_contract(contract: Contract, code: CodeContract) -> list[Disagreement]:
    """Disagreements only: a column the code cannot bound is never said to lack a contract value."""
    found = []
    named = {t.name: t for t in contract.tables}
    for table_name, writes in sorted(code.tables.items()):
        table = named.get(table_name)
        if table is None:
            found.append(Disagreement(table_name, None, "table_not_in_contract", None, ordered(writes.writes)))
            continue
        columns = {c.name: c for c in table.columns}
        for column_name, column in sorted(writes.columns.items()):
            if column_name not in columns:
                found.append(Disagreement(table_name, column_name, "column_not_in_contract", None,
                                          ordered(column.writes)))
        for spec in table.columns:
            if spec.values is None:
                continue
            column = writes.columns.get(spec.name)
            code_values = column.values if column else {}
            for value in sorted(set(code_values) - set(spec.values)):
                found.append(Disagreement(table_name, spec.name, "value_not_in_contract", value,
                                          ordered(code_values[value])))
            if column is None or not column.unbounded:
                for value in (v for v in spec.values if v not in code_values):
                    found.append(Disagreement(table_name, spec.name, "value_not_written", value,
                                              ordered(column.writes) if column else []))
    return found


def diff_text(disagreements: list[Disagreement], code: CodeContract) -> str:
    lines = [d.describe() for d in disagreements] or ["The contract and the code agree."]
    for table, writes in sorted(code.tables.items()):
        for name, column in sorted(writes.columns.items()):
            if column.unbounded and column.values:
                lines.append(f"note: {table}.{name} also gets values no literal bounds "
                             f"({', '.join(u.at for u in sorted(column.unbounded, key=lambda u: place(u.at)))})")
    for dynamic in code.dynamic_tables:
        lines.append(f"note: {dynamic['operation']} on a table named at run time ({dynamic['expression']}) at "
                     f"{dynamic['evidence']}: not compared")
    return "\n".join(lines)


def diff_json(disagreements: list[Disagreement]) -> list[dict]:
    return [asdict(d) for d in disagreements]
