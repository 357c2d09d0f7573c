"""The house in rooms: imports run from higher rooms to lower ones only, no module imports itself back, every
room opens with its map, no module passes 400 lines. Read from the source with ``ast``, every import counted
(function-level ones too: a lazy import is still a dependency)."""

import ast
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "mglab"
# what each room may import (besides itself); the facade at the top may import every room
MAY_IMPORT = {
    "core": set(),
    "onnx": {"core"},
    "audio": {"core"},
    "networks": {"onnx", "core"},
    "decoding": {"networks", "onnx", "core"},
    "nano": {"networks", "audio", "core"},
    "inspect": {"decoding", "networks", "onnx", "audio", "core"},
}
ROOMS = set(MAY_IMPORT)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The mglab modules ``path`` imports (``from . import x`` counts as module ``x`` when it is one)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mglab"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mglab"):
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found.update(subs or [target])
    return {m for m in found if m != name}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS) else "top"


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports(p, modules) & modules for p in files}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Each import that goes up or sideways between rooms, as ``importer -> imported``."""
    bad = []
    for src, targets in edges.items():
        a = room(src)
        for dst in sorted(targets):
            b = room(dst)
            if a != b and a != "top" and b not in MAY_IMPORT[a]:
                bad.append(f"{src} ({a}) -> {dst} ({b})")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle between modules (a package's ``__init__`` importing its own modules is not one)."""
    found, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(edges.get(m, ())):
            if n.startswith(m + "."):                      # a package's __init__ reading its own modules
                continue
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return found


def test_imports_run_downward_only():
    assert violations(graph()) == []


def test_no_import_circles():
    assert cycles(graph()) == []


def test_the_checks_catch_what_they_look_for():
    """The checker itself, on planted edges: a lower room importing a higher one, a sideways import, a circle."""
    edges = graph()
    planted = {**edges, "mglab.core.hooks": edges["mglab.core.hooks"] | {"mglab.decoding.loop"},
               "mglab.audio.evaluate": edges["mglab.audio.evaluate"] | {"mglab.nano.corpus"}}
    assert violations(planted) == ["mglab.audio.evaluate (audio) -> mglab.nano.corpus (nano)",
                                   "mglab.core.hooks (core) -> mglab.decoding.loop (decoding)"]
    circle = {**edges, "mglab.onnx.graphfile": edges["mglab.onnx.graphfile"] | {"mglab.onnx.inplace_kv"}}
    assert any(c[0] == c[-1] and "mglab.onnx.graphfile" in c for c in cycles(circle))


def test_every_module_is_in_a_room_or_the_facade():
    top = {m for m in graph() if room(m) == "top"}
    assert top == {"mglab", "mglab.__main__", "mglab.cli", "mglab.generation", "mglab.model", "mglab.masked_model",
                   "mglab.melody_model",
                   "mglab.sweeps", "mglab.version"}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == ROOMS


@pytest.mark.parametrize("name", sorted(ROOMS))
def test_each_room_opens_with_its_map(name):
    """The room's docstring lists every module in it and says which rooms it may import."""
    doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
    assert doc, name
    for p in (PACKAGE / name).glob("*.py"):
        if p.name != "__init__.py":
            assert p.name in doc, (name, p.name)
    allowed = MAY_IMPORT[name]
    if allowed:
        for other in allowed:
            assert f"``{other}``" in doc.split("::")[0], (name, other)
    else:
        assert "Imports nothing from mglab outside" in doc


def test_no_module_passes_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_public_api_is_flat():
    import mglab

    for name in ("load", "MusicGen", "Generation", "sweep", "sweep_cache", "steer", "patch", "patching_map",
                 "logit_lens", "steering_vector", "ActivationCache", "LoadSpec", "Codec", "HookRegistry"):
        assert hasattr(mglab, name), name
    assert set(mglab.__all__) <= set(dir(mglab))
