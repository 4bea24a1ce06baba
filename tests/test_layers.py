"""The package's rooms import downward only (the house of issue 30's design sketch), read from
the source with ``ast``: nothing is imported, so the checks take about a second in all.

Every room of ``reid/`` (a top-level module or package) stands on a floor; a module may import
its own room and the rooms of lower floors, never a room of its own floor or a higher one. So
the config never imports what it configures (the choices it validates against are the ground
floor's), the index never imports the engine, and the tools' shared code (``reid.cli``) is
imported by nothing in the package. Imports inside functions count as much as those at the top:
a lazy import hides a dependency from the import time, not from the design. Besides: evaluation
and calibration stay numpy-only, the service is the only room that speaks HTTP, and no modules
import each other at module level (a circle that works only in one import order).
"""

from __future__ import annotations

import ast
import functools
import pathlib
import sys
import textwrap

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "reid"

#: Room -> floor. A new room gets a floor here, in the house's order:
#: choices / errors / utils < config < data < modeling < losses < engine, with evaluation
#: (numpy) low enough for everyone, the index and the footage pipeline beside the engine, the
#: synthetic data and the service above them, the demo above all the library, the cli on top.
FLOORS = {
    "choices": 0, "errors": 0, "utils": 0,
    "config": 1, "evaluation": 1,
    "data": 2, "run_layout": 2, "calibration": 2,
    "modeling": 3,
    "losses": 4, "index": 4,
    "engine": 5, "video": 5,
    "synthetic": 6, "serve": 6,
    "demo": 7,
    "cli": 8,
}
#: Rooms that need nothing but numpy (and the standard library): features saved by another
#: framework are scored and calibrated without TensorFlow.
NUMPY_ONLY = {"evaluation", "calibration"}
#: Libraries of the HTTP service, which only ``reid.serve`` may import.
HTTP = {"fastapi", "starlette", "uvicorn", "httpx"}


def modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every module of ``package`` by its dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements run when the module is imported: its top level, into ``if``/``try``/
    ``with`` blocks and class bodies, but not functions nor ``if TYPE_CHECKING:``."""
    out = []
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, ast.If):
            out += _module_level(stmt.orelse if _type_checking(stmt.test) else
                                 stmt.body + stmt.orelse)
        elif isinstance(stmt, ast.Try):
            out += _module_level(stmt.body + [s for h in stmt.handlers for s in h.body]
                                 + stmt.orelse + stmt.finalbody)
        elif isinstance(stmt, (ast.With, ast.ClassDef)):
            out += _module_level(stmt.body)
    return out


@functools.cache
def _parse(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def imports(name: str, path: pathlib.Path, known: dict[str, pathlib.Path], *,
            module_level: bool) -> set[str]:
    """What module ``name`` imports: names of ``known`` modules (``from pkg import mod`` is
    ``pkg.mod``), and the top-level names of everything else."""
    tree = _parse(path)
    nodes = _module_level(tree.body) if module_level else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                      for a in node.names}
    return found


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def upward_imports(package: pathlib.Path, floors: dict[str, int]) -> list[str]:
    """Every import of a room on the importer's floor or above, as ``importer -> imported``."""
    known = modules(package)
    top = package.name
    wrong = []
    for name, path in known.items():
        here = room(name)
        for target in sorted(imports(name, path, known, module_level=False)):
            there = room(target) if target.split(".")[0] == top else None
            if there is None or there == here or not there:
                continue
            if floors[there] >= floors[here]:
                wrong.append(f"{name} (floor {floors[here]}) -> {target} (floor {floors[there]})")
    return wrong


def module_cycles(package: pathlib.Path) -> list[list[str]]:
    """The circles of module-level imports (strongly connected components, Tarjan's)."""
    known = modules(package)
    graph = {name: sorted(t for t in imports(name, path, known, module_level=True) if t in known)
             for name, path in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def outside_imports(package: pathlib.Path, rooms: set[str]) -> dict[str, set[str]]:
    """Module -> the libraries it imports that are neither the standard library nor reid."""
    known = modules(package)
    out = {}
    for name, path in known.items():
        if room(name) in rooms:
            libraries = {t.split(".")[0] for t in imports(name, path, known, module_level=False)}
            out[name] = {lib for lib in libraries
                         if lib not in sys.stdlib_module_names and lib != package.name}
    return out


def test_every_room_has_a_floor():
    rooms = {room(name) for name in modules(PACKAGE)} - {""}
    assert rooms == set(FLOORS), "give the new room a floor in FLOORS"


def test_layers_import_downward_only():
    assert upward_imports(PACKAGE, FLOORS) == []


def test_no_modules_import_each_other_at_module_level():
    assert module_cycles(PACKAGE) == []


#: What the metrics and decisions may import: numpy, and scipy for the sparse matrices of the
#: one-set Jaccard distance (:func:`reid.evaluation.rerank.jaccard_within`), imported where it is
#: used. Never TensorFlow, FAISS or OpenCV: tools that only score or decide start in a second.
SCIENTIFIC = {"numpy", "scipy"}


def test_evaluation_and_calibration_need_only_numpy():
    assert {name: libs - SCIENTIFIC for name, libs in outside_imports(PACKAGE, NUMPY_ONLY).items()
            if libs - SCIENTIFIC} == {}


def test_only_the_service_speaks_http():
    rooms = set(FLOORS) - {"serve"}
    assert {name: libs & HTTP for name, libs in outside_imports(PACKAGE, rooms).items()
            if libs & HTTP} == {}


def test_the_checks_see_an_upward_import_a_lazy_one_and_a_circle(tmp_path):
    """The checks on a package written for them: a config that imports the data it configures
    (in a function, too), and two modules importing each other at the top."""
    package = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "choices.py": "LAYOUTS = ('a',)\n",
        "config.py": "from pkg.choices import LAYOUTS\nfrom pkg.data import READERS\n",
        "data/__init__.py": "from pkg import config\n\n\ndef load():\n"
                            "    from pkg.data import reader\n",
        "data/reader.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                          "    from pkg.data import other\n",
        "data/other.py": "from pkg.data import reader\n",
        "engine.py": "def fit():\n    import pkg.cli\n",
        "cli.py": "import pkg.engine\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(text))
    floors = {"choices": 0, "config": 1, "data": 2, "engine": 5, "cli": 8}
    assert upward_imports(package, floors) == [
        "pkg.config (floor 1) -> pkg.data (floor 2)",
        "pkg.engine (floor 5) -> pkg.cli (floor 8)",
    ]
    # config <-> data at the top; reader -> other only for type checking, so no circle there.
    assert module_cycles(package) == [["pkg.config", "pkg.data"]]
