"""Every third-party module the package, its tests or its benchmarks import is declared in
pyproject.toml: the package's in the main dependencies, the tests' and benchmarks' in the main
ones or the `dev` extra. Imports inside functions (lazy imports) count too."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cycl_bench"
# test-local helper modules, imported by name from tests/
LOCAL = {path.stem for path in (ROOT / "tests").glob("*.py")}
STDLIB = sys.stdlib_module_names | {"tomllib"}  # tomllib from 3.11 on, tomli before


def imported_names(folder: Path) -> dict[str, str]:
    """Top-level name of every absolute import under `folder` -> one file that imports it."""
    names = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                names.setdefault(module.split(".")[0], str(path.relative_to(folder.parent)))
    return names


def third_party(names: dict[str, str]) -> dict[str, str]:
    return {
        name: where
        for name, where in names.items()
        if name not in STDLIB and name != PACKAGE and name not in LOCAL
    }


def requirement_name(requirement: str) -> str:
    """'brevitas>=0.11,<0.14' -> 'brevitas', normalized as PEP 503 says."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    main = {requirement_name(r) for r in project["dependencies"]}
    dev = {requirement_name(r) for r in project["optional-dependencies"]["dev"]}
    return main, dev


def undeclared(names: dict[str, str], allowed: set[str]) -> list[str]:
    distributions = packages_distributions()
    problems = []
    for name, where in sorted(third_party(names).items()):
        # a module not installed here (tomli on 3.11+) is looked for under its own name
        candidates = {requirement_name(d) for d in distributions.get(name, [name])}
        if not candidates & allowed:
            problems.append(f"{name} (imported by {where}) comes from {sorted(candidates)}")
    return problems


def test_the_walk_finds_lazy_and_top_level_imports(tmp_path):
    (tmp_path / "module.py").write_text(
        "import os.path\nimport numpy as np\nfrom . import sibling\n"
        "def later():\n    from PIL import Image\n    import yaml\n"
    )
    names = imported_names(tmp_path)
    assert set(names) == {"os", "numpy", "PIL", "yaml"}  # the relative import is the package's
    assert set(third_party(names)) == {"numpy", "PIL", "yaml"}
    # PIL is installed by the distribution pillow, yaml by pyyaml
    assert undeclared(third_party(names), {"numpy", "pillow", "pyyaml"}) == []
    assert undeclared({"yaml": "module.py"}, {"numpy"}) == [
        "yaml (imported by module.py) comes from ['pyyaml']"
    ]


def test_every_package_import_is_a_main_dependency():
    main, _ = declared()
    assert undeclared(imported_names(ROOT / PACKAGE), main) == []


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_every_test_and_benchmark_import_is_declared(folder):
    main, dev = declared()
    assert undeclared(imported_names(ROOT / folder), main | dev) == []
