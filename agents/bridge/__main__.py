"""``python -m aiaas.agents.bridge [--port P] [--host H]``: one HTTP bridge (see agents/bridge/main.py)."""

from aiaas.agents.bridge.main import main, parse_flags
from aiaas.cli.errors import guard

args = parse_flags()
guard(lambda: main(args.port, args.host))
