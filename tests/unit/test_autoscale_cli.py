"""``aiaas autoscale`` is registered and refuses a bad policy before touching the broker."""

from __future__ import annotations

from typer.testing import CliRunner

from aiaas.cli.main import app


def test_autoscale_is_a_command() -> None:
    result = CliRunner().invoke(app, ["autoscale", "--help"])
    assert result.exit_code == 0
    assert "--min" in result.output and "--max" in result.output and "--lag-threshold" in result.output


def test_min_above_max_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["autoscale", "--model", "m", "--min", "3", "--max", "2"])
    assert result.exit_code == 2
    assert "min_replicas 3 > max_replicas 2" in result.output
