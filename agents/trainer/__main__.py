"""``python -m aiaas.agents.trainer --job J [--spec job.yaml] [--worker-id W] [--threads N]``."""

from __future__ import annotations

import argparse

parser = argparse.ArgumentParser(prog="python -m aiaas.agents.trainer", description=__doc__)
parser.add_argument("--job", required=True)
parser.add_argument("--spec", default=None)
parser.add_argument("--worker-id", default=None)
parser.add_argument("--threads", type=int, default=None)
args = parser.parse_args()

from .main import main  # noqa: E402 (after the arguments: --help answers without importing torch)

main(args.job, args.spec, args.worker_id, args.threads)
