"""``python -m agents.autoscaler --model NAME [--min 0 --max 4 ...]``: the same as ``aiaas autoscale``."""

import typer

from aiaas_cli.errors import guard
from aiaas_cli.ops import autoscale

guard(lambda: typer.run(autoscale))
