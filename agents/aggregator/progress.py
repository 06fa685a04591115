"""Where the job stands: budget, target, throughput, and where the time of a round goes.

Round breakdown (ms, medians over the job), trainer-side phases come with each gradient's header:
``compute`` (trainer forward/backward), ``serialize`` (compress + pack), ``grad_transit``
(produce -> broker -> fetch, sender clock to our clock; split by the broker's append timestamp into
``grad_produce`` and ``grad_fetch``), ``wait_peers`` (first to last gradient of a round), ``apply``
(average + optimizer step + pack the parameters), ``params_transit`` (produce -> broker -> trainer
fetch; ``params_produce`` + ``params_fetch``) and ``load`` (trainer loads the parameters). The
append timestamp has millisecond resolution, so the produce/fetch split is good to about 0.5 ms.
``ms_per_sync_round`` is what a trainer sees between sending a gradient and holding the
parameters that include it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict, deque

from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import MetricsMessage

from .rounds import Contribution


class Medians:
    """Median per name of the last ``keep`` values (robust to a slow first round or a GC pause)."""

    def __init__(self, keep: int = 512) -> None:
        self.values: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=keep))

    def add(self, name: str, value: float) -> None:
        self.values[name].append(value)

    def mean(self, name: str) -> float | None:
        vals = self.values.get(name)
        return float(statistics.median(vals)) if vals else None

    def all(self) -> dict[str, float]:
        return {k: float(statistics.median(v)) for k, v in self.values.items() if v}


class Progress:
    def __init__(self, spec: JobSpec, train_rows: int) -> None:
        self.spec = spec
        self.train_rows = max(1, train_rows)
        self.started: float | None = None  # wall clock when training started (version 0 published)
        self.reached_at: float | None = None
        self.samples = 0
        self.messages = 0
        self.grad_bytes = 0
        self.loss = Medians(keep=64)
        self.phases = Medians()
        self.best: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.last_eval_s: float | None = None  # when it was made, on the job's clock

    def received(self, c: Contribution) -> None:
        self.messages += 1
        self.grad_bytes += c.nbytes
        if c.loss is not None:
            self.loss.add("loss", c.loss)
        self.phases.add("grad_transit", c.transit_ms)
        if c.produce_ms is not None:  # the broker's append time splits the transit
            self.phases.add("grad_produce", min(c.produce_ms, c.transit_ms))
            self.phases.add("grad_fetch", max(0.0, c.transit_ms - c.produce_ms))
        for name, ms in c.timings.items():
            self.phases.add(name, ms)

    def start(self) -> None:
        """The clock starts when the trainers get their first parameters (after the rendezvous)."""
        self.started = time.time()

    def applied(self, samples: int, apply_ms: float, wait_ms: float | None) -> None:
        self.samples += samples
        self.phases.add("apply", apply_ms)
        if wait_ms is not None:
            self.phases.add("wait_peers", wait_ms)

    @property
    def epoch(self) -> float:
        return self.samples / self.train_rows

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.time() - self.started

    def steps(self, version: int) -> int:
        """Optimizer steps so far: versions, or versions x local steps where trainers step locally."""
        s = self.spec
        return version * s.sync.local_steps if s.sync.mode in ("hybrid", "ring") else version

    def out_of_budget(self, version: int) -> str | None:
        """Why the job is over by its budget (None while it is not)."""
        s = self.spec
        if s.epochs is not None and self.epoch >= s.epochs:
            return "epochs"
        if s.steps is not None and self.steps(version) >= s.steps:
            return "steps"
        return None

    def evaluated(self, metrics: dict[str, float]) -> bool:
        """Record test metrics; True when they meet the target (the first time is timed)."""
        self.last_eval = metrics
        self.last_eval_s = self.elapsed() if self.started is not None else None
        t = self.spec.target
        if t is None or t.metric not in metrics:
            return False
        value = metrics[t.metric]
        met = value >= t.value if t.maximize else value <= t.value
        if met and self.reached_at is None:
            self.reached_at = time.time()
        return met

    def message(self, version: int, metrics: dict[str, float], *, live: int, dropped: int,
                rejected: int) -> MetricsMessage:
        """The metrics record published after an evaluation of ``version``."""
        elapsed = self.elapsed()
        return MetricsMessage(
            job_id=self.spec.job_id, version=version, epoch=self.epoch, loss=self.loss.mean("loss"),
            test_loss=metrics.get("test_loss"), test_accuracy=metrics.get("test_accuracy"),
            samples_per_s=self.samples / elapsed if elapsed > 0 else None,
            grad_bytes=int(self.grad_bytes / self.messages) if self.messages else None,
            live_workers=live, dropped_stale=dropped, rejected=rejected, ts=time.time(),
            seconds=self.last_eval_s,
            timings=self.phases.all(),
        )

    def round_ms(self) -> float | None:
        """Trainer's view of one round: gradient serialized and sent -> parameters held."""
        wait, ser = self.phases.mean("wait"), self.phases.mean("serialize")
        if wait is not None:
            return wait + (ser or 0.0) + (self.phases.mean("load") or 0.0)
        parts = [self.phases.mean(k) for k in ("serialize", "grad_transit", "apply", "params_transit")]
        return sum(p for p in parts if p is not None) or None

    def summary(self) -> dict[str, float]:
        """Figures for the final JobStatus (and the benchmark)."""
        out = dict(self.last_eval)
        elapsed = self.elapsed()
        out |= {"samples": float(self.samples), "epochs": self.epoch, "seconds": elapsed,
                "samples_per_s": self.samples / elapsed if elapsed > 0 else 0.0,
                "grad_bytes_per_step": self.grad_bytes / self.messages if self.messages else 0.0}
        if self.reached_at is not None and self.started is not None:
            out["seconds_to_target"] = self.reached_at - self.started
        rms = self.round_ms()
        if rms is not None:
            out["ms_per_sync_round"] = rms
        out |= {f"round_ms.{k}": v for k, v in self.phases.all().items()}
        loss = self.loss.mean("loss")
        if loss is not None:
            out["train_loss_mean"] = loss
        return out
