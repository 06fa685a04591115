"""``drift_recovery_s``: how fast continuous training follows a concept drift on the user's topic.

The scenario is ``tests.driftscenario.run_drift`` (the drift test's): digits as JSON records on a
2-partition topic, a continuous job (sync mode, 2 trainers and the aggregator as tasks of this
process, on the real broker), labels permuted at record 10,000. ``drift_recovery_s`` is the time
from the first permuted record being acknowledged by the broker to a promoted production version
scoring >= 0.9 on a probe of permuted digits the stream never carries (scored with onnxruntime on
the registered artifact, as served). The random-label stretch that follows is reported too
(``noise_promotions`` must be 0).

    python -m benchmarks.streaming_drift [--mode sync]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from aiaas.streams.settings import Settings
from benchmarks.common import emit, fresh_prefix, machine
from tests.driftscenario import run_drift


async def measure(mode: str = "sync") -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix("drift"))
    out = await run_drift(settings, mode=mode)
    noise = [d for d in out.decisions if d.source_position >= out.noise_end]
    return {
        "drift_recovery_s": out.drift_recovery_s, "mode": mode,
        "first_production_s": out.first_production_s, "recovered_probe_accuracy": out.recovered_accuracy,
        "final_probe_accuracy": out.final_accuracy, "candidates": len(out.decisions),
        "promotions": sum(d.promoted for d in out.decisions),
        "noise_candidates": len(noise), "noise_promotions": sum(d.promoted for d in noise),
        "machine": machine(),
    }


def drift_recovery_s(mode: str = "sync") -> float | None:
    """Seconds from the label change reaching the topic to a promoted version scoring >= 0.9 on the
    post-change probe (what ``benchmarks.streaming`` reports)."""
    return asyncio.run(measure(mode))["drift_recovery_s"]  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="sync", choices=["sync", "async", "hybrid"])
    ap.add_argument("--quick", action="store_true", help="accepted for symmetry: the run is short")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(measure(args.mode))
    emit(result)
    return result


if __name__ == "__main__":
    main()
