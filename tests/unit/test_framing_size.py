"""The framing code's size, reproducible (issue 15: "the framing code is at most half of today's
lines"): the modules that encode, decode, pack, split or answer inference records, counted as the
lines of their files.

Baseline, the same roles at commit 6129603^ (before the one frame), 12 files, 1868 lines:
streams/batchwire.py 86, blockwire.py 151, replywire.py 160, tensorcodec.py 219, tensorarrays.py 149,
layoutcache.py 122, aiaas/client/tickbatches.py 231, agents/inference/blocks.py 97, replies.py 129,
replier.py 237, intake.py 203, outbox.py 84. ``python tests/unit/test_framing_size.py`` prints the
table. 1245 lines now (67%), after the OIP binary extension became an HTTP-only form (the bridge's
edge; a Kafka record of it gets an error reply), tensors got one JSON writer, every answer became an
entry (an OIP request gets the JSON record its entry stands for) and the client packs requests of
their own and rows in one path. Two things that are not framing left the counted files: the
client's flow-control semaphore (aiaas/client/slots.py; the baseline's tickbatches.py did not have
it) and the sending of reply records, whatever they hold: reply-topic partitions, sealing, chunks,
the size cap (agents/inference/delivery.py, 60 lines; the baseline's replier.py counted them).
The issue's target (half: 934) is not reached; ``BUDGET`` keeps the figure from growing back.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMING = [
    "streams/frame.py", "streams/replywire.py", "streams/tensorcodec.py", "aiaas/client/tickbatches.py",
    "agents/inference/blocks.py", "agents/inference/replies.py", "agents/inference/replier.py",
    "agents/inference/intake.py", "agents/inference/outbox.py",
]
BASELINE = 1868
BUDGET = 1245


def lines() -> dict[str, int]:
    return {path: len((ROOT / path).read_text().splitlines()) for path in FRAMING}


def test_framing_code_stays_within_its_budget() -> None:
    counted = lines()
    assert sum(counted.values()) <= BUDGET, counted


if __name__ == "__main__":
    counted = lines()
    for path, n in counted.items():
        print(f"{n:5d} {path}")
    total = sum(counted.values())
    print(f"{total:5d} total ({total / BASELINE:.0%} of the {BASELINE} lines before the one frame)")
