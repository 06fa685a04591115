"""Turn benchmark outputs into ``benchmarks/results/<date>.md`` and PNG plots (``make bench``).

    python -m benchmarks.report [--out benchmarks/results] [--date YYYY-MM-DD] OUTPUT...

Each OUTPUT is a file holding what a benchmark printed; its last JSON line is its result (the
contract of every ``python -m benchmarks.<name>``). A ``benchmarks.peers`` result becomes a table
(median and min-max over the repeats, aiaas beside MLServer per concurrency) and two plots against
concurrency: throughput and p99. Any other result is listed with its top-level figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from benchmarks import readme_table, report_training

SERVERS = {"mlserver": "MLServer 1.7.1", "aiaas": "aiaas serve"}


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object, else None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def levels(result: dict[str, Any]) -> list[int]:
    """The concurrencies both servers were measured at, ascending."""
    per = [{int(k[1:]) for k in result["peers"][s]} for s in SERVERS if s in result["peers"]]
    return sorted(set.intersection(*per)) if per else []


def _cell(figures: dict[str, float], name: str) -> str:
    return f"{figures[name]:g} ({figures[name + '_min']:g}-{figures[name + '_max']:g})"


def peers_table(result: dict[str, Any]) -> list[str]:
    """Markdown lines: one row per concurrency, median (min-max) for both servers."""
    peers = result["peers"]
    lines = ["| concurrency | MLServer req/s | aiaas req/s | aiaas / MLServer | MLServer p50 ms "
             "| aiaas p50 ms | MLServer p99 ms | aiaas p99 ms |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in levels(result):
        m, a = peers["mlserver"][f"c{c}"], peers["aiaas"][f"c{c}"]
        measured = result.get(f"ratio_vs_mlserver_c{c}")
        ratio = f"**{measured:g}**" if measured is not None else f"{a['req_per_s'] / m['req_per_s']:.2f}"
        cells = [_cell(m, "req_per_s"), _cell(a, "req_per_s"), ratio,
                 *(_cell(s, f) for f in ("p50_ms", "p99_ms") for s in (m, a))]
        lines.append(f"| {c} | {' | '.join(cells)} |")
    lines.append("")
    lines.append("Median over the repeats, (min-max) beside it. **Bold** ratios are the medians of the "
                 "per-repeat ratios; the others are ratios of the medians.")
    return lines


def plot_peers(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """``<stem>-peers-throughput.png`` and ``<stem>-peers-p99.png``: each server against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = levels(result)
    paths = []
    for figure, label in (("req_per_s", "requests / s"), ("p99_ms", "p99 latency (ms)")):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for server, name in SERVERS.items():
            cells = [result["peers"][server][f"c{c}"] for c in xs]
            mid = [cell[figure] for cell in cells]
            err = [[m - cell[f"{figure}_min"] for m, cell in zip(mid, cells, strict=True)],
                   [cell[f"{figure}_max"] - m for m, cell in zip(mid, cells, strict=True)]]
            ax.errorbar(xs, mid, yerr=err, marker="o", capsize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(label)
        ax.set_title(f"{label}: MLP 784-2048-2048-10, OIP JSON, one row")
        ax.grid(alpha=0.3)
        ax.legend()
        path = out / f"{stem}-peers-{'throughput' if figure == 'req_per_s' else 'p99'}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def machine_line(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    load = f", load average {m['loadavg']} at the end" if "loadavg" in m else ""
    return (f"Machine: {m.get('cpus', '?')} cores, {m.get('cpu_model', '?')}, "
            f"Python {m.get('python', '?')}{load}.")


def scalars(result: dict[str, Any], prefix: str = "", depth: int = 2) -> list[tuple[str, Any]]:
    """(dotted name, value) of the scalar figures, nested ones (``models.digits.kafka_per_s``) too."""
    out: list[tuple[str, Any]] = []
    for k, v in result.items():
        if isinstance(v, int | float | str | bool):
            out.append((prefix + k, v))
        elif isinstance(v, dict) and depth > 0 and k != "machine":
            out += scalars(v, f"{prefix}{k}.", depth - 1)
    return out


def other_section(name: str, result: dict[str, Any]) -> list[str]:
    """A result we have no table for: its scalar figures."""
    lines = [f"## {name}", "", *([machine_line(result), ""] if "machine" in result else []),
             "| figure | value |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in scalars(result)]
    return [*lines, ""]


def write_report(results: dict[str, dict[str, Any]], out: Path, date: str, note: str = "") -> Path:
    """Write ``<out>/<date>.md`` (and the peers plots beside it); returns the markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Benchmarks, {date}", "", *([note, ""] if note else [])]
    for name, result in results.items():
        if "peers" in result:
            pngs = plot_peers(result, out, date)
            lines += [f"## {name}: aiaas serve vs MLServer 1.7.1 (same model, same load)", "",
                      machine_line(result), "", *peers_table(result), ""]
            lines += [f"![{p.stem}]({p.name})" for p in pngs] + [""]
        elif report_training.is_training(result):
            png = report_training.plot_training(result, out, date)
            lines += [f"## {name}: time to accuracy, our sync modes vs torch DDP", "", machine_line(result),
                      "", *report_training.training_table(result), f"![{png.stem}]({png.name})", ""]
        else:
            lines += other_section(name, result)
    path = out / f"{date}.md"
    path.write_text("\n".join(lines))
    return path


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", nargs="+", type=Path, help="files holding a benchmark's output")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--date", default=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
    parser.add_argument("--note", default="", help="a paragraph under the title: the command, the conditions")
    parser.add_argument("--readme", type=Path, help="refresh this README's headline table from the results")
    args = parser.parse_args()
    results = {}
    for path in args.outputs:
        result = last_json(path.read_text(errors="replace"))
        if result is None:
            raise SystemExit(f"{path}: no JSON result line")
        results[path.stem] = result
    written = write_report(results, args.out, args.date, args.note)
    print(written)
    if args.readme is not None:
        source = f"[{written.name}](benchmarks/results/{written.name})"
        machine = machine_line(next(iter(results.values())))
        note = f"From {source} ({args.date}; {args.note or 'make bench'}; {machine})"
        args.readme.write_text(readme_table.refresh(args.readme.read_text(), results, note))


if __name__ == "__main__":
    cli()
