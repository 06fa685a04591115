"""The benchmark helpers behind the figures: repeats summarised, results turned into the report,
py-spy profiles ranked, and the load generator's HTTP/1.1 reading, on a real local socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiaas.schemas.errors import Unavailable
from benchmarks import hotspots, report
from benchmarks.common import add_repeat, machine, spread
from benchmarks.httpload import Round, read_response, request_bytes, run_round
from benchmarks.peers import summarize
from benchmarks.peerservers import Server, ensure_mlserver


def _rounds(rates: list[float], latency: float) -> list[Round]:
    return [Round(1, requests=int(r * 2), seconds=2.0, latencies_ms=[latency] * 95 + [latency * 3] * 5)
            for r in rates]


def test_spread_is_median_with_min_and_max() -> None:
    assert spread("req_per_s", [3.0, 1.0, 2.0, 10.0, 4.0], 1) == {
        "req_per_s": 3.0, "req_per_s_min": 1.0, "req_per_s_max": 10.0}
    with pytest.raises(ValueError):
        spread("x", [])


def test_repeat_defaults_to_three_and_machine_names_the_cpu() -> None:
    parser = argparse.ArgumentParser()
    add_repeat(parser)
    assert parser.parse_args([]).repeat == 3
    assert parser.parse_args(["--repeat", "5"]).repeat == 5
    m = machine()
    assert m["cpus"] >= 1 and isinstance(m["cpu_model"], str) and m["cpu_model"]


def test_summarize_gives_medians_and_the_median_of_per_repeat_ratios() -> None:
    rounds = {"mlserver": {1: _rounds([100, 110, 90], 5.0), 32: _rounds([1000, 900, 800], 30.0)},
              "aiaas": {1: _rounds([200, 330, 180], 2.0), 32: _rounds([1500, 1800, 1600], 20.0)}}
    result = summarize(rounds)
    assert set(result) == {"peers", "machine", *(f"ratio_vs_mlserver_c{c}{s}" for c in (32, 1)
                                                  for s in ("", "_min", "_max"))}
    c32 = result["peers"]["aiaas"]["c32"]
    assert (c32["req_per_s"], c32["req_per_s_min"], c32["req_per_s_max"]) == (1600, 1500, 1800)
    assert c32["p50_ms"] == 20.0 and c32["p99_ms"] == 60.0
    assert result["ratio_vs_mlserver_c32"] == 2.0  # per repeat: 1.5, 2.0, 2.0
    assert (result["ratio_vs_mlserver_c32_min"], result["ratio_vs_mlserver_c32_max"]) == (1.5, 2.0)
    assert result["ratio_vs_mlserver_c1"] == 2.0  # per repeat: 2.0, 3.0, 2.0


def test_report_writes_the_table_and_both_plots(tmp_path: Path) -> None:
    rounds = {"mlserver": {1: _rounds([100, 110], 5.0), 32: _rounds([1000, 900], 30.0)},
              "aiaas": {1: _rounds([200, 220], 2.0), 32: _rounds([1500, 1800], 20.0)}}
    text = "peers: some progress on stderr\n" + json.dumps(summarize(rounds)) + "\n"
    result = report.last_json(text)
    assert result is not None and report.levels(result) == [1, 32]
    md = report.write_report({"peers": result, "bridge": {"http_per_s": 812.5, "nested": {}}},
                             tmp_path, "2026-01-02")
    body = md.read_text()
    assert md.name == "2026-01-02.md"
    assert "| 32 | 950 (900-1000) | 1650 (1500-1800) | **1.75** |" in body
    assert "| http_per_s | 812.5 |" in body and "nested" not in body
    for png in ("2026-01-02-peers-throughput.png", "2026-01-02-peers-p99.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in body
    assert report.last_json("no json here\n{broken") is None


def test_hotspots_rank_self_and_inclusive_time_per_function() -> None:
    text = ("main (app.py:1);loop (aio/base.py:10);parse (json/dec.py:5) 30\n"
            "main (app.py:1);loop (aio/base.py:12);run (site-packages/ort/s.py:7) 60\n"
            "main (app.py:2);loop (aio/base.py:10) 10\n")
    ranked = hotspots.top(hotspots.parse_collapsed(text), 2)
    assert ranked["self"] == [("run (ort/s.py)", 60.0), ("parse (json/dec.py)", 30.0)]
    assert set(ranked["inclusive"]) == {("main (app.py)", 100.0), ("loop (aio/base.py)", 100.0)}
    assert ranked["package"] == [("ort", 60.0), ("json", 30.0)]
    assert hotspots.package_of("f (aiaas/agents/bridge/core.py)") == "aiaas/agents/bridge"
    assert hotspots.package_of("g (<frozen runpy>)") == "<frozen runpy>"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A tiny keep-alive HTTP/1.1 server: 200 with Content-Length, one chunked reply, 503 on /fail."""
    n = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            n += 1
            if n == 2:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            elif head.startswith(b"POST /fail "):
                writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def test_load_generator_reads_both_framings_and_fails_on_an_error_reply() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payload = request_bytes("127.0.0.1", port, "/x", b"{}", {"Authorization": "Bearer k"})
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        for _ in range(2):
            writer.write(payload)
            replies.append(await read_response(reader))
        assert replies == [(200, b"ok"), (200, b"abcde")]
        writer.close()
        done = await run_round("127.0.0.1", port, payload, 2, 0.2)
        assert done.requests == len(done.latencies_ms) > 0 and done.req_per_s > 0
        failing = request_bytes("127.0.0.1", port, "/fail", b"{}", {})
        with pytest.raises(RuntimeError, match="HTTP 503"):
            await run_round("127.0.0.1", port, failing, 1, 30.0)


