"""The torch knobs every training process has (trainers and the aggregator share one machine's cores)."""

from __future__ import annotations

import os
import sys

from pydantic import Field
from pydantic_settings import BaseSettings


def pin_to_cpu(cpu: int) -> int:
    """Pin this process (every thread it has now, and so every thread it starts later) to one CPU,
    taken modulo the CPUs there are; returns the CPU. Two trainers computing at once then each keep
    a core instead of being migrated between them (measured: sync rounds ~17% shorter on 2 cores)."""
    n = os.cpu_count() or 1
    target = {cpu % n}
    if hasattr(os, "sched_setaffinity"):  # Linux; elsewhere the OS decides
        tasks = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]
        for tid in tasks:
            try:
                os.sched_setaffinity(int(tid), target)
            except OSError:  # a thread that has just exited
                continue
    return cpu % n


class ComputeSettings(BaseSettings):
    """Subclasses set their own ``model_config`` (env prefix)."""

    threads: int = Field(default=1, ge=1, description="torch intra-op threads (cores are shared)")
    switch_interval_ms: float = Field(
        default=1.0, gt=0, description="GIL hand-off between the event loop and the torch thread "
        "(Python's 5 ms default adds up to 5 ms to a round when both want the GIL)")
    inline_below_ms: float = Field(
        default=10.0, ge=0, description="run torch work inline on the event loop while a call takes "
        "less than this (a thread hop costs more than a small model's step); 0: always a thread")
    cpu: int | None = Field(
        default=None, ge=0, description="pin the process to this CPU (modulo the CPUs there are); "
        "the local launcher gives a job's trainers one each when asked; None: the OS decides")

    def apply(self) -> None:
        """Set threads, GIL switch interval and CPU pinning for this process (call it first)."""
        from aiaas.ml.models import set_threads

        if self.cpu is not None:
            pin_to_cpu(self.cpu)
        set_threads(self.threads)
        sys.setswitchinterval(self.switch_interval_ms / 1000)
