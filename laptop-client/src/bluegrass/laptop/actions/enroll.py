"""`bluegrass enroll CODE`: set this computer up with the cloud from one pasted line.

Writes, in the configuration folder: the [server] table of bluegrass.toml, `known_hosts` with
the server's pinned host key, `rclone.conf` (mode 0600) with the sftp remote and the
device's password, obscured, and `device-password` (mode 0600), the same password for the
cloud's pinned device port (asked before a sync whether anything changed there). Before saving, it
connects once with the new settings: a server that presents another host key, or refuses the
password, is not enrolled with. A server that cannot be reached right now is: syncs will retry.
A refused login is checked on the cloud's pinned HTTPS port before it is called a bad code: a
password that port accepts is enrolled with (the endpoint may be busy, or locking out).
"""

from __future__ import annotations

import argparse

from bluegrass.core import enrollment as codes
from bluegrass.core.errors import BluegrassError, ConfigError, UsageError
from bluegrass.laptop import credential, paths, remote, settings
from bluegrass.laptop.runner import Rclone
from bluegrass.laptop.state import SegmentFiles


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enroll",
        help="set this computer up with your Bluegrass cloud",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("code", metavar="CODE", help="the enrollment code (bg1-...)")
    p.add_argument(
        "--force", action="store_true", help="replace an existing enrollment of this computer"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    enrollment = codes.decode(args.code)
    places = paths.places()
    try:
        current = settings.load(places)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (fix or remove the file, then enroll again)") from None
    if current.enrolled and not args.force:
        s = current.server
        raise UsageError(
            f"this computer is already enrolled (as {s['user']} on {s['host']}:{s['sftp_port']});"
            " to replace that, run `bluegrass enroll --force CODE`"
        )
    paths.make_private_dir(places.config_dir)
    runner = Rclone(places.rclone_config, places.state_dir / "rclone-cache")

    # Try the new settings from side files first: a refused enrollment changes nothing.
    trial_conf = places.config_dir / "rclone.conf.new"
    trial_hosts = places.config_dir / "known_hosts.new"
    try:
        remote.write_files(enrollment, runner, trial_conf, trial_hosts)
        trial = Rclone(trial_conf, places.state_dir / "rclone-cache")
        # One quick try (later flags win over the runner's defaults): offline is not an error.
        quick = ["--contimeout", "10s", "--low-level-retries", "1"]
        probe = trial.run(["lsf", f"{remote.REMOTE}:", "--dirs-only", *quick], timeout=60)
    finally:
        trial_conf.unlink(missing_ok=True)
        trial_hosts.unlink(missing_ok=True)
    problem = remote.connection_problem(probe.stderr) if probe.returncode else None
    if problem == remote.HOST_KEY:
        raise BluegrassError(
            f"host key does not match: the server at {enrollment.server}:"
            f"{enrollment.sftp_port} presented a host key other than the one in the enrollment "
            "code; not enrolled (is the code for this server? if it was reinstalled, ask for a "
            "new code)"
        )
    if problem == remote.AUTH:
        verdict = credential.ask(enrollment.device_side, enrollment.user, enrollment.password)
        if verdict.kind == credential.REFUSED:
            raise BluegrassError(
                f"the server refused the code's credentials for {enrollment.user!r}; not "
                "enrolled (was the code revoked, or made for another server?)"
            )
        if verdict.kind == credential.UNKNOWN:
            raise BluegrassError(
                f"the server refused the login for {enrollment.user!r}, and whether the code's "
                f"password is wrong cannot be told ({verdict.why}); not enrolled: try again "
                "later, or ask for a new code"
            )

    remote.write_files(enrollment, runner, places.rclone_config, places.known_hosts)
    previous = dict(current.server)
    current.values["server"] = {
        "host": enrollment.server,
        "sftp_port": enrollment.sftp_port,
        "http_port": enrollment.http_port,
        "user": enrollment.user,
        "device": enrollment.device,
        "host_key": enrollment.host_key,
        "url": enrollment.url,
        "device_port": enrollment.device_port,
        "tls_pin": enrollment.tls_pin,
    }
    settings.write_atomic(places.device_password, enrollment.password + "\n", private=True)
    current.save()
    moved = previous.get("host") and (
        (previous["host"], previous["sftp_port"], previous["user"])
        != (enrollment.server, enrollment.sftp_port, enrollment.user)
    )
    if moved:
        # Another server or user: what bisync remembers about the old one must not be used.
        for name in current.segments():
            SegmentFiles(places, name).remove()

    where = f"{enrollment.server}:{enrollment.sftp_port}"
    print(f"Enrolled this computer as {enrollment.user} on {where} (device {enrollment.device}).")
    print(f"Configuration: {places.config_dir}")
    if moved:
        print("Segments start afresh with the new server: their first sync copies both ways.")
    if problem == remote.AUTH:
        print(
            "The sync endpoint refused this login for now, though the cloud's HTTPS port "
            "accepts the password (it may be busy, or locking out for a while); syncs will retry."
        )
    elif probe.returncode == 0:
        found = [line.strip().rstrip("/") for line in probe.stdout.splitlines() if line.strip()]
        if found:
            print(f"Segments on the cloud: {', '.join(found)}")
        print("Add a folder with: bluegrass segment add NAME PATH")
    else:
        reason = " ".join(probe.stderr.strip().splitlines()[-1:])[-200:] or "no answer"
        print(f"Could not reach the server now ({reason}); syncs will retry.")
    return 0
