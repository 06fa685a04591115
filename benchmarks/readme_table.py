"""README's table of headline figures, refreshed from ``make bench``'s results (``benchmarks.report
--readme README.md``): the ratios the performance targets name, each the median over the repeats
with min-max, beside its target, between two markers in README.md that nothing else writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Headline:
    benchmark: str  # the result's file stem: inference, training, bridge, peers, idle
    path: tuple[str, ...]  # where the median sits in the result (its _min/_max beside it)
    target: str  # e.g. ">= 0.9"
    meaning: str

    def meets(self, figure: float) -> bool:
        op, value = self.target.split()
        return figure >= float(value) if op == ">=" else figure <= float(value)


HEADLINES = [
    Headline("peers", ("ratio_vs_mlserver_c32",), ">= 1.5",
             "aiaas serve / MLServer 1.7.1 req/s, 32 in flight"),
    Headline("peers", ("ratio_vs_mlserver_c1",), ">= 2", "the same, one in flight"),
    Headline("bridge", ("ratio_http_vs_direct",), ">= 0.85",
             "HTTP through the bridge / the Kafka client, 32 in flight"),
    Headline("bridge", ("p99_ms",), "<= 30", "bridge p99 ms at 32 in flight"),
    Headline("training", ("time_ratio_sync_vs_ddp",), "<= 1.5",
             "sync parameter server / torch DDP, time to 0.95"),
    Headline("training", ("time_ratio_best_vs_ddp",), "<= 0.5", "our best mode / torch DDP, time to 0.95"),
    Headline("inference", ("models", "mlp-large", "ratio_kafka_vs_limit"), ">= 0.9",
             "Kafka serving / min(in-process onnxruntime, bare Kafka echo), MLP 784-2048-2048-10"),
    Headline("idle", ("idle_worker_core_share",), "<= 0.005", "an idle inference worker, share of a core"),
    Headline("idle", ("idle_bridge_core_share",), "<= 0.005", "an idle bridge, share of a core"),
]


Figures = tuple[float, float | None, float | None]  # median, min, max


def _figures(result: dict[str, Any], path: tuple[str, ...]) -> Figures | None:
    node: Any = result
    for key in path[:-1]:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    last = path[-1]
    if not isinstance(node, dict) or not isinstance(node.get(last), int | float):
        return None
    return node[last], node.get(f"{last}_min"), node.get(f"{last}_max")


def rows(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown table lines for the headlines the results hold (a benchmark not run is left out)."""
    out = ["| figure | median (min-max) | target | met | what it is |", "|---|---:|---:|:---:|---|"]
    for h in HEADLINES:
        got = _figures(results.get(h.benchmark, {}), h.path)
        if got is None:
            continue
        mid, low, high = got
        spread = f" ({low:g}-{high:g})" if low is not None and high is not None else ""
        out.append(f"| `{h.benchmark}`: `{h.path[-1]}` | {mid:g}{spread} | {h.target} | "
                   f"{'yes' if h.meets(mid) else 'no'} | {h.meaning} |")
    return out


def refresh(readme: str, results: dict[str, dict[str, Any]], note: str) -> str:
    """``readme`` with the text between the markers replaced by ``note`` and the headline table."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README has no {START} ... {END} block")
    return "".join([head, START, "\n", note, "\n\n", "\n".join(rows(results)), "\n", END, tail])
