"""The client as a user installs it: a fresh venv with only ``aiaas[client]`` (a built wheel, not this
checkout) runs the README's Python example against the real broker, and ``import aiaas`` brings
neither torch nor onnxruntime. It also checks that the wheel carries the infra scripts as files."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests import examples
from tests.spawn import run_to_end
from tests.workers import running_worker

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "onnxruntime", "onnx", "faust", "sklearn", "redis", "fastapi", "uvicorn")


def readme_example() -> str:
    """The Python block that follows the ``client-example`` marker in README.md."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- client-example.*?-->\n```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its client example"
    return found.group(1)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding aiaas[client] built from this tree, and nothing else of ours."""
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (make setup installs it)"
    tmp = tmp_path_factory.mktemp("client")
    venv = tmp / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}

    def run(*argv: str) -> None:
        done = subprocess.run([uv, *argv], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"uv {argv[0]} failed:\n{done.stderr[-3000:]}"

    # sdist first, then the wheel from it (uv build's default): what a user gets from an index,
    # with no leftovers of an in-tree build/ folder
    run("build", "--quiet", "--out-dir", str(tmp / "dist"), str(ROOT))
    wheel = next((tmp / "dist").glob("aiaas-*.whl"))
    run("venv", "--quiet", "--python", sys.executable, str(venv))
    run("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
        f"aiaas[client] @ {wheel.as_uri()}")
    return venv


async def _in_venv(venv: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    code, out, err = await run_to_end(str(venv / "bin" / "python"), *argv, timeout_s=120,
                                      env={**clean, **(env or {})}, cwd="/")
    assert code == 0, f"exit {code}:\n{out.decode()}\n{err.decode()}"
    return out.decode()


async def test_client_extra_imports_no_heavy_packages(client_venv: Path) -> None:
    out = await _in_venv(client_venv, "-c", (
        "import importlib.util, sys, pathlib, aiaas; "
        f"print(sorted(m for m in {HEAVY!r} if importlib.util.find_spec(m) is not None)); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); "
        "print(aiaas.__file__); "
        "up = pathlib.Path(aiaas.__file__).parent / 'infra' / 'up.sh'; "
        "print(up.is_file() and not up.is_symlink()); "
        "print(sorted(m for m in ('streams', 'schemas', 'agents', 'benchmarks', 'tests', 'aiaas_cli') "
        "if importlib.util.find_spec(m) is not None))"))
    installed, imported, where, infra_file, generic = out.strip().splitlines()
    assert generic == "[]", f"generic top-level packages installed: {generic}"
    assert installed == "[]", f"the client extra installed {installed}"
    assert imported == "[]"
    assert "site-packages" in where and str(ROOT) not in where  # the wheel, not this checkout
    assert infra_file == "True"  # the infra scripts ship as package data, real files


async def test_readme_client_example_runs_against_the_broker(
    client_venv: Path, settings: Settings
) -> None:
    onnx_model, _, _ = examples.digits_mlp(hidden=16)
    async with Registry(settings) as reg:
        await reg.publish("digits", onnx_model)
    env = {"AIAAS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "AIAAS_TOPIC_PREFIX": settings.topic_prefix}
    async with running_worker(settings, model="digits"):
        out = await _in_venv(client_venv, "-c", readme_example(), env=env)
    first, second = out.strip().splitlines()[-2:]
    outputs = ast.literal_eval(first)  # the example prints a dict of plain lists
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    want = session.run(None, {"input": np.zeros((1, 64), dtype=np.float32)})
    names = [o.name for o in session.get_outputs()]
    assert sorted(outputs) == sorted(names)
    for name, value in zip(names, want, strict=True):
        np.testing.assert_allclose(np.asarray(outputs[name]), value, rtol=1e-5, atol=1e-6)
    assert second.startswith("error: not_found")


async def test_a_command_of_a_missing_extra_says_which_to_install(client_venv: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    code, _, err = await run_to_end(str(client_venv / "bin" / "aiaas"), "worker", "inference",
                                    "--model", "digits", timeout_s=60, env=clean, cwd="/")
    assert code != 0
    assert "pip install 'aiaas[serve]'" in err.decode(), err.decode()
    assert "Traceback" not in err.decode()
