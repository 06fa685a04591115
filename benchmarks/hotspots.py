"""Top hot spots from py-spy's collapsed stacks (``py-spy record --format raw``).

Each line is ``frame;frame;...;leaf COUNT`` with frames like ``func (path/file.py:123)``. Self time
counts the leaf frame of each sample; inclusive time counts every function on the stack once. Both
are grouped by function and file (line numbers dropped) and given as a share of all samples; self
time is also summed per package (``aiaas/agents/<role>`` for our own code), to see where a process
spends its time at a glance: the HTTP server, Kafka's client, JSON, onnxruntime, ours.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def function_of(frame: str) -> str:
    """``func (site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``: one row per function."""
    frame = _LINE.sub(")", frame.strip())
    return frame.replace("site-packages/", "").replace("/work/main/", "")


def package_of(function: str) -> str:
    """``run (ort/capi/s.py)`` -> ``ort``; ``f (aiaas/agents/bridge/core.py)`` -> ``aiaas/agents/bridge``."""
    parts = function[function.rfind("(") + 1:].rstrip(")").split("/")
    keep = min(3, len(parts) - 1) if parts[0] == "aiaas" else 1  # aiaas/streams, aiaas/agents/bridge
    return "/".join(parts[:keep]).removesuffix(".py")


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """(frames root first, sample count) per line; blank or malformed lines are skipped."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def top(stacks: list[tuple[list[str], int]], n: int = 10) -> dict[str, list[tuple[str, float]]]:
    """The ``n`` functions with the most self and inclusive samples, as % of all samples."""
    total = sum(count for _, count in stacks)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        names = [function_of(f) for f in frames]
        own[names[-1]] += count
        packages[package_of(names[-1])] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return {"self": [], "inclusive": [], "package": []}
    return {kind: [(name, round(100 * c / total, 1)) for name, c in counter.most_common(n)]
            for kind, counter in (("self", own), ("inclusive", inclusive), ("package", packages))}


def summary(path: Path, title: str, n: int = 10) -> str:
    """A small text table of one profile: its sample count, then the self and inclusive top ``n``."""
    stacks = parse_collapsed(path.read_text(errors="replace"))
    ranked = top(stacks, n)
    lines = [f"## {title}: {sum(c for _, c in stacks)} samples ({path.name})", "self %  function"]
    lines += [f"{pct:6.1f}  {name}" for name, pct in ranked["self"]]
    lines += ["incl %  function"] + [f"{pct:6.1f}  {name}" for name, pct in ranked["inclusive"]]
    lines += ["self %  package"] + [f"{pct:6.1f}  {name}" for name, pct in ranked["package"]]
    return "\n".join(lines)
