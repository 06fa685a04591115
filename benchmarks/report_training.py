"""The training benchmark's part of ``make bench``'s report: a table of time to target per contender
(median, min-max over the repeats) and the time-to-accuracy curves of every sync mode beside DDP's
and one process's, from ``python -m benchmarks.training``'s result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BASELINES = {"single_process": "one torch process", "ddp_gloo": "torch DDP (gloo, 2 processes)"}


def is_training(result: dict[str, Any]) -> bool:
    return "modes" in result and "ddp_gloo" in result


def contenders(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> figures, baselines first, for every contender that ran."""
    out = {label: result[key] for key, label in BASELINES.items()
           if result.get(key, {}).get("status") != "skipped"}
    out |= {f"aiaas {mode}": figures for mode, figures in result["modes"].items()
            if figures.get("status") != "skipped"}
    return out


def _seconds(figures: dict[str, Any]) -> str:
    mid = figures.get("seconds_to_target")
    if mid is None:
        return f"not reached ({figures.get('status', '?')})"
    return f"{mid:.3f} ({figures['seconds_to_target_min']:.3f}-{figures['seconds_to_target_max']:.3f})"


def training_table(result: dict[str, Any]) -> list[str]:
    """Markdown lines: time to the target accuracy per contender, and the ratios against DDP."""
    target = result.get("target_accuracy")
    lines = [f"| contender | seconds to {target} test accuracy | repeats |", "|---|---:|---:|"]
    for label, figures in contenders(result).items():
        lines.append(f"| {label} | {_seconds(figures)} | {figures.get('repeats', '?')} |")
    lines.append("")
    for name in ("time_ratio_sync_vs_ddp", "time_ratio_best_vs_ddp"):
        value = result.get(name)
        if value is not None:
            lines.append(f"- `{name}`: **{value:g}** ({result[name + '_min']:g}-{result[name + '_max']:g}; "
                         f"the median of the per-repeat ratios)")
    if result.get("best_mode"):
        lines.append(f"- best mode: {result['best_mode']}")
    return [*lines, ""]


def plot_training(result: dict[str, Any], out: Path, stem: str) -> Path:
    """``<stem>-training-curves.png``: test accuracy against seconds of training, each contender's
    median run, with the target as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, figures in contenders(result).items():
        curve = figures.get("curve") or []
        if curve:
            ax.plot([p[0] for p in curve], [p[1] for p in curve], marker=".", label=label)
    if result.get("target_accuracy") is not None:
        ax.axhline(result["target_accuracy"], color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel("seconds of training (after the rendezvous)")
    ax.set_ylabel("test accuracy")
    ax.set_title("time to accuracy: digits, MLP 64-256-256-10, 2 workers")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = out / f"{stem}-training-curves.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
