"""One module per `ovl-agent` subcommand."""
