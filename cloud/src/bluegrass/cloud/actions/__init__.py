"""One module per `bluegrass-cloud` subcommand; each exposes `add_parser(subparsers)`."""
