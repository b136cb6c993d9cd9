"""What every Bluegrass command line shares: one-line errors, exit codes, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bluegrass.core.errors import BluegrassError

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line plus a pointer to --help.

    Every error line starts with the program's own name (`bluegrass-cloud: error: …`), also
    for a subcommand's parser, and a command group given no action prints its own help.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        program = self.prog.split()[0]
        sys.stderr.write(f"{program}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:  # type: ignore[override]
        kwargs.setdefault("parser_class", type(self))
        group = super().add_subparsers(**kwargs)
        self.set_defaults(handler=self._no_action)
        return group

    def _no_action(self, _args: argparse.Namespace) -> int:
        self.print_help(sys.stderr)
        return 2


def emit_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch to the subcommand's handler, and turn failures into one line."""
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except BluegrassError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{parser.prog}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 141
