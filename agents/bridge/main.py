"""Process entry of the bridge: uvicorn serving the app on uvloop (``aiaas worker bridge``).

The HTTP port is bound before the app's start-up opens its Kafka and Redis connections: a port in
the ephemeral range could otherwise be taken by one of the bridge's own outgoing connections.
"listening" is logged once uvicorn accepts requests on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import uvicorn

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.httpproto import protocol_for
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import Unavailable
from aiaas.streams.lifecycle import within
from aiaas.streams.runtime import run, setup_logging
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)


class _StartupFailure(logging.Filter):
    """Keeps the exception of a failed start-up of the app (Kafka or Redis not there, ...) so the
    process ends with one line (``aiaas.cli.errors``), not uvicorn's logged traceback (kept with
    AIAAS_DEBUG=1)."""

    def __init__(self) -> None:
        super().__init__()
        self.exc: BaseException | None = None

    def watch(self, app: Any) -> None:
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(a: Any) -> AsyncIterator[Any]:
            try:
                async with inner(a) as state:
                    yield state
            except Exception as exc:
                self.exc = self.exc or exc
                raise

        app.router.lifespan_context = lifespan

    def filter(self, record: logging.LogRecord) -> bool:
        return self.exc is None or os.environ.get("AIAAS_DEBUG", "") in ("1", "true")


class _Server(uvicorn.Server):
    """uvicorn's server, but its main loop ticks once a second, not ten times (cost at rest, issue 18
    item 5): a tick only looks at ``should_exit`` here (no date header, no request limit, no notify
    callback), and ``handle_exit`` (SIGINT/SIGTERM) wakes the loop at once, so shutdown is as prompt."""

    TICK_S = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.failure = _StartupFailure()
        self.failure.watch(config.app)
        self._exit_asked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # every tick does on_tick's once-a-second work
            await within(self._exit_asked.wait(), self.TICK_S)  # a should_exit set elsewhere: seen in a tick
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._exit_asked.set)  # safe from a signal handler

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        logging.getLogger("uvicorn.error").addFilter(self.failure)
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn exits when the app's start-up failed
            if self.failure.exc is not None:
                raise self.failure.exc from None
            raise
        finally:
            logging.getLogger("uvicorn.error").removeFilter(self.failure)
        if self.started:
            host, port = sockets[0].getsockname()[:2] if sockets else (self.config.host, self.config.port)
            log.info("bridge listening on http://%s:%d", host, port)


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """The bridge's listening socket, bound before anything else opens a connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable("cannot bind the bridge's HTTP port", host=host, port=port, error=str(exc)) from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


async def serve(settings: Settings, bridge_settings: BridgeSettings) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers), then drain and stop the bridge."""
    app = create_app(settings, bridge_settings)
    http, http_options = protocol_for(bridge_settings)  # request heads bounded in size and time
    config = uvicorn.Config(
        app, host=bridge_settings.host, port=bridge_settings.port, loop="none", lifespan="on",
        access_log=False, log_level="warning", timeout_graceful_shutdown=10, backlog=2048,
        ws="none", server_header=False, date_header=False, http=http, **http_options,
    )
    sock = bind(bridge_settings.host, bridge_settings.port, config.backlog)
    try:
        await _Server(config).serve(sockets=[sock])
    finally:
        sock.close()


def parse_flags(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(prog="python -m aiaas.agents.bridge", description=__doc__)
    parser.add_argument("--port", type=int, help="HTTP port (default AIAAS_BRIDGE_PORT or 8080)")
    parser.add_argument("--host", help="bind address (default AIAAS_BRIDGE_HOST or 127.0.0.1)")
    return parser.parse_args(argv)


def main(port: int | None = None, host: str | None = None) -> None:
    """Run one bridge; ``port``/``host`` override ``AIAAS_BRIDGE_PORT``/``AIAAS_BRIDGE_HOST``."""
    setup_logging()
    overrides = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    bs = BridgeSettings(freeze_gc=True, **overrides)  # type: ignore[arg-type]
    run(serve(Settings(), bs))


if __name__ == "__main__":
    args = parse_flags()
    main(args.port, args.host)
