"""The panel's one-time setup code on the Pi: what stands between the home network and the
first administrator (decision 110).

Until the panel has an administrator, its first-run setup makes one, and an administrator of
the Pi reads every mirrored file and restores onto the drive. Reaching the panel is not proof
of owning the Pi (a guest's phone, a compromised TV on the same network), so setup also takes
a code that only someone at the Pi itself can read: made the first time it is needed, kept in
STATE/panel-setup-code (0600, the state folder is 0700), shown by `bluegrass-appliance
status` and `setup-code`, logged by `run` and written for the login console when
[panel] console_issue names a file. The code itself is bluegrass.panel.backendkit's, the same
as the cloud's. It works once: a finished setup, or an administrator made with
`bluegrass-appliance password`, deletes it and the console's copy.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from bluegrass.appliance.context import Appliance
from bluegrass.core.errors import BluegrassError
from bluegrass.panel import backendkit


@dataclass(frozen=True)
class SetupCode:
    code: str
    file: Path  # where the code is kept (owner-only)
    console: Path | None  # the login console's copy, if one is written


def pending(app: Appliance) -> bool:
    """Given the appliance, return whether its panel still has no administrator."""
    with app.state.web_accounts() as store:
        return not store.has_admin()


def console_file(app: Appliance) -> Path | None:
    chosen = app.config.get("panel.console_issue")
    return Path(chosen) if chosen else None


def current(app: Appliance) -> SetupCode | None:
    """Given the appliance, return its setup code while setup is pending (made first if there
    is none), else None, deleting a stale code. Raise BluegrassError if it cannot be written."""
    if not pending(app):
        finish(app)
        return None
    code = backendkit.ensure_setup_code(app.paths.setup_code)
    return SetupCode(code, app.paths.setup_code, console_file(app))


def matches(app: Appliance, given: str) -> bool:
    """Given what a person typed, return whether it is the pending code (constant time)."""
    return backendkit.setup_code_matches(app.paths.setup_code, given) and pending(app)


def announce(app: Appliance, found: SetupCode, panel_url: str | None) -> None:
    """Given the pending code, write it for the login console (agetty shows every
    /etc/issue.d/*.issue above its prompt) when [panel] console_issue names a file. Raise
    BluegrassError if that file cannot be written."""
    if found.console is None:
        return
    where = f"{panel_url.rstrip('/')}/setup" if panel_url else "the panel's /setup page"
    # No backslash: agetty reads backslash sequences in issue files as escapes.
    text = (
        f"Bluegrass: the panel has no administrator yet. Open {where} from your home\n"
        f"network and type this setup code there (it works once): {found.code}\n\n"
    )
    try:
        found.console.parent.mkdir(parents=True, exist_ok=True)
        temp = found.console.with_name(f".{found.console.name}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text)
        temp.replace(found.console)
    except OSError as exc:
        raise BluegrassError(f"{found.console}: cannot write the setup code: {exc}") from None


def finish(app: Appliance) -> None:
    """Delete the setup code and the console's copy: setup is done (or an administrator was
    made on the Pi), and a code works once."""
    backendkit.remove_setup_code(app.paths.setup_code)
    console = console_file(app)
    if console is not None:
        with contextlib.suppress(FileNotFoundError):
            console.unlink()
