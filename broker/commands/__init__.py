"""The ``broker`` command's subcommands, one module per command group."""
