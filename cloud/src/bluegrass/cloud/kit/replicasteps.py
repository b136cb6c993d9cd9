"""How to get every file back from the replica with rclone and git alone, as printed steps.

docs/replica.md "Recovering with rclone and git alone", made literal: the secrets are typed
once as shell variables, then the commands read them, download the area and turn every
segment's bundles into a repository laid out as on a Pi's drive (bluegrass/USER/SEGMENT.git),
so the drive's own steps (bluegrass.core.recoverysteps) take it from there. Nothing reads the
JSON manifests: the loops fetch every bundle a segment's folder holds, in numeric order
(the glob's order: the numbers are zero-padded), with `+` so that the last one's branch wins.

Why fetching every bundle is sound (replicate.py): each bundle's prerequisites are the tips of
a lower-numbered bundle of the same folder, and an object appears in S3 whole or not at all,
so a bundle that no manifest names (a killed run's) is complete and fetches like any other;
after a rebuild from the replica such a bundle may hold commits the newer ones do not
descend from, which is why the fetch forces: the highest-numbered bundle, the one the newest
manifest names, sets the branch. git checks every pack it fetches (its trailing checksum
catches a truncated download, which crypt alone would not).
"""

from __future__ import annotations

from shlex import quote

from bluegrass.core.recoverysteps import Step

FOLDER = "$HOME/restored/replica"
DOWNLOAD = "download"
SERVER_DOWNLOAD = "server-area"


def connect(provider: str, region: str, endpoint: str) -> Step:
    """rclone's remote `s3:` for the bucket, from environment variables only (no config
    file to write)."""
    return Step(
        title="Connect rclone to the bucket",
        words=(
            "Install rclone (rclone.org, version 1.65 or later) and git. Then, in one terminal, "
            "type the lines of 'The secrets' above, then these. They set things up for this "
            "terminal only; nothing is saved."
        ),
        commands=(
            f"export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER={quote(provider)} \\\n"
            f"  RCLONE_CONFIG_S3_ENDPOINT={quote(endpoint)} "
            f"RCLONE_CONFIG_S3_REGION={quote(region)} \\\n"
            '  RCLONE_CONFIG_S3_ACCESS_KEY_ID="$KEY_ID" '
            'RCLONE_CONFIG_S3_SECRET_ACCESS_KEY="$KEY_SECRET" \\\n'
            "  RCLONE_CONFIG_S3_NO_CHECK_BUCKET=true RCLONE_CONFIG_S3_ENV_AUTH=false",
        ),
    )


def _crypt(name: str, remote: str, encrypt: bool) -> str:
    """An rclone crypt remote as Bluegrass writes it (replica/remote.py); an alias to the
    plain folder when the replica is not encrypted."""
    var = f"RCLONE_CONFIG_{name.upper()}_"
    if not encrypt:
        return f'export {var}TYPE=alias {var}REMOTE="{remote}"'
    return (
        f'export {var}TYPE=crypt {var}REMOTE="{remote}" \\\n'
        f"  {var}FILENAME_ENCRYPTION=standard {var}DIRECTORY_NAME_ENCRYPTION=true \\\n"
        f"  {var}FILENAME_ENCODING=base64 \\\n"
        f'  {var}PASSWORD="$(rclone obscure "$PASSWORD")" \\\n'
        f'  {var}PASSWORD2="$(rclone obscure "$PASSWORD2")"'
    )


def user_area(encrypt: bool = True) -> tuple[Step, ...]:
    """Download one user's area ($WHO, $AREA, $PASSWORD, $PASSWORD2 typed before) and make
    bluegrass/$WHO/SEGMENT.git of every segment in it, under FOLDER."""
    return (
        Step(
            title="Download the encrypted copy",
            words=(
                f"Downloads and decrypts the copy into {FOLDER}/{DOWNLOAD}/$WHO (as big as "
                "the history; a wrong secret gives errors and no files)."
            ),
            commands=(
                _crypt("area", "s3:$BUCKET/$AREA", encrypt),
                f'mkdir -p "{FOLDER}" && cd "{FOLDER}"',
                f'rclone copy area: "{DOWNLOAD}/$WHO"',
            ),
        ),
        Step(
            title="Turn it into git repositories",
            words=(
                "Each backed-up folder is a series of numbered git bundles; this loads them "
                "in order into bluegrass/$WHO/FOLDER.git, the same layout as on the drive."
            ),
            commands=(
                f'for dir in "{DOWNLOAD}/$WHO"/*/; do\n'
                '  seg="${dir%/}"; seg="${seg##*/}"; repo="bluegrass/$WHO/$seg.git"\n'
                '  [ "$seg" = manifests ] && continue\n'
                '  git init --quiet --bare "$repo"\n'
                '  git --git-dir "$repo" symbolic-ref HEAD refs/heads/main\n'
                '  for b in "$dir"*.bundle; do\n'
                '    git --git-dir "$repo" fetch --quiet "$b" \'+refs/*:refs/*\'\n'
                "  done\n"
                "done",
            ),
        ),
    )


def server_area(encrypt: bool = True) -> tuple[Step, ...]:
    """The administrator's area: the server's state, in which every user's secrets are."""
    return (
        Step(
            title="Download the server's own area",
            words=(
                f"Downloads and decrypts the server's state into {FOLDER}/{SERVER_DOWNLOAD}, "
                "then shows the newest list of every user's secrets."
            ),
            commands=(
                _crypt("admin", "s3:$BUCKET/server", encrypt),
                f'mkdir -p "{FOLDER}" && cd "{FOLDER}"',
                f"rclone copy admin: {SERVER_DOWNLOAD}",
                f'for f in {SERVER_DOWNLOAD}/state/*/replica-keys.json; do :; done; cat "$f"',
            ),
        ),
        Step(
            title="Then, for each user it lists",
            words=(
                'It shows, for each user, "prefix", "password" and "password2". For one '
                "user at a time, type these four lines with that user's name and values, then "
                "the commands of the next two steps."
            ),
            commands=(
                "WHO='name'",
                "AREA='prefix'",
                "PASSWORD='password'",
                "PASSWORD2='password2'",
            ),
        ),
    )
