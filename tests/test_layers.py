"""kit's packages import one way: each layer only from the layers below it, and nothing in a cycle.

The order is the architecture of the README and ``../shared/DESIGN.md``: data flows from prices to
features, models, training, portfolios, statistics, storage, the live loop, execution backends and
reports; ``cli`` sits on top. Imports are read with ``ast`` (module-level and inside functions).
"""

import ast
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent / "kit"

LAYERS = [
    ("kit.paths", "kit.conventions", "kit.base"),
    ("kit.data",),
    ("kit.features",),
    ("kit.models",),
    ("kit.training",),
    ("kit.portfolio",),
    ("kit.analytics",),
    ("kit.store",),
    ("kit.live",),
    ("kit.exec",),
    ("kit.reports",),
    ("kit.cli", "kit.__main__", "kit"),
]


def layer_of(module: str) -> int:
    best = None
    for i, names in enumerate(LAYERS):
        for n in names:
            if module == n or module.startswith(n + "."):
                if best is None or len(n) > len(best[1]):
                    best = (i, n)
    if best is None:
        raise AssertionError(f"module {module} belongs to no layer: add its package to LAYERS")
    return best[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(KIT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    modules = {module_name(p) for p in KIT.rglob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("kit"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith("kit"):
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule, not the package's other names
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    resolved = set()
    for t in out:
        while t and t not in modules:
            t = t.rsplit(".", 1)[0] if "." in t else ""
        if t and t != mod:
            resolved.add(t)
    return resolved


def edges() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in KIT.rglob("*.py")}


def upward_imports(graph) -> list[str]:
    bad = []
    for mod, targets in graph.items():
        for t in targets:
            if layer_of(t) > layer_of(mod):
                bad.append(f"{mod} (layer {layer_of(mod)}) imports {t} (layer {layer_of(t)})")
    return sorted(bad)


def cycles(graph) -> list[list[str]]:
    found, state = [], {}

    def visit(v, stack):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w.startswith(v + ".") or v.startswith(w + "."):  # a package and its own submodules
                continue
            if state.get(w) == 1:
                found.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w, stack)
        stack.pop()
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v, [])
    return found


def test_every_module_belongs_to_a_layer():
    for mod in edges():
        layer_of(mod)


def test_no_module_imports_from_a_layer_above_it():
    assert upward_imports(edges()) == []


def test_no_import_cycles_between_modules():
    assert cycles(edges()) == []


def test_the_check_catches_an_upward_import_and_a_cycle():
    graph = edges()
    graph["kit.features.kernels"] = graph["kit.features.kernels"] | {"kit.reports.runs"}
    assert any("kit.features.kernels" in b for b in upward_imports(graph))
    graph["kit.base.jsonable"] = {"kit.base.atomic"}
    graph["kit.base.atomic"] = {"kit.base.jsonable"}
    assert cycles(graph)


@pytest.mark.parametrize("package", ["data", "features", "models", "training", "portfolio", "analytics", "store", "live", "reports"])
def test_every_package_has_a_docstring_naming_its_modules(package):
    doc = ast.get_docstring(ast.parse((KIT / package / "__init__.py").read_text()))
    assert doc, package
    for mod in sorted(p.stem for p in (KIT / package).glob("*.py") if p.stem != "__init__"):
        assert f":mod:`.{mod}`" in doc, f"kit/{package}/__init__.py does not name {mod}"
