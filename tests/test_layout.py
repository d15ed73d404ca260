"""The layers import one way, pipelines → assets → resources, so a lower layer never needs a higher one."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["pipelines", "assets", "resources"]  # each may import only the layers after it


def _imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_no_layer_above_it(layer):
    above = set(LAYERS[:LAYERS.index(layer)])
    upward = {str(path.relative_to(ROOT)): sorted(_imported_packages(path) & above)
              for path in sorted((ROOT / layer).rglob("*.py"))}
    assert {path: names for path, names in upward.items() if names} == {}
