"""Printing listings: rich tables at full width (never cut names when piped) or JSON (``--json``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (one array) instead of a table")]
WIDE = 10_000


def console() -> Console:
    """A console for stdout; when stdout is not a terminal tables are not squeezed to 80 columns."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=WIDE)


def show(table: Table) -> None:
    console().print(table)


def show_json(rows: Any) -> None:
    """Write ``rows`` (JSON-able) as one JSON document on stdout."""
    sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
