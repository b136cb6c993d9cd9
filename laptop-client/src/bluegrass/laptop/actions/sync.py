"""`bluegrass sync [SEGMENT]`: sync one segment, or all of them, now.

Each segment ends in one of four outcomes: ok; will retry (a passing problem, such as no
network); needs you (the report says what to do, with the exact command); locked out (the
report gives the recovery command). Exit status: 0 when every segment is ok, 1 when the worst
is "will retry", 3 "needs you", 4 "locked out"; 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError
from bluegrass.laptop import actions, report
from bluegrass.laptop.bisync import Options, Outcome, SegmentSync
from bluegrass.laptop.progress import Progress
from bluegrass.laptop.runner import Interrupts
from bluegrass.laptop.settings import Segment, Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="sync segments with the cloud now",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("segment", metavar="SEGMENT", nargs="?", help="only this segment")
    p.add_argument(
        "--confirm-deletes",
        action="store_true",
        help="go ahead with a sync that was stopped for deleting (or changing) too many "
        "files; needs SEGMENT",
    )
    p.add_argument(
        "--confirm-changes",
        action="store_true",
        help="go ahead with a sync that was stopped for copying this computer's changes over "
        "too many of the cloud's files (max_change_percent); needs SEGMENT",
    )
    p.add_argument(
        "--restore-from-cloud",
        action="store_true",
        help="copy everything both ways, deleting nothing, the cloud's copy winning wherever "
        "the two differ; this computer's replaced files are kept aside; needs SEGMENT",
    )
    p.add_argument(
        "--resync",
        action="store_true",
        help="copy everything both ways, deleting nothing (the first sync does this itself); "
        "recovers a locked-out segment; needs SEGMENT",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=run)


def chosen(current: Settings, name: str | None) -> list[Segment]:
    segments = current.segments()
    if name is not None:
        if name not in segments:
            known = ", ".join(segments) or "none"
            raise UsageError(f"no segment named {name!r} (segments: {known})")
        return [segments[name]]
    if not segments:
        raise UsageError("no segments yet: add one with `bluegrass segment add NAME PATH`")
    return list(segments.values())


def outcome_json(segment: str, outcome: Outcome) -> dict:
    data = asdict(outcome)
    data.pop("recorded")
    data["segment"] = segment
    data["outcome"] = data.pop("kind")
    return data


def run(args: argparse.Namespace) -> int:
    one_only = {
        "--confirm-deletes": args.confirm_deletes,
        "--confirm-changes": args.confirm_changes,
        "--resync": args.resync,
        "--restore-from-cloud": args.restore_from_cloud,
    }
    given = [flag for flag, on in one_only.items() if on]
    if given and not args.segment:
        raise UsageError(f"{', '.join(given)}: need a SEGMENT: they act on one only")
    if args.resync and args.restore_from_cloud:
        raise UsageError("--resync and --restore-from-cloud: choose one")
    current = actions.load(enrolled=True)
    targets = chosen(current, args.segment)
    options = Options(
        confirm_deletes=args.confirm_deletes,
        confirm_changes=args.confirm_changes,
        resync=args.resync,
        restore=args.restore_from_cloud,
    )
    results: list[tuple[str, Outcome]] = []
    with Interrupts() as interrupts:
        for segment in targets:
            if interrupts.requested.is_set():
                break
            progress = Progress(segment.name)
            engine = SegmentSync(current, segment, interrupts=interrupts, on_record=progress)
            try:
                outcome = engine.run(options)
            finally:
                progress.finish()
            results.append((segment.name, outcome))
            if not args.json:
                for line in report.outcome_lines(segment.name, outcome):
                    print(line, flush=True)
    if args.json:
        emit_json({"segments": [outcome_json(n, o) for n, o in results]})
    worst = max((report.SEVERITY[o.kind] for _, o in results), default=0)
    for name, outcome in results:
        if outcome.kind != "ok":
            sys.stderr.write(f"bluegrass: error: {report.error_line(name, outcome)}\n")
    code = next(report.EXIT_CODES[k] for k, v in report.SEVERITY.items() if v == worst)
    if interrupts.requested.is_set() and len(results) < len(targets):
        return max(code, 1)
    return code
