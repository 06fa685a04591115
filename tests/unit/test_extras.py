"""Each extra's code imports only what that extra installs (pyproject.toml's optional dependencies).

A fresh venv per extra would take minutes; this checks the same thing from the import side, in a
clean interpreter per entry point: what the ``serve`` roles import stays clear of the ``train``
packages, and the client of everything but the base. ``tests/integration/test_client_install.py``
does the real install for the client.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

TRAIN_ONLY = {"torch", "faust", "sklearn", "matplotlib", "onnxscript"}
SERVE_ONLY = {"onnxruntime", "onnx", "redis", "fastapi", "uvicorn", "httpx", "safetensors", "uvloop"}


def _imported(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("module", ["aiaas", "aiaas.client", "aiaas.schemas", "aiaas.cli.main"])
def test_the_client_needs_only_the_base_install(module: str) -> None:
    assert not _imported(module) & (TRAIN_ONLY | SERVE_ONLY)


@pytest.mark.parametrize("module", ["aiaas.agents.inference.worker", "aiaas.agents.bridge.app",
                                    "aiaas.agents.autoscaler.controller"])
def test_serving_roles_need_no_training_packages(module: str) -> None:
    assert not _imported(module) & TRAIN_ONLY
