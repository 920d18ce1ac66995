"""Command line: one module per subcommand (``add_parser`` + ``run``), kept thin."""
