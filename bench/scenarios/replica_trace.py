"""Run `bluegrass-cloud` with the replica's rclone runs and bundle making timed (bench only).

Usage: python replica_trace.py EVENTS.json --data DATA replicate --json

Wraps bluegrass.cloud.replica.remote.Bucket.run and bluegrass.cloud.replica.bundles.create in
this process, then runs the command line as its own entry point would; EVENTS.json gets one
record per call ({what, thread, start, end, detail}, seconds from this script's start) and
the moment the command line's modules were imported. The replica scenario runs a second
first replicate this way to say where the first replicate's time goes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

START = time.monotonic()


def main() -> None:
    out = Path(sys.argv[1])
    events: list[dict[str, Any]] = []

    from bluegrass.cloud.replica import bundles, remote

    def timed(owner: Any, name: str, what: str, detail: Callable[..., Any]) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                events.append(
                    {
                        "what": what,
                        "thread": threading.current_thread().name,
                        "start": start - START,
                        "end": time.monotonic() - START,
                        "detail": detail(*args),
                    }
                )

        setattr(owner, name, wrapper)

    def bundle_detail(_git: Any, dest: Path, *_rest: Any) -> dict[str, Any]:
        return {"name": str(dest), "size": dest.stat().st_size if dest.exists() else 0}

    timed(remote.Bucket, "run", "rclone", lambda _self, args, **_: " ".join(args[:2]))
    timed(bundles, "create", "bundle", bundle_detail)
    sys.argv = ["bluegrass-cloud", *sys.argv[2:]]
    from bluegrass.cloud.cli import main as cli

    imported = time.monotonic() - START
    code = 1
    try:
        code = cli()
    finally:
        out.write_text(
            json.dumps({"imported": imported, "end": time.monotonic() - START, "events": events})
        )
    sys.exit(code)


if __name__ == "__main__":
    main()
