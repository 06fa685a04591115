"""The architecture's import contracts, checked on the source (an AST scan; nothing is imported).

Everything installs under ``aiaas``; its rooms, and which rooms each may import (``MAY_IMPORT``):
``schemas`` (messages and errors) imports nothing of ours; ``streams`` (Kafka plumbing and the wire)
only schemas; ``data`` (datasets, partitioners, the push), ``registry`` and ``client`` sit on
streams; ``ml`` (the torch toolkit) on data; ``agents`` (trainer, aggregator, inference, bridge,
autoscaler) on all of those; ``cli`` and ``benchmarks`` on top. The agents meet on topics, never by
import: ``aiaas.agents.<role>`` imports no other role. The shared modules at the top of
``agents/`` (``launcher``, ``jobrunner``, ``compute_settings``) import no agent either: the launcher
starts agents as processes by module name (``python -m aiaas.agents.trainer``). Process entry
points (``aiaas.agents.<role>.__main__``, the same commands as ``aiaas ...``) sit with the CLI on
top, and nothing imports them. No two modules import each other, directly or through others; every
import counts (module level, inside functions and under ``TYPE_CHECKING``), since each is a
dependency. No module imports a design folder by its bare name (``streams``, ``agents``...): in
the repository those folders are on the path too, and a bare import would load a second copy.

A deliberate exception is listed in ``ALLOWED`` with its reason; anything else fails with the file
and line of the offending import.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.sourceparse import parse

ROOT = Path(__file__).resolve().parents[2]
LOWER = {"schemas", "streams", "data", "registry", "client", "ml", "sources"}
MAY_IMPORT = {
    "schemas": set(),
    "streams": {"schemas"},
    "data": {"schemas", "streams"},
    "registry": {"schemas", "streams"},
    "client": {"schemas", "streams"},
    "sources": {"schemas", "streams"},  # the user's topics: declared sources compiled into decoders
    "ml": {"schemas", "data"},
    "aiaas": {"schemas", "streams", "client"},  # the public surface, aiaas/__init__.py
    "agents": LOWER | {"aiaas"},
    "cli": LOWER | {"aiaas", "agents"},
    "benchmarks": LOWER | {"aiaas", "agents", "cli"},
}
SHARED_AGENT_MODULES = {"aiaas.agents.launcher", "aiaas.agents.jobrunner", "aiaas.agents.compute_settings",
                        "aiaas.agents.processes"}  # processes: the one way children start
BARE = {"streams", "schemas", "agents", "aiaas_cli"}  # names that must be imported as aiaas.<name>

# (importer, imported): why this crossing is deliberate.
ALLOWED = {
    ("aiaas.agents.launcher", "aiaas.agents.aggregator.server"): "run_in_process composes one job's "
    "aggregator and trainers as tasks of one process (aiaas worker jobs --in-process, tests); "
    "imported lazily",
    ("aiaas.agents.launcher", "aiaas.agents.trainer.worker"): "run_in_process, as above",
    ("aiaas.agents.launcher", "aiaas.agents.trainer.settings"): "run_in_process, as above",
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # path:line


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of ``aiaas`` (through the links to the design folders) and of ``benchmarks``."""
    found = {}
    for pkg in ("aiaas", "benchmarks"):
        for folder, _, files in os.walk(ROOT / pkg, followlinks=True):
            found.update({_name(Path(folder) / f): Path(folder) / f for f in files if f.endswith(".py")})
    return dict(sorted(found.items()))


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) lives in, else None."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, is_pkg: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: None if is_pkg else -1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, base] if base else parts)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base for a in node.names]


@cache
def imports() -> tuple[Import, ...]:
    found = []
    for module, path in modules().items():
        for node in ast.walk(parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, path.name == "__init__.py", node):
                    ours = _ours(target)
                    if ours and ours != module:
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found.append(Import(module, ours, where))
    return tuple(found)


def _role(module: str) -> str | None:
    """``agents.<role>`` for a module inside an agent's package, else None."""
    parts = module.split(".")
    if parts[:2] == ["aiaas", "agents"] and len(parts) > 2 and (ROOT / "agents" / parts[2]).is_dir():
        return parts[2]
    return None


def _entry_point(module: str) -> bool:
    return module.endswith(".__main__") or module == "__main__"


def _room(module: str) -> str:
    """``aiaas.streams.x`` -> ``streams``; the package ``aiaas`` itself -> ``aiaas``."""
    if _entry_point(module):
        return "cli"
    parts = module.split(".")
    return parts[1] if parts[0] == "aiaas" and len(parts) > 1 else parts[0]


def _breach(imp: Import) -> str | None:
    src, dst = imp.importer, imp.imported
    if _entry_point(dst):
        return "imports a process entry point"
    if _room(dst) != _room(src) and _room(dst) not in MAY_IMPORT[_room(src)]:
        return f"{_room(src)} may not import {_room(dst)}"
    if _role(dst) and _role(src) != _role(dst) and (_role(src) or src in SHARED_AGENT_MODULES):
        return f"imports the agent aiaas.agents.{_role(dst)} (agents meet on topics)"
    return None


