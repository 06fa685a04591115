"""Shared benchmark helpers: one JSON object as the last stdout line, a fresh topic prefix, timing,
``--repeat N`` with min / median / max summaries, and the machine a figure was measured on."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def fresh_prefix(name: str) -> str:
    """A topic prefix of its own; its topics are deleted when the benchmark process exits."""
    prefix = f"bench-{name}-{uuid.uuid4().hex[:8]}."
    atexit.register(_drop_topics, prefix)
    return prefix


def _drop_topics(prefix: str) -> None:
    from aiaas.streams.admin import drop_prefix
    from aiaas.streams.settings import Settings

    try:
        asyncio.run(asyncio.wait_for(drop_prefix(Settings(topic_prefix=prefix)), 30))
    except Exception as exc:  # cleanup must never fail a finished benchmark
        print(f"could not delete topics {prefix}*: {exc!r}", file=sys.stderr)


def machine() -> dict[str, Any]:
    """Where a figure was measured: core count and CPU model travel with every result, and the load
    average when it ends (others' work on a shared machine moves the figures)."""
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "platform": sys.platform, "loadavg": [round(x, 2) for x in os.getloadavg()]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): its own cost, whatever else loads the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> dict[int, float]:
    """``cpu_seconds`` of each live child process of this one (worker processes a benchmark started)."""
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                out[int(entry.name)] = cpu_seconds(int(entry.name))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def add_repeat(parser: argparse.ArgumentParser, default: int = 3) -> None:
    """``--repeat N``: every benchmark repeats its measurement and reports min / median / max."""
    parser.add_argument("--repeat", type=int, default=default, metavar="N",
                        help=f"measure N times, report min/median/max (default {default})")


def spread(name: str, values: list[float], digits: int = 2) -> dict[str, float]:
    """``{name: median, name_min: min, name_max: max}`` over the repeats of one figure."""
    if not values:
        raise ValueError(f"no values for {name}")
    return {name: round(median(values), digits), f"{name}_min": round(min(values), digits),
            f"{name}_max": round(max(values), digits)}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last stdout line (the contract automated checks read)."""
    sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    sys.stdout.flush()


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
