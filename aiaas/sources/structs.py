"""A Source compiled to msgspec Struct types and generated row extractors.

The declared paths become a tree of Struct types (``a.b.c`` -> a Struct with a field ``a`` of a
Struct with ``b``...), so msgspec validates each record in C while it parses it (JSON) or converts
it (Avro's dicts): a missing field, a wrong type or an array of the wrong length fails there, with
the path at fault. The extraction of a batch of Structs into rows is one generated list
comprehension (``exec`` of code built from the spec, once), so no Python loop walks the spec per
record. See docs/sources.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np

from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.sources.decoded import Decoded, Rejection
from aiaas.sources.plan import Column, Part, Plan


@dataclass
class Leaf:
    type: Any
    optional: bool  # a missing (or null) value is allowed: the field defaults to None
    declared: str  # the path as the spec wrote it (with [] for arrays)


Node = dict[str, "Node | Leaf"]


def _segments(path: str) -> list[str]:
    return path.removesuffix("[]").split(".")


def _feature_leaf(c: Column) -> Leaf:
    f, optional = c.field, c.field.default is not None
    if c.vocab is not None:
        return Leaf(str, optional, f.path)
    if f.path.endswith("[]"):
        w = f.width or 1
        return Leaf(Annotated[list[float | bool], msgspec.Meta(min_length=w, max_length=w)], optional, f.path)
    return Leaf(float | bool, optional, f.path)


def _bad(reason: str, path: str) -> AiaasError:
    return AiaasError(reason, code=ErrorCode.BAD_REQUEST, path=path)


def _insert(tree: Node, leaf: Leaf, weak: bool) -> None:
    """Put a leaf at its path; ``weak`` leaves (passthrough, key: Any) yield to typed ones."""
    *parents, name = _segments(leaf.declared)
    node = tree
    for p in parents:
        child = node.setdefault(p, {})
        if isinstance(child, Leaf):
            raise _bad(f"{leaf.declared!r} goes inside {child.declared!r}, which is a value", leaf.declared)
        node = child
    old = node.get(name)
    if isinstance(old, dict):
        if not weak:
            raise _bad(f"{leaf.declared!r} is an object holding other fields", leaf.declared)
    elif old is None or (not weak and old.type is Any):
        node[name] = leaf
    elif not weak and old.type != leaf.type:
        raise _bad(f"{leaf.declared!r} is declared twice with different types", leaf.declared)


def _optional(node: Node | Leaf) -> bool:
    if isinstance(node, Leaf):
        return node.optional
    return all(_optional(c) for c in node.values())


def _required_leaf(node: Node | Leaf) -> str | None:
    """The first required leaf under a node (a missing object is reported by it)."""
    if isinstance(node, Leaf):
        return None if node.optional else node.declared
    return next((p for c in node.values() if (p := _required_leaf(c))), None)


def _struct(node: Node, name: str) -> tuple[type[msgspec.Struct], dict[str, str]]:
    """Struct type of a node, and the Python attribute name of each of its JSON names."""
    fields: list[tuple[str, Any, Any]] = []
    attrs: dict[str, str] = {}
    for i, (key, child) in enumerate(node.items()):
        attr = attrs[key] = f"f{i}"
        if isinstance(child, Leaf):
            typ = child.type
            fields.append((attr, typ | None, None) if child.optional else (attr, typ, msgspec.NODEFAULT))
            continue
        sub, _ = _struct(child, f"{name}_{i}")
        default = msgspec.field(default_factory=sub) if _optional(child) else msgspec.NODEFAULT
        fields.append((attr, sub, default))
    rename = {attrs[k]: k for k in node}
    return msgspec.defstruct(name, fields, kw_only=True, gc=False, rename=rename), attrs


class StructForm:
    """The Struct types and extractors of one Source (see the module docstring)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        source = plan.source
        self.tree: Node = {}
        for c in plan.columns:
            _insert(self.tree, _feature_leaf(c), weak=False)
        if plan.label is not None:
            typ = str | int if plan.label_vocab else float | bool
            _insert(self.tree, Leaf(typ, False, plan.label), weak=False)
        for p in [*source.passthrough, *([source.key] if source.key else [])]:
            _insert(self.tree, Leaf(Any, True, p), weak=True)
        self.struct, _ = _struct(self.tree, "Record")
        self.struct_list = list[self.struct]  # type: ignore[name-defined]
        self.rows = self._generate()

    def access(self, path: str) -> str:
        """Python expression reading ``path`` from a record ``r``."""
        node: Node | Leaf = self.tree
        out = "r"
        for seg in _segments(path):
            assert isinstance(node, dict)
            out += f".f{list(node).index(seg)}"
            node = node[seg]
        return f"_tb({out})" if isinstance(node, dict) else out

    def _feature(self, i: int, c: Column, env: dict[str, Any]) -> str:
        acc, f = self.access(c.field.path), c.field
        if c.vocab is not None:
            env[f"V{i}"] = c.vocab
            return f"V{i}.get({acc}, {c.default_index})"
        if f.default is None:
            return f"*{acc}" if f.path.endswith("[]") else acc
        env[f"D{i}"] = (float(f.default),) * (f.width or 1) if f.path.endswith("[]") else float(f.default)
        pick = f"(D{i} if (v{i} := {acc}) is None else v{i})"
        return f"*{pick}" if f.path.endswith("[]") else pick

    def _generate(self) -> Callable[[Sequence[Any]], list[tuple[Any, ...]]]:
        env: dict[str, Any] = {"_tb": msgspec.to_builtins}
        exprs = [self._feature(i, c, env) for i, c in enumerate(self.plan.columns)]
        if self.plan.label is not None:
            acc = self.access(self.plan.label)
            env["LV"] = self.plan.label_vocab
            exprs.append(f"LV.get({acc}, -1)" if self.plan.label_vocab else acc)
        src = [f"def rows(recs):\n    return [({', '.join(exprs)},) for r in recs]"]
        spreads = [e[1:] for e in exprs if e.startswith("*")]
        if spreads and len(spreads) == len(exprs):  # arrays only: numbers straight into numpy
            env["_chain"] = itertools.chain.from_iterable
            each = f"for a in ({', '.join(spreads)},)"
            src.append(f"def flat(recs):\n    return _chain([a for r in recs {each}])")
        pt = ", ".join(f"{p!r}: {self.access(p)}" for p in self.plan.source.passthrough)
        src.append(f"def passthrough(recs):\n    return [{{{pt}}} for r in recs]")
        key = self.access(self.plan.source.key) if self.plan.source.key else "None"
        src.append(f"def keys(recs):\n    return [{key} for r in recs]")
        exec(compile("\n".join(src), "<aiaas.sources rows>", "exec"), env)  # our own code, from the spec
        self._passthrough, self._keys = env["passthrough"], env["keys"]
        self._flat: Callable[[Sequence[Any]], Iterable[Any]] | None = env.get("flat")
        rows: Callable[[Sequence[Any]], list[tuple[Any, ...]]] = env["rows"]
        return rows

    def extract(self, recs: Sequence[Any]) -> Part:
        """The raw matrix, passthrough and keys of validated Structs."""
        with np.errstate(over="ignore"):
            if self._flat is not None:  # no tuple per record: 2.2 -> 1.0 us per 64-number record
                n = len(recs) * self.plan.raw_width
                raw = np.fromiter(self._flat(recs), np.float32, n).reshape(len(recs), self.plan.raw_width)
            else:
                raw = np.array(self.rows(recs), dtype=np.float32).reshape(len(recs), self.plan.raw_width)
        pt = self._passthrough(recs) if self.plan.source.passthrough else None
        keys = self._keys(recs) if self.plan.source.key else None
        return Part(raw, pt, keys)

    def decoded(self, recs: list[Any], ok: np.ndarray, rejected: list[Rejection],
                schema_ids: set[int] | None = None) -> Decoded:
        """Decoded of validated Structs (records at batch positions ``ok``)."""
        if not recs:
            return self.plan.empty(rejected, schema_ids)
        part = self.extract(recs)
        return self.plan.finish(part.raw, ok, rejected, part.passthrough, part.keys, schema_ids)

    def explain(self, error: Exception) -> tuple[str, str]:
        """(field path, reason) of a msgspec validation error."""
        return explain(self.tree, str(error))


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_EXPECTED = re.compile(r"Expected `(?P<want>[^`]+)`(?P<rest>.*?)(?:, got `(?P<got>[^`]+)`)?$")


def _declared(tree: Node, path: str) -> str:
    node: Node | Leaf = tree
    for seg in path.split("."):
        if not isinstance(node, dict) or seg not in node:
            return path
        node = node[seg]
    return node.declared if isinstance(node, Leaf) else (_required_leaf(node) or path)


def explain(tree: Node, message: str) -> tuple[str, str]:
    m = _AT.match(message)
    msg, at = (m["msg"], m["at"] or "") if m else (message, "")
    at = re.sub(r"\[\d+\]", "", at).lstrip(".")
    if missing := _MISSING.match(msg):
        return _declared(tree, f"{at}.{missing['name']}".lstrip(".")), "missing"
    field = _declared(tree, at) if at else ""
    if (e := _EXPECTED.match(msg)) is None:
        return field, msg
    want, got = e["want"], e["got"]
    if got == "null":
        return field, "missing"
    if "array" in want and "length" in e["rest"]:
        return field, f"wrong array length (expected {want}{e['rest']})"
    kind = ("not a number" if "float" in want else "not a class name or index" if "int" in want
            else {"str": "not a string", "object": "not an object"}.get(want, f"not {want}"))
    return field, f"{kind} (got {got})" if got else kind
