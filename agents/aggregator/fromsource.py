"""The aggregator's parts for a job that trains from a declared source (README, "Train from your topic").

``open_source`` fixes the job's range and scaling (``source.job_data``), reads the held-out rows (a
bounded range's all now; a continuous job's newest window in the background) and, for a continuous
job, opens the registry and the promotion gate (``gate.Gate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiaas.data.datainfo import JobData, check_fit
from aiaas.registry.store import Registry
from aiaas.schemas.errors import Unavailable
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.settings import Settings

from .gate import Gate
from .source import Holdout, job_data


@dataclass
class FromSource:
    data: JobData
    holdout: Holdout
    rows: int = 1  # rows that train: a bounded range's (epochs count them); 1 for a stream
    test: tuple[np.ndarray, np.ndarray] | None = None  # a bounded range's held-out rows
    gate: Gate | None = None  # continuous
    registry: Registry | None = None  # continuous

    async def stop(self) -> None:
        await self.holdout.stop()
        if self.registry is not None:
            await self.registry.stop()


async def open_source(settings: Settings, spec: JobSpec, wait_s: float) -> FromSource:
    data = await job_data(settings, spec, wait_s)
    check_fit(spec, data.info)
    holdout = Holdout(settings, spec, data)
    await holdout.start()
    if spec.mode == "continuous":
        holdout.follow()
        registry = Registry(settings)
        await registry.start()
        gate = Gate(spec, data, holdout, registry)
        await gate.start()
        return FromSource(data, holdout, gate=gate, registry=registry)
    await holdout.read_all()
    held = holdout.arrays()
    if held is None:
        raise Unavailable("the source range holds no held-out rows (too few records?)",
                          topic=holdout.reader.source.topic)
    return FromSource(data, holdout, rows=holdout.train_rows, test=held)
