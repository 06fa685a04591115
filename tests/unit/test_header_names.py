"""aiaas.streams.headers owns every Kafka header name, and the docs say what each one is.

The header table of docs/wire-protocol.md is what producers in other languages read: a header the
code uses but the table leaves out, or a documented header no code defines, is a defect. The wire
modules spell no header name themselves (they import it), so a rename happens in one place.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from aiaas.streams import headers as h
from tests.sourceparse import parse

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "wire-protocol.md"
ROW = re.compile(r"^\| `([^`]+)` \| `([A-Z0-9_]+)` \|")
# Where Kafka records are built and read. agents/bridge is left out: it also speaks HTTP, whose
# header names (content-type, traceparent, inference-header-content-length) are the same strings.
WIRE_DIRS = ("streams", "agents/inference", "agents/trainer", "agents/aggregator", "agents/autoscaler")


def _constants() -> dict[str, str]:
    return {name: value for name, value in vars(h).items() if name.isupper() and isinstance(value, str)}


def documented_headers() -> dict[str, str]:
    """header name -> constant name, from the rows of the table under '## Headers'."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Headers\n", 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] for line in section.splitlines() if (m := ROW.match(line))}


def test_every_header_constant_is_documented_and_every_documented_header_defined() -> None:
    consts = _constants()
    doc = documented_headers()
    assert doc, "no header table found in docs/wire-protocol.md"
    assert set(doc) == set(consts.values()), (
        f"undocumented: {sorted(set(consts.values()) - set(doc))}, "
        f"documented but not in aiaas.streams.headers: {sorted(set(doc) - set(consts.values()))}")
    for name, const in doc.items():
        assert consts.get(const) == name, f"the table says {name!r} is aiaas.streams.headers.{const}"


def test_header_names_are_unique_lowercase_tokens() -> None:
    values = list(_constants().values())
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", v) for v in values), values


def test_readme_names_only_defined_headers_and_points_to_the_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/wire-protocol.md" in readme
    line = next(p for p in readme.split("\n\n") if p.startswith("Headers:"))
    named = set(re.findall(r"`([a-z0-9-]+)`", line))
    assert named and named <= set(_constants().values()), named - set(_constants().values())


def _literal_header_names(path: Path, names: set[str]) -> list[str]:
    """String constants equal to a header name, outside ``__slots__`` (attribute names, not headers)."""
    tree = parse(path.read_text(encoding="utf-8"))
    slots = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets)
             for n in ast.walk(node.value)}
    return [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in slots]


def test_wire_modules_import_header_names_instead_of_spelling_them() -> None:
    names = set(_constants().values())
    own = Path(h.__file__).resolve()
    found = [hit for d in WIRE_DIRS for path in sorted((ROOT / d).rglob("*.py")) if path.resolve() != own
             for hit in _literal_header_names(path, names)]
    assert found == []
