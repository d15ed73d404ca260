"""Code we did not write: shapes beyond the fixture app, hostile input, and cycles, each on a tree of its own."""

from pathlib import Path

from assets.audit.code_contract import extract_code_contract


def write(root: Path, files: dict[str, str]) -> str:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source if isinstance(source, bytes) else source.encode())
    return str(root)


def columns(code, table="t"):
    return {name: (sorted(c.values), sorted(u.expression for u in c.unbounded))
            for name, c in code.tables[table].columns.items()}


def test_computed_keys_reassignments_spreads_and_assertions(tmp_path):
    code = extract_code_contract(write(tmp_path, {
        "types.ts": "export type Mode = 'fast' | 'slow';\nexport const KEY = 'mode';\n",
        "re.ts": "export { KEY as MODE_KEY, type Mode } from './types';\n",
        "w.ts": """import { MODE_KEY, Mode } from './re';
let level = 'low';
if (urgent) level = 'high';
const base = { origin: 'app' };
export function save(db, raw: string) {
  return db.from('t').upsert([{ [MODE_KEY]: raw as Mode, level, ...base }, { level: 'mid', ...extra }]);
}
""",
    }))
    assert columns(code) == {"mode": (["fast", "slow"], []), "level": (["high", "low", "mid"], []),
                             "origin": (["app"], [])}
    assert [u.expression for u in code.tables["t"].unbounded] == ["extra"]  # a spread it cannot see into


def test_hostile_files_and_cycles_do_not_stop_it(tmp_path):
    code = extract_code_contract(write(tmp_path, {
        "a.ts": """type Node = { status: Node['status'] | 'x'; child: Node };
interface Loop extends Loop { status: 'l' }
function again(s: string): string { return again(s); }
function relay(status: string) { return db.from('t').update({ status, next: again(status) }); }
relay(relay(status));
const broken = db.from('t').update(;
db.from('t').update(makePayload());
""",
        "b.js": b"\xff\xfe\x00 not text",
        "c.tsx": "",
        "d.js": "export const C = () => <div onClick={() => db.from('t').insert({ status: 'clicked' })} />;\n",
    }))
    status, _ = columns(code)["status"]
    assert status == ["clicked"]
    assert [u.expression for u in code.tables["t"].unbounded] == ["makePayload()"]
    assert code.files == 4


def test_a_builder_from_a_parameter_and_a_table_from_a_parameter(tmp_path):
    code = extract_code_contract(write(tmp_path, {
        "q.ts": """export const apply = (query, value: 'on' | 'off') => query.update({ state: value });
export function write(db, table: 'a' | 'b') { return db.from(table).insert({ state: 'on' }); }
""",
    }))
    assert code.tables == {}  # neither names its table: one is reported, the other is not a Supabase write seen
    assert [(d["expression"], d["columns"]) for d in code.dynamic_tables] == [("table", ["state"])]
