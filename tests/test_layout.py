"""The package's shape: layers as subpackages, imports one way, small modules and functions, one litellm importer."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import router_ml

PACKAGE = Path(router_ml.__file__).parent
MODULES = {
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted(PACKAGE.rglob("*.py"))
}


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports (at module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else str(node.module)
            found |= {t for t in (target, *(f"{target}.{a.name}" for a in node.names)) if t in MODULES}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
    found.discard(name)
    if path.name == "__init__.py":  # a package re-exporting its own children is not a loop
        found = {m for m in found if not m.startswith(f"{name}.")}
    return found


def test_the_layers_are_subpackages():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert {"cli", "embed", "online", "serving", "testing"} <= set(subpackages)


def test_no_two_modules_import_each_other():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["router_ml.online.dispatch"]  # the walk does find imports
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the loop


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if source.count("\n") > 400:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long


def test_litellm_is_imported_in_one_module_and_never_at_package_import():
    importers = [
        name
        for name, path in MODULES.items()
        if "litellm" in {m.split(".")[0] for m in _external_imports(path)}
        or '"litellm"' in path.read_text(encoding="utf-8")
    ]
    assert importers == ["router_ml.online.llm"]
    code = (
        "import sys, router_ml, router_ml.cli, router_ml.online.dispatch, router_ml.serving.app;"
        "print(sorted(m for m in ('litellm', 'torch') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"  # importing any layer loads neither litellm nor torch


def _external_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


def test_every_relative_import_names_a_module_of_the_package():
    unresolved = []
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*parts, node.module] if node.module else parts)
                if target not in MODULES:
                    unresolved.append(f"{name}:{node.lineno} imports {target}")
    assert not unresolved


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one character added, dropped or changed (``route`` / ``routes``)."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    short, long = sorted((a, b), key=len)
    for i, (x, y) in enumerate(zip(short, long, strict=False)):
        if x != y:
            rest = short[i + 1 :] if len(short) == len(long) else short[i:]
            return rest == long[i + 1 :]
    return True


def test_sibling_modules_have_names_that_cannot_be_confused():
    by_package: dict[Path, list[str]] = {}
    for path in MODULES.values():
        by_package.setdefault(path.parent, []).append(path.stem)
    confusable = [
        f"{folder.name}/{a}.py ~ {b}.py"
        for folder, names in by_package.items()
        for i, a in enumerate(sorted(names))
        for b in sorted(names)[i + 1 :]
        if _one_edit_apart(a, b)
    ]
    assert _one_edit_apart("route", "routes") and _one_edit_apart("route", "router")  # the check itself can fail
    assert not confusable
