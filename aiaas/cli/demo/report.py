"""The demo's summary: a Rich table, PNG plots in the output folder, and the JSON line last."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from aiaas.cli.demo.callers import CallResults
from aiaas.schemas.records import JobStatus
from aiaas.schemas.training import MetricsMessage


@dataclass
class Summary:
    job_id: str
    metrics: list[MetricsMessage] = field(default_factory=list)
    status: JobStatus | None = None
    calls: CallResults | None = None
    failure: str | None = None

    def trained(self, status: JobStatus) -> None:
        self.status = status

    def result(self) -> dict[str, Any]:
        calls, status = self.calls, self.status
        served = _accuracy(calls) if calls else 0.0
        latencies = [v for vs in (calls.latencies_ms.values() if calls else []) for v in vs]
        requests = sum(calls.counts.values()) if calls else 0
        errors = (len(calls.errors) if calls else 0) + (1 if self.failure else 0)
        return {
            "served_accuracy": round(served, 4),
            "trained_accuracy": round(float(status.metrics.get("test_accuracy", 0.0)), 4) if status else 0.0,
            "requests": requests,
            "errors": errors,
            "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
            "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
            "model_version": status.model_version if status else None,
            "job_id": self.job_id,
            "failure": self.failure,
        }


def _accuracy(calls: CallResults) -> float:
    if not calls.predictions:
        return 0.0
    rows = np.fromiter(calls.predictions, dtype=np.int64)
    preds = np.fromiter(calls.predictions.values(), dtype=np.int64)
    return float(np.mean(calls.labels[rows] == preds))


PLOTS = ("training.png", "latency.png")


def report(summary: Summary, out: Path, console: Console) -> bool:
    """Print the table, write plots and summary.json; the JSON object is the last stdout line.
    A failed run writes no plot (and removes those of an earlier run: no stale figures)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in PLOTS:
        (out / name).unlink(missing_ok=True)
    result = summary.result()
    console.print(_table(summary, result))
    written = [] if summary.failure else _plots(summary, out)
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"{', '.join(written) or 'no plots (the run failed)'} and summary.json in {out}/")
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return summary.failure is None and result["errors"] == 0 and result["requests"] > 0


def _table(summary: Summary, result: dict[str, Any]) -> Table:
    table = Table(title=f"aiaas demo — job {summary.job_id}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("trainer's test accuracy", f"{result['trained_accuracy']:.4f}")
    table.add_row("served accuracy (all paths)", f"{result['served_accuracy']:.4f}")
    table.add_row("model version", str(result["model_version"]))
    calls = summary.calls
    if calls:
        for path, n in sorted(calls.counts.items()):
            secs = calls.seconds.get(path.replace("_callback", ""))
            rate = f"  {n / secs:,.0f} req/s" if secs else ""
            lat = calls.latencies_ms.get(path)
            pct = f"  p50 {np.percentile(lat, 50):.1f} ms  p99 {np.percentile(lat, 99):.1f} ms" if lat else ""
            table.add_row(path, f"{n} requests{rate}{pct}")
    table.add_row("errors", str(result["errors"]))
    return table


def _plots(summary: Summary, out: Path) -> list[str]:
    """The plots that have data to show; their file names."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    evals = [m for m in summary.metrics if m.test_accuracy is not None]
    latencies = summary.calls.latencies_ms if summary.calls else {}
    if evals:
        _training_plot(plt, summary, evals, out / PLOTS[0])
        written.append(PLOTS[0])
    if any(latencies.values()):
        _latency_plot(plt, latencies, out / PLOTS[1])
        written.append(PLOTS[1])
    return written


def _training_plot(plt: Any, summary: Summary, evals: list[MetricsMessage], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([m.version for m in summary.metrics if m.loss is not None],
             [m.loss for m in summary.metrics if m.loss is not None], label="train loss")
    ax1.plot([m.version for m in evals if m.test_loss is not None],
             [m.test_loss for m in evals if m.test_loss is not None], label="test loss")
    ax1.set_xlabel("parameter version (step)")
    ax1.legend()
    ax2.plot([m.version for m in evals], [m.test_accuracy for m in evals], color="tab:green")
    ax2.set_xlabel("parameter version (step)")
    ax2.set_ylabel("test accuracy")
    fig.suptitle(f"training {summary.job_id}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _latency_plot(plt: Any, latencies: dict[str, list[float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, lat in sorted(latencies.items()):
        ax.hist(lat, bins=40, alpha=0.6, label=name)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
