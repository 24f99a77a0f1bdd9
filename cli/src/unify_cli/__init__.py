"""The ``unify`` command line (see :mod:`unify_cli.main`)."""
