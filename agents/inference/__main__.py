"""``python -m agents.inference --model NAME ...``: see agents/inference/cli.py for the flags."""

from agents.inference.cli import main

main()
