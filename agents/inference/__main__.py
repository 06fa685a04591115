"""``python -m aiaas.agents.inference --model NAME ...``: see agents/inference/cli.py for the flags."""

from aiaas.agents.inference.cli import main

main()
