"""``python -m aiaas.agents.autoscaler --model NAME [--min 0 --max 4 ...]``:
the same as ``aiaas autoscale``."""

import typer

from aiaas.cli.errors import guard
from aiaas.cli.ops import autoscale

guard(lambda: typer.run(autoscale))
