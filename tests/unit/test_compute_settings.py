"""CPU pinning of a training process: every thread, including those started later, on one CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aiaas.agents.trainer.settings import TrainerSettings

PROBE = """
import json, os, threading
from aiaas.agents.trainer.settings import TrainerSettings
TrainerSettings(worker_id="probe").apply()
seen = {}
t = threading.Thread(target=lambda: seen.update(cpus=sorted(os.sched_getaffinity(0))))
t.start(); t.join()
print(json.dumps({"main": sorted(os.sched_getaffinity(0)), "thread": seen["cpus"]}))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_apply_pins_the_process_and_later_threads_to_one_cpu() -> None:
    n = os.cpu_count() or 1
    env = {**os.environ, "AIAAS_TRAINER_CPU": str(n + 1)}  # taken modulo the CPUs there are
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"main": [(n + 1) % n], "thread": [(n + 1) % n]}


def test_no_cpu_means_no_pinning() -> None:
    assert TrainerSettings(worker_id="w").cpu is None
