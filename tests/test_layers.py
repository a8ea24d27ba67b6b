"""The package's import graph against the layers the README's Architecture section draws.

Every import of a cycl_bench module (at the top of a file or inside a function, `TYPE_CHECKING`
blocks aside) must point to a lower layer, and no chain of imports between modules may lead
back to where it started. The layers are read from the README, so the picture there and the
code cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cycl_bench"


def readme_layers() -> dict[str, int]:
    """{top-level part of the package: layer number} from the README's `layer N  a, b` lines."""
    text = (ROOT / "README.md").read_text()
    layers = {}
    for number, names in re.findall(r"^layer (\d+)\s+(.+)$", text, flags=re.MULTILINE):
        for name in names.split(","):
            layers[name.strip()] = int(number)
    return layers


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """cycl_bench.data.core50 -> data; cycl_bench -> cycl_bench (the package's own __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports_of(path: Path) -> set[str]:
    """cycl_bench modules `path` imports, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cycl_bench":  # from cycl_bench import config, __version__
                found.update(f"cycl_bench.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    # `from cycl_bench import __version__` is the package itself
    return {name if name in modules else name.rsplit(".", 1)[0] for name in found} & modules


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_readme_places_every_part_of_the_package_in_a_layer(graph):
    parts = {part_of(module) for module in graph}
    assert parts - set(readme_layers()) == set()


def test_every_import_points_to_a_lower_layer(graph):
    layers = readme_layers()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if part_of(target) != part_of(module) and layers[part_of(target)] >= layers[part_of(module)]
    )
    assert upward == []


def test_no_module_imports_itself_through_others(graph):
    """Depth-first search over module imports; a back edge is a cycle."""
    cycles, state = [], defaultdict(int)  # 0 new, 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target == module or module.startswith(f"{target}."):
                continue  # a package's own submodules importing its __init__ is not a cycle
            if state[target] == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif state[target] == 0:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module, [module])
    assert cycles == []


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The checker itself: a file importing the runner from quant/ is reported."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from cycl_bench.runner import prepare\n")
    assert imports_of(source) == {"cycl_bench.runner"}
    layers = readme_layers()
    assert layers["runner"] > layers["quant"]
