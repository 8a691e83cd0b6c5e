"""The shape of the package: imports follow the layer order, nothing imports the CLI or the texts' layer,
importing the package changes nothing, and modules and functions stay readable (docs/architecture.md)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spacetime"

#: each part of the package and its place in the layer order: a module imports only from lower places
#: (or from its own part); parts on one place do not import each other
LEVELS = {
    "checks": 0, "io": 0, "measure": 0,
    "config": 1,
    "ops": 2,
    "layers": 3,
    "blocks": 4,
    "models": 5, "data": 5,
    "training": 6, "parallel": 6,
    "diffusion": 7, "classify": 7, "bench": 7,
    "compat": 8, "interop": 8,
    "cli": 9, "__main__": 10,
}
#: functions longer than 60 lines or modules longer than 400, each with the reason it stays so
LONG_ALLOWED: dict[str, str] = {}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        yield path, parts[:-1] if parts[-1] == "__init__" else parts, parts[-1] == "__init__"


def _imports(path: Path, name: tuple[str, ...], is_package: bool):
    """Every ``spacetime`` module ``path`` imports (top level or inside functions), as name tuples."""
    package = name if is_package else name[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [tuple(a.name.split(".")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            module = base + tuple((node.module or "").split(".")) if node.module else base
            targets = [module]
        else:
            continue
        for target in targets:
            if target and target[0] == "spacetime":
                yield node.lineno, target


def test_imports_follow_the_layer_order():
    wrong = []
    for path, name, is_package in _modules():
        if len(name) < 2:  # the package root re-exports the public names of every layer
            continue
        own = name[1]
        assert own in LEVELS, f"{path}: a part of the package without a place in LEVELS"
        for line, target in _imports(path, name, is_package):
            if len(target) < 2 or target[1] == own:
                continue
            if LEVELS[target[1]] >= LEVELS[own]:
                wrong.append(f"{path.relative_to(SRC)}:{line} ({own}, place {LEVELS[own]}) imports "
                             f"{'.'.join(target)} (place {LEVELS[target[1]]})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_importing_the_package_sets_nothing_and_loads_no_torch():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, sys, spacetime; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "False"]


def test_the_package_root_exports_what_it_lists():
    code = "import spacetime; missing = [n for n in spacetime.__all__ if not hasattr(spacetime, n)]; print(missing)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("limit_function, limit_module", [(60, 400)])
def test_functions_and_modules_stay_short(limit_function, limit_module):
    long = []
    for path, _, _ in _modules():
        source = path.read_text()
        where = str(path.relative_to(SRC))
        if len(source.splitlines()) > limit_module and where not in LONG_ALLOWED:
            long.append(f"{where}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > limit_function and f"{where}:{node.name}" not in LONG_ALLOWED:
                    long.append(f"{where}:{node.lineno} {node.name}(): {size} lines")
    assert not long, "over the house limits (docs/architecture.md):\n" + "\n".join(long)
