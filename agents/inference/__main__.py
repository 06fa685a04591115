"""``python -m aiaas.agents.inference --model NAME ...``: see agents/inference/cli.py for the flags;
with ``--score``, a stream-scoring worker (agents/inference/scoring_cli.py, same as ``aiaas score``)."""

import sys

if "--score" in sys.argv[1:]:
    import typer

    from aiaas.agents.inference.scoring_cli import score
    from aiaas.cli.errors import guard

    sys.argv.remove("--score")
    guard(lambda: typer.run(score))
else:
    from aiaas.agents.inference.cli import main

    main()
