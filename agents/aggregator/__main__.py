"""``python -m aiaas.agents.aggregator --job J [--spec job.yaml] [--threads N] [--shard I]``."""

from __future__ import annotations

import argparse

parser = argparse.ArgumentParser(prog="python -m aiaas.agents.aggregator", description=__doc__)
parser.add_argument("--job", required=True)
parser.add_argument("--spec", default=None)
parser.add_argument("--threads", type=int, default=None)
parser.add_argument("--shard", type=int, default=0, help="this process's shard (aggregator.shards)")
args = parser.parse_args()

from .main import main  # noqa: E402 (after the arguments: --help answers without importing torch)

main(args.job, args.spec, args.threads, args.shard)
