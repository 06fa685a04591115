"""One line per failure for people at a terminal: what is wrong, the address tried, what to run.

``aiaas`` and the ``python -m aiaas.agents.<role>`` entry points run their command through
``guard``: an ``AiaasError``, an unreachable Kafka broker or Redis, a missing file, or a package of
an extra that is not installed becomes one line on stderr and a non-zero exit code. ``--debug``
(or ``AIAAS_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
INFRA_HINT = "start the local broker and Redis with `aiaas infra up`"
# top-level packages of pyproject.toml's extras -> the extra that installs them
EXTRA_OF = {**dict.fromkeys(("torch", "faust", "sklearn", "matplotlib", "onnxscript"), "train"),
            **dict.fromkeys(("onnxruntime", "onnx", "redis", "fastapi", "uvicorn", "httpx", "safetensors",
                             "uvloop", "prometheus_client", "opentelemetry"), "serve")}


def debug_enabled() -> bool:
    return os.environ.get("AIAAS_DEBUG", "").lower() in ("1", "true", "yes", "on")


class _BootstrapNoise(logging.Filter):
    """aiokafka logs every refused bootstrap connection at ERROR; start-up retries them to a
    deadline (aiaas.streams.retry) and then says it in one line, so the per-try lines only add noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to \"")


def set_debug(on: bool) -> None:
    """Remember ``--debug`` for this process and its children (they read ``AIAAS_DEBUG``)."""
    if on:
        os.environ["AIAAS_DEBUG"] = "1"
        return
    # one-shot commands: the one line below says it; agents (setup_logging) keep WARNING
    kafka_log = logging.getLogger("aiokafka")
    kafka_log.setLevel(logging.CRITICAL)
    if not any(isinstance(f, _BootstrapNoise) for f in kafka_log.filters):
        kafka_log.addFilter(_BootstrapNoise())


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        if isinstance(cur, BaseExceptionGroup):
            todo.extend(cur.exceptions)
        todo.extend(e for e in (cur.__cause__, cur.__context__) if e is not None)


def _setting(name: str) -> str:
    try:
        from aiaas.streams.settings import Settings

        return str(getattr(Settings(), name))
    except Exception:  # the settings themselves may be what is broken
        return "?"


def _kafka_line(exc: BaseException) -> str:
    return (f"cannot reach Kafka at {_setting('bootstrap_servers')} ({_what(exc)}); "
            f"{INFRA_HINT}, or set AIAAS_BOOTSTRAP_SERVERS to your brokers")


def _redis_line(exc: BaseException) -> str:
    return (f"cannot reach Redis at {_setting('redis_url')} ({_what(exc)}); {INFRA_HINT}, "
            f"or set AIAAS_REDIS_URL")


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list | tuple) and all(isinstance(x, str) for x in v):
        return ", ".join(v)
    return json.dumps(v, default=str)


def _what(exc: BaseException) -> str:
    text, kind = str(exc), type(exc).__name__
    return text if text.startswith(kind) else f"{kind}: {text}" if text else kind


def _aiaas_line(exc: Any) -> str:
    bootstrap = exc.details.get("bootstrap")
    if isinstance(bootstrap, str) and bootstrap in exc.reason:
        return str(exc.reason)  # already one self-contained line (aiaas.streams.retry's KafkaUnavailable)
    details = ", ".join(f"{k}={_value(v)}" for k, v in exc.details.items() if k != "log_tail")
    line = f"{exc.reason} ({details})" if details else str(exc.reason)
    if exc.code.value == "unavailable" and bootstrap and "infra up" not in line:
        line += f"; {INFRA_HINT}, or set AIAAS_BOOTSTRAP_SERVERS"
    return line


def _redis_errors() -> tuple[type[BaseException], ...]:
    """Redis's connection errors, or none when the serve extra (redis) is not installed."""
    try:
        import redis.exceptions as redis_errors
    except ModuleNotFoundError:
        return ()
    return (redis_errors.ConnectionError, redis_errors.TimeoutError)


def describe(exc: BaseException) -> str | None:
    """The one line for a failure a user can act on, or None for a bug (show the traceback)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable

    from aiaas.schemas.errors import AiaasError

    chain = list(_chain(exc))
    for cur in chain:
        missing = (cur.name or "").partition(".")[0] if isinstance(cur, ModuleNotFoundError) else ""
        if missing in EXTRA_OF:
            return (f"this command needs {missing}, which the {EXTRA_OF[missing]!r} extra installs: "
                    f"pip install 'aiaas[{EXTRA_OF[missing]}]'")
    # Redis first: the bridge's stores wrap its errors in an AiaasError that does not name the address.
    for kinds, line in ((_redis_errors(), _redis_line),
                        (AiaasError, _aiaas_line),
                        (KafkaConnectionError | KafkaTimeoutError | NoBrokersAvailable, _kafka_line)):
        for cur in chain:
            if isinstance(cur, kinds):
                return line(cur)
    for cur in chain:
        if isinstance(cur, FileNotFoundError):
            return f"no such file: {cur.filename or cur}"
    return None


def fail(line: str, code: int = 1) -> NoReturn:
    """Print ``error: line`` on stderr and exit with ``code``."""
    print(f"error: {line}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def report(exc: BaseException) -> NoReturn:
    """Exit with the one line for ``exc`` (the traceback first with ``--debug``)."""
    if debug_enabled():
        import traceback

        traceback.print_exception(exc)
    fail(describe(exc) or _what(exc))


def guard(main: Callable[[], T]) -> T:
    """Run ``main``; a known failure exits with one line (the traceback too with ``--debug``)."""
    try:
        return main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if describe(exc) is None:
            raise
        report(exc)
