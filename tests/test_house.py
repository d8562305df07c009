"""The house rules, checked on the source: rooms import only what they may, no import circle,
the scheduler stays I/O-free, and what a worker host runs needs nothing but python3.

Imports are read with `ast` (every `import`, module-level or inside a function), so a lazy
import cannot hide a circle or a forbidden edge.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hstream"

#: Modules a worker host imports: the worker daemon and its agent, every task module, the
#: Hadoop built-ins that run inside tasks, and the shared modules they stand on.
HOST_ROOTS = ("hstream.cluster.worker", "hstream.cluster.hostagent", "hstream.task",
              "hstream.hadoop")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """hstream modules that `name` imports (`from hstream.x import y` counts x.y if a module)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "hstream"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base.split(".")[0] != "hstream":
                continue
            subs = {f"{base}.{a.name}" for a in node.names} & known
            found |= subs or {base}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = all_modules()
    return {name: imports_of(path, name, set(mods)) for name, path in mods.items()}


def room(module: str) -> str:
    if module == "hstream.__main__":  # `python -m hstream` is the command line
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or module in ("hstream.hadoop", "hstream.task",
                                                   "hstream.cluster", "hstream.cli",
                                                   "hstream.runners") else "shared"


def test_the_rooms_exist_with_a_docstring_each() -> None:
    for name in ("hadoop", "task", "cluster", "cli", "runners"):
        init = PACKAGE / name / "__init__.py"
        assert init.exists(), f"hstream/{name}/ is missing"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc, f"hstream/{name}/__init__.py must say what it may import"


def test_no_import_circle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


ALLOWED = {  # room -> rooms it may import
    "shared": {"shared"},
    "hadoop": {"shared", "hadoop"},
    "task": {"shared", "hadoop", "task"},
    "cluster": {"shared", "hadoop", "task", "cluster"},
    "cli": {"shared", "hadoop", "task", "cluster", "web", "runners", "cli"},
    "web": {"shared", "hadoop", "task", "cluster", "web"},
    "runners": {"shared", "hadoop", "task", "runners"},
}


def test_each_room_imports_only_what_it_may() -> None:
    bad = [f"{src} imports {dst}" for src, dsts in graph().items() for dst in sorted(dsts)
           if room(dst) not in ALLOWED.get(room(src), {room(src)})]
    assert not bad, "\n".join(bad)


IO_MODULES = {"socket", "subprocess", "os", "io", "select", "threading", "time", "shutil",
              "pathlib", "tempfile", "http", "urllib", "asyncio", "signal"}


@pytest.mark.parametrize("module", ["scheduler", "state", "policy"])
def test_the_scheduler_stays_free_of_io(module: str) -> None:
    tree = ast.parse((PACKAGE / "cluster" / f"{module}.py").read_text())
    used = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    used |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and not n.level}
    assert not used & IO_MODULES, f"cluster/{module}.py imports {sorted(used & IO_MODULES)}"


def host_modules() -> list[str]:
    """Every module a worker host may import, following imports from the host roots."""
    edges, todo, seen = graph(), [*HOST_ROOTS], set()
    todo += [m for m in edges if m.startswith(("hstream.task.", "hstream.hadoop."))]
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo += edges[mod]
    return sorted(seen)


def test_worker_host_modules_need_only_the_standard_library() -> None:
    """A host has python3 and nothing else: import every host module with site-packages off
    (-I -S: no site, no user site, no PYTHONPATH) and hstream on the path by hand."""
    mods = host_modules()
    assert "hstream.cluster.worker" in mods and "hstream.task.maptask" in mods
    code = ("import sys, importlib; sys.path.insert(0, sys.argv[1]); "
            "[importlib.import_module(m) for m in sys.argv[2:]]; "
            "bad = sorted(m for m in ('click', 'paramiko', 'psutil') if m in sys.modules); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(ROOT), *mods],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
