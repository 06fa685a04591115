"""Process entry of the bridge: uvicorn serving the app on uvloop (``aiaas worker bridge``)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from agents.bridge.app import create_app
from agents.bridge.settings import BridgeSettings
from streams.runtime import run, setup_logging
from streams.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, bridge_settings: BridgeSettings) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers), then drain and stop the bridge."""
    app = create_app(settings, bridge_settings)
    config = uvicorn.Config(
        app, host=bridge_settings.host, port=bridge_settings.port, loop="none", lifespan="on",
        access_log=False, log_level="warning", timeout_graceful_shutdown=10, backlog=2048,
        ws="none", server_header=False, date_header=False, http=bridge_settings.http,
    )
    server = uvicorn.Server(config)
    log.info("bridge listening on http://%s:%d", bridge_settings.host, bridge_settings.port)
    await server.serve()


def main(port: int | None = None, host: str | None = None) -> None:
    """Run one bridge; ``port``/``host`` override ``AIAAS_BRIDGE_PORT``/``AIAAS_BRIDGE_HOST``."""
    setup_logging()
    overrides = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    bs = BridgeSettings(freeze_gc=True, **overrides)  # type: ignore[arg-type]
    run(serve(Settings(), bs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int)
    parser.add_argument("--host")
    args = parser.parse_args()
    main(args.port, args.host)
