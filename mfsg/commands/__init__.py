"""One module per ``mfsg`` subcommand, each with ``add_arguments(parser)`` and ``run(args)``."""
