"""Continuous training from the user's topic on the real broker: concept drift and the promotion gate.

Digits stream with its labels permuted at record 10,000: within 60 s of the change reaching the
topic, production scores >= 0.9 on a probe of permuted digits; a following stretch of 2,000
random-label records is never promoted (the gate's floor and tolerance; production's probe accuracy
stays within tolerance). Every candidate's decision is on the metrics topic.
"""

from __future__ import annotations

import pytest

from aiaas.streams.settings import Settings
from tests.driftscenario import GOOD, run_drift

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_drift_is_followed_and_noise_is_kept_out(settings: Settings, mode: str) -> None:
    out = await run_drift(settings, mode=mode)
    assert out.drift_recovery_s is not None and out.drift_recovery_s <= 60.0, out.drift_recovery_s
    assert out.recovered_accuracy >= GOOD
    assert out.final_accuracy >= out.recovered_accuracy - 0.02 - 0.03  # tolerance + probe noise
    after_noise = [d for d in out.decisions if d.source_position >= out.noise_end]
    assert len(after_noise) >= 3 and not any(d.promoted for d in after_noise)
    promoted = [d for d in out.decisions if d.promoted]
    assert len(promoted) >= 2 and all(d.model_version is not None for d in promoted)
    assert all(d.window_rows > 0 for d in out.decisions)