def test_server_cpu_counts_every_process_of_its_session(tmp_path: Path) -> None:
    """A parent that burns CPU in a child: the child's time is the server's too."""
    code = ("import subprocess, sys, time; subprocess.run([sys.executable, '-c', "
            "'import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass']); "
            "time.sleep(30)")
    log = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log.open("wb"), start_new_session=True)
    server = Server("busy", 0, "/", proc, log)
    try:
        deadline = time.monotonic() + 20
        while server.cpu_seconds() < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the measured quantity, not synchronising on a guess
        assert server.cpu_seconds() >= 0.3
    finally:
        server.stop(grace_s=5)
    assert proc.returncode is not None


def test_a_peer_that_cannot_be_installed_is_an_error_not_a_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no uv on it
    with pytest.raises(Unavailable, match="uv is not installed"):
        ensure_mlserver(tmp_path / "mlserver")


def _training_result() -> dict[str, object]:
    """What ``python -m benchmarks.training --repeat 2 --only sync,ddp_gloo`` prints, in small."""
    curve = [[0.1, 0.8], [0.2, 0.9], [0.3, 0.96]]
    skipped = {"status": "skipped", "seconds_to_target": None}
    return {
        "target_accuracy": 0.95,
        "single_process": skipped,
        "ddp_gloo": {"status": "ok", "seconds_to_target": 0.2, "seconds_to_target_min": 0.19,
                     "seconds_to_target_max": 0.25, "seconds_to_target_runs": [0.25, 0.19], "repeats": 2,
                     "curve": curve},
        "modes": {"sync": {"status": "ok", "seconds_to_target": 0.5, "seconds_to_target_min": 0.45,
                           "seconds_to_target_max": 0.55, "seconds_to_target_runs": [0.55, 0.45],
                           "repeats": 2, "curve": curve},
                  "ring": {"status": "target_not_reached", "seconds_to_target": None, "repeats": 2},
                  "async": skipped, "hybrid": skipped},
        "machine": {"cpus": 2, "cpu_model": "test cpu", "python": "3.11"},
    }


def test_training_ratio_is_the_median_of_per_repeat_ratios_and_null_when_a_repeat_missed() -> None:
    from benchmarks.training import ratio

    ddp = {"seconds_to_target": 0.2, "seconds_to_target_runs": [0.2, 0.25, 0.1]}
    sync = {"seconds_to_target": 0.4, "seconds_to_target_runs": [0.4, 0.25, 0.5]}
    got = ratio(sync, ddp, "r")
    assert (got["r"], got["r_min"], got["r_max"], got["r_runs"]) == (2.0, 1.0, 5.0, [2.0, 1.0, 5.0])
    missed = {"seconds_to_target": None, "seconds_to_target_runs": [0.4, None, 0.5]}
    assert ratio(missed, ddp, "r") == {"r": None}


def test_median_curve_is_the_median_repeats_and_a_missed_target_counts_as_slowest() -> None:
    from benchmarks.training_baselines import median_curve, reached_spread

    curves = [[[1.0, 0.9]], [[2.0, 0.9]], [[3.0, 0.9]]]
    assert median_curve(curves, [0.3, None, 0.1]) == [[1.0, 0.9]]  # order: 0.1, 0.3, missed
    assert reached_spread([0.3, 0.1, 0.2], 3) == {
        "seconds_to_target": 0.2, "seconds_to_target_min": 0.1, "seconds_to_target_max": 0.3}
    assert reached_spread([0.3], 2) == {"seconds_to_target": None}


def test_report_has_the_training_table_and_curves(tmp_path: Path) -> None:
    md = report.write_report({"training": _training_result()}, tmp_path, "2026-01-03")
    body = md.read_text()
    assert "| torch DDP (gloo, 2 processes) | 0.200 (0.190-0.250) | 2 |" in body
    assert "| aiaas sync | 0.500 (0.450-0.550) | 2 |" in body
    assert "| aiaas ring | not reached (target_not_reached) | 2 |" in body
    assert "one torch process" not in body and "aiaas async" not in body  # skipped: not shown
    assert (tmp_path / "2026-01-03-training-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_table_is_refreshed_between_its_markers_only() -> None:
    from benchmarks import readme_table

    results = {"training": {"time_ratio_sync_vs_ddp": 2.5, "time_ratio_sync_vs_ddp_min": 2.1,
                            "time_ratio_sync_vs_ddp_max": 2.9, "time_ratio_best_vs_ddp": 0.45},
               "inference": {"models": {"mlp-large": {"ratio_kafka_vs_limit": 0.91}}}}
    readme = f"# x\nbefore\n{readme_table.START}\nold table\n{readme_table.END}\nafter\n"
    new = readme_table.refresh(readme, results, "From a test run.")
    assert new.startswith("# x\nbefore\n") and new.endswith(f"{readme_table.END}\nafter\n")
    assert "old table" not in new and "From a test run." in new
    assert "| `training`: `time_ratio_sync_vs_ddp` | 2.5 (2.1-2.9) | <= 1.5 | no |" in new
    assert "| `training`: `time_ratio_best_vs_ddp` | 0.45 | <= 0.5 | yes |" in new
    assert "| `inference`: `ratio_kafka_vs_limit` | 0.91 | >= 0.9 | yes |" in new
    assert "peers" not in new  # not run: no row, never a made-up figure
    with pytest.raises(ValueError):
        readme_table.refresh("# no markers\n", results, "")


def test_the_readme_has_its_headline_block() -> None:
    from benchmarks import readme_table

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert text.count(readme_table.START) == 1 and text.count(readme_table.END) == 1
