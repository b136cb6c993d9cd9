"""One module per `bluegrass-appliance` subcommand; each exposes `add_parser(subparsers)`."""
