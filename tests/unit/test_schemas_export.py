"""`aiaas schemas export` writes one valid JSON Schema per message kind."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aiaas.cli.main import app


def test_export_writes_every_kind(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    kinds = {p.name.removesuffix(".schema.json") for p in tmp_path.glob("*.schema.json")}
    assert {"inference_request", "inference_response", "error_reply", "job_spec", "job_status",
            "data_batch", "gradient", "parameters", "metrics", "model_version", "dead_letter",
            "audit"} <= kinds
    spec = json.loads((tmp_path / "job_spec.schema.json").read_text())
    assert spec["properties"]["kind"] == {"const": "job_spec"}
    assert "job_id" in spec["required"]
