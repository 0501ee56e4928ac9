"""One module per `ovl` subcommand."""