def test_layers_and_agents_keep_apart() -> None:
    breaches = [f"{i.where}: {i.importer} -> {i.imported}: {why}"
                for i in imports() if (why := _breach(i)) and (i.importer, i.imported) not in ALLOWED]
    assert not breaches, "import contracts broken:\n" + "\n".join(breaches)


def test_allowed_exceptions_are_still_needed() -> None:
    """An exception nobody uses any more is removed, so the list says what the code does."""
    used = {(i.importer, i.imported) for i in imports()}
    assert set(ALLOWED) <= used, f"stale exceptions: {sorted(set(ALLOWED) - used)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for i in imports():
        graph[i.importer].add(i.imported)
    circles = _cycles(graph)
    lines = [f"{' <-> '.join(c)}: " + ", ".join(i.where for i in imports()
                                                 if i.importer in c and i.imported in c)
             for c in circles]
    assert not circles, "import circles:\n" + "\n".join(lines)


def _absolute_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``."""
    found = []
    for node in ast.walk(parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.lineno, node.module or ""))
    return found


def test_design_folders_are_imported_under_aiaas() -> None:
    """``import streams`` would work in a clone (the folder is on the path) but load a second copy of
    every module beside ``aiaas.streams``, with its own settings and caches; installed, it fails."""
    paths = [*modules().values(), *sorted((ROOT / "tests").rglob("*.py"))]
    bare = [f"{path}:{line}: {n}" for path in paths for line, n in _absolute_imports(path)
            if n.split(".")[0] in BARE]
    assert not bare, "bare imports of design folders:\n" + "\n".join(bare)



# Shipped packages (pyproject's packages.find) that may import the test helpers under ``tests/``:
# benchmarks run from the repository (``python -m benchmarks.<name>``) and share the tests' spawner.
MAY_IMPORT_TESTS = {"benchmarks"}
TEST_ONLY_NAMES = {"testing", "examples"}  # test helpers and example models live under tests/


def test_shipped_packages_hold_no_test_code() -> None:
    """Test helpers, example models and process spawners live under ``tests/``: no shipped module
    is named like one, and none but the benchmarks imports ``tests``."""
    named = [str(p.relative_to(ROOT)) for m, p in modules().items()
             if TEST_ONLY_NAMES & set(m.split("."))]
    uses = []
    for module, path in modules().items():
        if module.split(".")[0] in MAY_IMPORT_TESTS:
            continue
        uses += [f"{path.relative_to(ROOT)}:{line}: {n}" for line, n in _absolute_imports(path)
                 if n == "tests" or n.startswith("tests.")]
    assert not named, "test code in shipped packages:\n" + "\n".join(named)
    assert not uses, "shipped modules import tests:\n" + "\n".join(uses)

# Exception classes that may live outside schemas/errors.py: module -> class -> why.
OWN_EXCEPTIONS = {
    "aiaas.agents.bridge.middleware": {"ClientGone": "an ASGI control-flow signal (the client left), never "
                                 "an error anyone is answered with, so not an AiaasError"},
}


def test_every_error_type_lives_in_schemas_errors() -> None:
    """One module holds the error types (schemas/errors.py), so callers and docs find them all."""
    errors = parse((ROOT / "schemas" / "errors.py").read_text())
    ours = {n.name for n in errors.body if isinstance(n, ast.ClassDef)}
    stray = []
    for module, path in modules().items():
        for node in ast.walk(parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef) or module == "aiaas.schemas.errors":
                continue
            bases = {ast.unparse(b).rpartition(".")[2] for b in node.bases}
            is_error = any(b in ours or b.endswith(("Error", "Exception")) for b in bases)
            if is_error and node.name not in OWN_EXCEPTIONS.get(module, {}):
                stray.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    assert not stray, "error types outside schemas/errors.py:\n" + "\n".join(stray)


def test_the_bridge_builds_its_error_body_in_one_place() -> None:
    """Every HTTP error body (answered, or kept as a failed request's ``error``) comes from
    aiaas.agents.bridge.errors.error_body: no other bridge module writes ``{"error": ...}`` itself."""
    built = []
    for module, path in modules().items():
        if not module.startswith("aiaas.agents.bridge.") or module == "aiaas.agents.bridge.errors":
            continue
        for node in ast.walk(parse(path.read_text(), str(path))):
            literal = isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "error" for k in node.keys)
            to_dict = isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".to_dict")
            if literal or to_dict:
                built.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not built, "error bodies built outside agents/bridge/errors.py:\n" + "\n".join(built)


def test_the_scan_sees_known_imports() -> None:
    """The scanner itself works: imports written in the code are found, relative ones resolved."""
    pairs = {(i.importer, i.imported) for i in imports()}
    assert ("aiaas.client.inference", "aiaas.streams.settings") in pairs
    assert ("aiaas.agents.trainer.worker", "aiaas.agents.trainer.settings") in pairs  # a relative import
    assert ("aiaas.cli.main", "aiaas.cli.training") in pairs  # from a package import a module
    assert _breach(Import("aiaas.client.inference", "aiaas.agents.bridge.app", "x")) is not None
    assert _breach(Import("aiaas.agents.bridge.app", "aiaas.agents.inference.worker", "x")) is not None
    assert _breach(Import("aiaas.agents.bridge.app", "aiaas.agents.bridge.core", "x")) is None
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
