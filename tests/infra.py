"""Test helpers that start the project's real infrastructure (Kafka broker, Redis) when needed, and
the secured (SASL/SCRAM + ACL) broker of the SASL and ACL tests."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiaas.agents.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
# The clone's infrastructure state, as the Makefile passes it (an installed aiaas defaults to
# ~/.cache/aiaas/state): the broker and Redis the tests use were started with these.
CLONE_STATE = {"AIAAS_STATE_DIR": str(ROOT / ".run"),
               "AIAAS_KAFKA_LIBS": str(ROOT / "infra" / "kafka" / "libs")}
# The JVM options of a test's own short-lived broker: a small heap, and the C1 JIT only (C2 compiling
# the start-up paths was ~1.4 of the ~3.6 CPU-seconds a broker took to be ready; a test's few
# thousand records never need C2's code). The shared broker keeps infra/kafka/env.sh's defaults.
TEST_BROKER_JVM = "-Xms128m -Xmx384m -XX:TieredStopAtLevel=1"


def use_clone_state() -> None:
    """Point this process and every child (infra scripts, agents) at the clone's state dir, unless
    the environment names one already (``make test`` does)."""
    for name, value in CLONE_STATE.items():
        os.environ.setdefault(name, value)


def ensure_infra() -> None:
    """Run ``infra/up.sh`` (idempotent: a no-op when the broker and Redis already run)."""
    if os.environ.get("AIAAS_EXTERNAL_INFRA") == "1":
        return
    subprocess.run([str(ROOT / "infra" / "up.sh")], check=True, capture_output=True, timeout=300)


def distinct_free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now, all different (below the ephemeral range: free_port)."""
    ports: list[int] = []
    while len(ports) < n:
        ports.append(free_port(taken=ports))
    return ports


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a SIGKILLed broker nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cluster_id() -> str:
    """A fresh KRaft cluster id (22 base64url characters; saves start.sh a JVM start). Like Kafka's
    own ``Uuid.randomUuid`` it never starts with '-', which a command line would take for an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM a process we started (by its pid only), SIGKILL if it does not exit in time."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)  # polling the exit condition, not synchronising on time
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


AUTHORIZER_LOG = "log4j.logger.kafka.authorizer.logger=DEBUG\n"


@dataclass(frozen=True)
class SecuredBroker:
    """A broker of ``infra/kafka/sasl-broker.sh start --acl``: SCRAM listener on ``port``, access
    control on, ``admin``/``password`` its super user, state (and credentials files) in ``state``."""

    port: int
    state: Path
    admin: str
    password: str

    def authorizer_log(self) -> str:
        """The broker's log: with the authorizer's lines, ``Principal = User:u is Allowed operation =
        WRITE ... on resource = Topic:LITERAL:name ...`` for each request it allowed or denied."""
        return (self.state / "kafka.log").read_text(errors="replace")

    def env(self) -> dict[str, str]:
        """``AIAAS_*`` settings of the admin (the CLI's user): address, login and state dir."""
        return {"AIAAS_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.port}",
                "AIAAS_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "AIAAS_SASL_MECHANISM": "SCRAM-SHA-256",
                "AIAAS_SASL_USERNAME": self.admin, "AIAAS_SASL_PASSWORD": self.password,
                "AIAAS_STATE_DIR": str(self.state)}


@contextlib.contextmanager
def secured_broker(state: Path, admin: str = "admin",
                   password: str = "acl-admin-secret") -> Iterator[SecuredBroker]:
    """Start an ACL broker on free ports in ``state`` with the project's script; stopped by pid."""
    internal, controller, port = distinct_free_ports(3)
    state.mkdir(parents=True, exist_ok=True)
    log4j = state / "log4j.properties"  # ours plus every authorizer decision (who did what) in kafka.log
    log4j.write_text((ROOT / "infra" / "kafka" / "log4j.properties").read_text() + AUTHORIZER_LOG)
    env = {**os.environ, "AIAAS_KAFKA_LOG4J": str(log4j), "AIAAS_SASL_STATE_DIR": str(state),
           "AIAAS_SASL_PLAINTEXT_PORT": str(internal),
           "AIAAS_SASL_CONTROLLER_PORT": str(controller), "AIAAS_SASL_PORT": str(port),
           "AIAAS_KAFKA_SASL_USER": admin, "AIAAS_KAFKA_SASL_PASSWORD": password,
           "AIAAS_KAFKA_CLUSTER_ID": cluster_id(), "AIAAS_SASL_HEAP": TEST_BROKER_JVM}
    script = ROOT / "infra" / "kafka" / "sasl-broker.sh"
    try:
        started = subprocess.run([str(script), "start", "--acl"], env=env, capture_output=True, text=True,
                                 timeout=180)
        assert started.returncode == 0, f"ACL broker did not start:\n{started.stdout}\n{started.stderr}"
        yield SecuredBroker(port=port, state=state, admin=admin, password=password)
    finally:
        pid_file = state / "kafka.pid"
        if pid_file.exists():
            stop_pid(int(pid_file.read_text()))
