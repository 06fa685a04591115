"""The ``aiaas`` command line (one CLI drives every role)."""
