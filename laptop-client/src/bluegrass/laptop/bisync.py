"""One segment's two-way sync with rclone bisync, done carefully (docs/design.md D1).

A run:
1. takes the segment's lock (one Bluegrass process per segment at a time);
2. checks the local folder exists (a missing folder may be an unmounted disk: never create it);
3. pre-scans the folder for what cannot be synced (bluegrass.laptop.scan);
4. clears rclone's lock file if the rclone that wrote it is gone (kill -9, power cut): the
   listings are only rewritten at the end of a run, so `--recover` continues from them;
5. on the first run, puts the check file on both sides and runs `--resync`; when the
   segment's excludes changed, syncs with the old filters first, then resyncs with the new;
6. asks whether either side changed since the last sync that changed nothing
   (bluegrass.laptop.unchanged): if neither did, bisync has nothing to do and is skipped;
   otherwise runs bisync with the safety flags, following its JSON log for progress;
7. classifies the result: ok, retry later, needs the user (and what to do), or locked out
   (and how to recover).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bluegrass.core import syncspec
from bluegrass.core.errors import BluegrassError
from bluegrass.laptop import (
    credential,
    filters,
    guard,
    hidden,
    locking,
    paths,
    quota,
    remote,
    scan,
    unchanged,
)
from bluegrass.laptop.cloudhttp import CloudHTTP
from bluegrass.laptop.metadata import EXCLUDE as SIDECARS
from bluegrass.laptop.metadata import SegmentSidecar
from bluegrass.laptop.paths import Places
from bluegrass.laptop.progress import human_bytes
from bluegrass.laptop.runner import Interrupts, LogRecord, Rclone, RunResult
from bluegrass.laptop.settings import Segment, Settings, write_atomic
from bluegrass.laptop.state import LastRun, SegmentFiles, SegmentState, now_iso, parse_time

OK = "ok"
RETRY = "retry"
NEEDS_USER = "needs-user"
LOCKED_OUT = "locked-out"
OUTCOMES = (OK, RETRY, NEEDS_USER, LOCKED_OUT)

UNCHANGED = "nothing changed on either side since the last sync"
CLOUD_ANEW = (
    "the cloud's copy of this segment was made anew (a server rebuilt from its replica): "
    "nothing deleted, the newer copy kept on both sides"
)
MAX_LOCK = "2m"
# bisync's --check-sync compares the two sides' new listings in full after a run: 0.3 s of a
# 3 s no-change run on a 78k-file segment. It runs on the first sync, on any run at least this
# long after the last one that ran it, and with --resync; other runs skip it (decision 55).
LISTINGS_CHECK_EVERY = timedelta(hours=24)
# The pre-scan reads only folders whose times changed since the last run (scan.Memo); every
# folder is read again at least this often, and after any run that did not end "ok".
FULL_SCAN_EVERY = timedelta(hours=24)
# Folders listed at once on each side (rclone's default is 8): the listing over sftp is most
# of a run that finds nothing to do.
CHECKERS = "16"
SENTINEL_TEXT = (
    "This file tells Bluegrass that this folder is the one it keeps in sync.\n"
    "Please leave it here: without it, syncing stops, to protect your files in case the\n"
    "folder is ever missing or empty (an unplugged disk, say).\n"
)
# Every copy of the check file carries this modification time (2000-01-01T00:00:00Z, a whole
# second, which the sftp side keeps exactly), so copies made on different laptops are equal
# in bisync's eyes. With "now", a second laptop's resync pushed its newer copy to the cloud;
# the first laptop's next run found it equal within sftp's 1 s precision and skipped it, but
# recorded the cloud's time in its listing, so the run after that saw the check file changed
# locally too, and with the one real edit in a one-file segment bisync stopped on "all files
# were changed" (tests/e2e, edits moments apart).
SENTINEL_MTIME = 946684800


@dataclass
class Outcome:
    kind: str
    message: str
    action: str | None = None
    command: str | None = None
    exit_code: int | None = None
    resync: bool = False
    files_transferred: int = 0
    bytes_transferred: int = 0
    deletes: int = 0
    conflict_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unsyncable: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    recorded: bool = True  # False: nothing happened worth remembering (segment busy)
    bisync: bool = True  # False: skipped, neither side changed since the last quiet sync


@dataclass
class Options:
    confirm_deletes: bool = False
    confirm_changes: bool = False  # let through a sync stopped for overwriting many files
    resync: bool = False
    restore: bool = False  # a resync where the cloud's copy wins wherever the two differ


def command_for(segment: str, flag: str) -> str:
    return f"bluegrass sync {segment} {flag}"


@dataclass(frozen=True)
class _Seen:
    """What a bisync run left to read: its exit code, every message, the errors."""

    result: RunResult
    code: int
    text: str
    errors: list[str]

    @classmethod
    def of(cls, result: RunResult) -> _Seen:
        return cls(
            result,
            result.code,
            "\n".join(r.msg for r in result.records),
            [r.msg for r in result.records if r.level in ("error", "critical", "raw")],
        )


class SegmentSync:
    def __init__(
        self,
        settings: Settings,
        segment: Segment,
        *,
        interrupts: Interrupts | None = None,
        on_record: Callable[[LogRecord], None] | None = None,
    ) -> None:
        self.settings = settings
        self.segment = segment
        self.places: Places = settings.places
        self.files = SegmentFiles(self.places, segment.name)
        self.interrupts = interrupts
        self.on_record = on_record
        self.check_listings = True
        self.memo: scan.Memo | None = None
        self.sides: unchanged.Sides | None = None  # both sides' state before this run's bisync
        self.kept: unchanged.Sides | None = None  # ... before the last quiet one
        self.replaced = self.files.dir / "replaced"  # this resync's --backup-dir1
        # The cloud's sidecar folder holds the rebuilt mark (syncspec.REBUILT_FILENAME), and
        # bisync found the check file here and not there (_check_file_missing).
        self.cloud_rebuilt = False
        self.cloud_anew = False
        self.rclone = Rclone(
            self.places.rclone_config,
            self.places.state_dir / "rclone-cache",
            settings.sync["bandwidth_limit"],
        )

    # -- the run ---------------------------------------------------------------------------

    def run(self, options: Options | None = None) -> Outcome:
        options = options or Options()
        lock = locking.FileLock(self.files.lock)
        try:
            lock.acquire()
        except locking.Busy:
            return Outcome(
                RETRY,
                f"another Bluegrass process is syncing {self.segment.name} right now",
                recorded=False,
            )
        try:
            state = self.files.load()
            started = now_iso()
            # The pair compared with is taken out of the file before anything runs: a run
            # killed mid-way (kill -9, power cut) must not leave it to be trusted next time.
            self.kept = unchanged.Sides.from_json(state.settled)
            if state.settled is not None:
                state.settled = None
                self.files.save(state)
            last_check = parse_time(state.listings_checked)
            self.check_listings = (
                last_check is None or datetime.now(UTC) - last_check >= LISTINGS_CHECK_EVERY
            )
            outcome = self._run(state, options)
            if outcome.bisync and (outcome.files_transferred or outcome.deletes):
                # The cloud measures the user's use as it answers, and if this sync moved
                # them across their quota it lets the logins it holds go (decision 133).
                CloudHTTP(self.settings).quota()
            if outcome.kind == OK and (self.check_listings or outcome.resync):
                state.listings_checked = now_iso()
            state.settled = self._settled(outcome)
            self._keep_scan_memo(outcome.kind == OK)
            self._record(state, outcome, started)
            return outcome
        finally:
            lock.release()

    def _run(self, state: SegmentState, options: Options) -> Outcome:
        name = self.segment.name
        folder = self.segment.path
        paths.make_private_dir(self.places.state_dir)  # logs and listings name your files
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            first = "" if state.established else " The first sync never creates it."
            return Outcome(
                NEEDS_USER,
                f"the folder {folder} {what}.{first}",
                action="If it is on a disk, plug the disk in; otherwise create the folder, or "
                f"remove the segment with `bluegrass segment remove {name}` and add it again "
                "with the right path",
            )
        excludes = filters.Excludes(self.segment.exclude)
        self.memo = scan.Memo.load(
            self.files.scan_memo,
            scan.memo_key(excludes, scan.SYNC_LINKS),
            FULL_SCAN_EVERY.total_seconds(),
        )
        found = scan.scan(folder, excludes, memo=self.memo)
        state.unsyncable = [f.to_json() for f in found.unsyncable]
        state.warnings = [f.to_json() for f in found.warnings]
        extra = found.excludes
        if not options.restore:
            too_much = self._beyond_quota()
            if too_much is not None:
                return too_much

        self.files.workdir.mkdir(parents=True, exist_ok=True)
        stale = self._clear_stale_lock()
        if isinstance(stale, Outcome):
            return stale
        notes = [stale] if stale else []
        if self._reinstate_listings():
            notes.append("the last sync stopped while copying; continuing from the sync before it")

        wanted = filters.filters_text(name, self.segment.exclude)
        current = _read(self.files.filters)
        has_listings = self._has_listings()
        if options.restore:
            outcome = self._resync(
                wanted, extra, options, reason="the cloud's copies put back, as you asked"
            )
        elif options.resync:
            outcome = self._resync(wanted, extra, options, reason="as you asked")
        elif not has_listings:
            if state.established:
                return self._locked_out(
                    "the record of the last sync (bisync's listings) is missing"
                )
            outcome = self._resync(wanted, extra, options, reason="first sync of this segment")
        elif current != wanted:
            outcome = self._change_filters(current, wanted, extra, options)
        else:
            self.cloud_anew = False
            outcome = self._bisync_unless_unchanged(extra, options)
            if self.cloud_anew:
                # The cloud was rebuilt from its replica: its folder is the last snapshot, not
                # the one the listings describe, and bisync would take what it lacks for
                # deletions there and its older copies for edits. A resync deletes nothing and
                # keeps the newer copy (decision 161). A check file missing on a cloud
                # without the mark still stops for the user (decision 18).
                outcome = self._resync(wanted, extra, options, reason=CLOUD_ANEW)
        outcome.notes[:0] = notes
        outcome.unsyncable = state.unsyncable
        outcome.warnings = state.warnings
        return outcome

    def _change_filters(
        self, current: str | None, wanted: str, extra: list[str], options: Options
    ) -> Outcome:
        if current is not None:
            first = self._bisync(extra, options)
            if first.kind != OK:
                return first
        else:
            first = None
        second = self._resync(wanted, extra, options, reason="the segment's excludes changed")
        if first is not None:
            second.files_transferred += first.files_transferred
            second.bytes_transferred += first.bytes_transferred
            second.deletes += first.deletes
            second.conflict_files[:0] = first.conflict_files
        return second

    def _resync(self, wanted: str, extra: list[str], options: Options, reason: str) -> Outcome:
        problem = self._place_sentinels()
        if problem is not None:
            return problem
        write_atomic(self.files.filters, wanted, private=False)
        self.replaced = self.files.dir / "replaced" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        outcome = self._bisync(extra, options, resync=True)
        outcome.resync = True
        if outcome.kind == OK:
            outcome.notes.append(f"full two-way copy (--resync): {reason}")
        kept = _files_under(self.replaced)
        if kept:
            newer = "" if options.restore else "newer "
            outcome.notes.append(
                f"{kept} file{'s' if kept != 1 else ''} of this computer differed from the "
                f"cloud's {newer}copy and {'were' if kept != 1 else 'was'} replaced by it; the "
                f"old version{'s are' if kept != 1 else ' is'} kept in {self.replaced}"
            )
        return outcome

    def _beyond_quota(self) -> Outcome | None:
        """Stop before sending anything when this sync would take the user past their quota:
        a login made under it is not restricted by the cloud (decision 133). Over it already,
        the sync runs: the cloud refuses new bytes itself, and deletions must get through;
        unless the cloud takes no changes at all (read-only), which only its administrator
        can lift."""
        found = quota.Quota.from_answer(CloudHTTP(self.settings).quota())
        if found is not None and found.read_only:
            return Outcome(
                NEEDS_USER,
                "over the cloud's quota, and files there grew while over it: the cloud takes "
                f"no changes now: {found.line()}; nothing was synced",
                action=quota.ACTION_READ_ONLY,
            )
        if found is None or found.over:
            return None
        listing_file = guard.prior_listing(self.files.workdir, "path1")
        adds = quota.growth(
            self.segment.path, guard.read_listing(listing_file) if listing_file else {}
        )
        if adds <= found.remaining:
            return None
        return Outcome(
            NEEDS_USER,
            f"over the cloud's quota: this sync would add about {human_bytes(adds)}, and only "
            f"{human_bytes(found.remaining)} is left: {found.line()}; nothing was sent",
            action=quota.ACTION,
        )

    def _sidecar_over_quota(self) -> str | None:
        """The sidecar goes up before bisync: refused while the user was over their quota,
        even when this run's deletions then brought them under."""
        found = quota.Quota.from_answer(CloudHTTP(self.settings).quota())
        if found is None:
            return None
        now = "still over it" if found.over else "under it now"
        return (
            "files in sync; permission bits and times not sent: the cloud refused them while "
            f"over its quota ({now}: {found.line()}); the next sync sends them"
        )

    def _bisync_unless_unchanged(self, extra: list[str], options: Options) -> Outcome:
        if not (options.confirm_deletes or options.confirm_changes):
            self.sides = unchanged.look(self.settings, self.segment)
        if self.sides is not None and not self.check_listings and self.sides.same_as(self.kept):
            return Outcome(OK, UNCHANGED, bisync=False)
        return self._bisync(extra, options)

    def _settled(self, outcome: Outcome) -> dict | None:
        """Both sides' state to compare the next run with: the one taken before this run's
        bisync, if that bisync ended "ok" having changed nothing on either side."""
        sides = self.sides
        quiet = (
            outcome.kind == OK
            and not outcome.resync
            and outcome.files_transferred == 0
            and outcome.deletes == 0
            and not outcome.conflict_files
        )
        if sides is None or not quiet or not sides.keepable:
            return None
        return sides.to_json()

    # -- pieces ----------------------------------------------------------------------------

    def _keep_scan_memo(self, ok: bool) -> None:
        """Remember this run's scan for the next one, unless the run failed: a failure may be
        a file the memo let through (made unreadable in place), so the next scan is full."""
        if self.memo is None:
            return
        try:
            if ok:
                self.memo.save(self.files.scan_memo)
            else:
                self.files.scan_memo.unlink(missing_ok=True)
        except OSError:
            self.files.scan_memo.unlink(missing_ok=True)

    def _has_listings(self) -> bool:
        work = self.files.workdir
        for side in ("path1", "path2"):
            if not any(work.glob(f"*.{side}.lst")) and not any(work.glob(f"*.{side}.lst-old")):
                return False
        return True

    def _reinstate_listings(self) -> bool:
        """Put back the listings bisync set aside (`*.lst-err`) when a run failed while it
        applied changes, so the next run needs no --resync (decision 66).

        bisync takes any error while copying (a connection lost mid-upload, the cloud's
        disk full, a file changed while read) as critical and renames both listings to
        `.lst-err`, "Must run --resync". Those are the listings of the last good sync,
        untouched by the failed run: the state a kill -9 at the same moment leaves, which
        the next run continues from (decision 19). The mark of that failure: no `.lst`,
        both `.lst-err`, and both March listings (`.lst-new`) still there. A run that failed
        later (its listings already rewritten, the `.lst-new` removed: "out of sync" after
        --check-sync) stays locked out.
        """
        work = self.files.workdir
        set_aside = []
        for side in ("path1", "path2"):
            if any(work.glob(f"*.{side}.lst")):
                return False
            err = sorted(work.glob(f"*.{side}.lst-err"))
            new = sorted(work.glob(f"*.{side}.lst-new"))
            if len(err) != 1 or len(new) != 1:
                return False
            set_aside.append(err[0])
        for err_file in set_aside:
            err_file.replace(err_file.with_name(err_file.name[: -len("-err")]))
        return True

    def _clear_stale_lock(self) -> str | Outcome | None:
        """Remove rclone's lock file if its owner is dead; an Outcome if it is still alive."""
        for lock_file in sorted(self.files.workdir.glob("*.lck")):
            try:
                data = json.loads(lock_file.read_text(encoding="utf-8"))
                pid = int(data.get("PID", 0))
                expires = _rclone_time(data.get("TimeExpires"))
            except (OSError, ValueError, TypeError, AttributeError):
                pid, expires = 0, None
            # A live rclone renews its lock every minute (--max-lock 2m): a lock long past its
            # expiry belongs to a process that is gone, even if its pid was given to another.
            expired = expires is not None and expires < datetime.now(UTC) - timedelta(minutes=1)
            if pid and locking.pid_alive(pid) and not expired:
                return Outcome(
                    RETRY,
                    f"an earlier sync of {self.segment.name} is still running "
                    f"(rclone, process {pid})",
                    recorded=False,
                )
            lock_file.unlink(missing_ok=True)
            owner = f"process {pid}" if pid else "an unknown process"
            return f"removed the lock left by an interrupted sync ({owner}); recovering"
        return None

    def _place_sentinels(self) -> Outcome | None:
        local = self.segment.path / filters.CHECK_FILENAME
        if not local.exists():
            local.write_text(SENTINEL_TEXT, encoding="utf-8", newline="\n")
            os.utime(local, (SENTINEL_MTIME, SENTINEL_MTIME))
        proc = self.rclone.run(
            [
                "copyto",
                str(local),
                f"{remote.remote_path(self.segment.name)}/{filters.CHECK_FILENAME}",
                "--ignore-existing",
            ]
        )
        if proc.returncode != 0:
            return self._connection_outcome(proc.stderr, proc.returncode) or Outcome(
                RETRY,
                f"could not put the check file on the cloud: {_last_line(proc.stderr)}",
                exit_code=proc.returncode,
            )
        return None

    def _max_delete_percent(self) -> int:
        """The --max-delete to give rclone so that it means a share of *files*.

        With --create-empty-src-dirs, bisync divides deletions by files plus folders: in a
        segment of many small folders most files could go without tripping the guard
        (tests/e2e: 8 of 11 photos deleted counted as 38%). Scale the percentage by the files'
        share of the previous listings, taking the stricter side.
        """
        percent = self.segment.max_delete_percent
        if percent >= 100:
            return percent
        share = 1.0
        for listing in self.files.workdir.glob("*.path[12].lst"):
            files = folders = 0
            with listing.open("rb") as lines:
                for line in lines:
                    if line.startswith(b"- "):
                        files += 1
                    elif line.startswith(b"d "):
                        folders += 1
            if files + folders:
                share = min(share, files / (files + folders))
        return max(1, int(percent * share))

    def _args(self, extra: list[str], options: Options, *, resync: bool) -> list[str]:
        args = [
            "bisync",
            str(self.segment.path),
            remote.remote_path(self.segment.name),
            "--workdir",
            str(self.files.workdir),
            "--filters-file",
            str(self.files.filters),
            "--resilient",
            "--recover",
            "--max-lock",
            MAX_LOCK,
            "--conflict-resolve",
            "newer",
            "--conflict-loser",
            "num",
            "--suffix-keep-extension",
            "--check-access",
            "--check-filename",
            filters.CHECK_FILENAME,
            "--max-delete",
            str(self._max_delete_percent()),
            *(["--links"] if scan.SYNC_LINKS else []),
            "--create-empty-src-dirs",
            "--partial-suffix",
            filters.PARTIAL_SUFFIX,
            "--exclude",
            SIDECARS,
            "--use-json-log",
            "--stats",
            "1s",
            "--stats-log-level",
            "NOTICE",
        ]
        if resync:
            # A resync copies every file (78k on the Linux tree) and renames none: -v would log
            # each copy for nothing, and its extra listing checkers compete with the copies
            # for the CPU. Errors and the stats are NOTICE or above, and stay.
            # Where a file differs on both sides the newer wins (the cloud's, when restoring);
            # the laptop's copy is moved aside into the state folder, not overwritten
            # (decision 58).
            args += ["--resync", "--resync-mode", "path2" if options.restore else "newer"]
            args += ["--backup-dir1", str(self.replaced)]
        else:
            # Conflict copies ("Renaming Path1 copy") are logged at INFO: -v is needed.
            args += ["-v", "--checkers", CHECKERS]
        if not resync and not self.check_listings:
            args.append("--check-sync=false")
        if options.confirm_deletes:
            args.append("--force")
        for rule in extra:
            args += ["--exclude", rule]
        return args

    def _bisync(self, extra: list[str], options: Options, *, resync: bool = False) -> Outcome:
        stop = self._guard_changes(options)
        if stop is not None:
            return stop
        # What rclone over sftp cannot carry goes beside it, in the sidecars (decision 59).
        sidecar = SegmentSidecar.for_device(
            self.segment.path,
            self.segment.name,
            self.files.dir / "meta",
            self.settings.server["device"],
            self.places.state_dir,
            self.rclone,
        )
        sent = sidecar.send()
        fetched = sidecar.fetch()
        self.cloud_rebuilt = (sidecar.fetched / syncspec.REBUILT_FILENAME).is_file()
        if sent.uploaded and self.sides is not None:
            # The states to keep are those from before this bisync, and after the upload:
            # else the next run would see its own upload as a change on the cloud.
            self.sides = unchanged.look(self.settings, self.segment)
        revealed = [] if resync else self._reveal_hidden_edits(sidecar)
        args = self._args(extra, options, resync=resync)
        if revealed:
            # bisync now sees those files changed, but its copy would still skip them as equal
            # in size and (to the second) time. Only changed files are queued for copying, so
            # this copies nothing bisync had not already decided to copy.
            args.append("--ignore-times")
        result = self.rclone.run_logged(
            args,
            log_file=self.files.log,
            interrupts=self.interrupts,
            on_record=self.on_record,
        )
        outcome = self.classify(result)
        if result.code == 7 and self._reinstate_listings() and outcome.kind == LOCKED_OUT:
            outcome = Outcome(
                RETRY,
                "the sync stopped while copying "
                f"({_last(result.messages('error')) or 'exit 7'}); the next sync continues "
                "from the last good one",
                exit_code=result.code,
            )
        stats = result.stats or {}
        outcome.files_transferred = int(stats.get("transfers") or 0)
        outcome.bytes_transferred = int(stats.get("bytes") or 0)
        outcome.deletes = int(stats.get("deletes") or 0)
        outcome.conflict_files = self._conflicts(result)
        if outcome.kind != OK:
            return outcome
        received = sidecar.receive(
            moved=resync or bool(outcome.files_transferred or outcome.conflict_files)
        )
        problems = sent.problems + fetched.problems + received.problems
        outcome.notes += revealed + problems
        if sent.failed or fetched.failed or received.failed:
            # The files are in sync but their bits and times are not: not a sync to settle on.
            outcome.kind = RETRY
            outcome.message = "files in sync; " + problems[0]
            if sent.failed and quota.refused_upload(sent.problems):
                outcome.message = self._sidecar_over_quota() or outcome.message
        return outcome

    def _reveal_hidden_edits(self, sidecar: SegmentSidecar) -> list[str]:
        """Make bisync look at same-size edits within a second of the last version, on
        either side (bluegrass.laptop.hidden, decision 60); a note for each side."""
        synced = sidecar.synced()
        work = self.files.workdir
        path1, path2 = sorted(work.glob("*.path1.lst")), sorted(work.glob("*.path2.lst"))
        if not synced or not path1 or not path2:
            return []  # no good sync recorded yet: nothing to compare with
        notes = []
        mine = hidden.local_edits(sidecar.current, synced, lambda: guard.read_listing(path1[0]))
        if mine and hidden.force(path1[0], mine):
            notes.append(
                f"{_count(len(mine), 'file')} edited here within a second of the last "
                "version, with the same size: compared by content"
            )
        if sidecar.sidecars is not None:
            candidates = hidden.cloud_candidates(
                sidecar.current,
                synced,
                sidecar.sidecars,
                sidecar.name,
                lambda: guard.read_listing(path2[0]),
            )
            theirs = (
                hidden.differing_on_cloud(
                    self.rclone, self.segment.name, self.segment.path, candidates
                )
                if candidates
                else []
            )
            if theirs and hidden.force(path2[0], theirs):
                notes.append(
                    f"{_count(len(theirs), 'file')} changed on the cloud within a second of "
                    "the version here, with the same size: compared by content"
                )
        return notes

    def _guard_changes(self, options: Options) -> Outcome | None:
        """Stop before bisync copies this computer's changes over more than the segment's
        share of the cloud's files (ransomware, a tool gone wrong); decision 64."""
        if options.confirm_changes or options.restore:
            return None
        listing_file = guard.prior_listing(self.files.workdir, "path1")
        if listing_file is None:
            return None  # a first sync: nothing on the cloud is this computer's to overwrite
        changes = guard.local_changes(self.segment.path, guard.read_listing(listing_file))
        percent = self.segment.max_change_percent
        if not changes.too_many(percent):
            return None
        name = self.segment.name
        count = len(changes.changed)
        message = (
            f"stopped before copying {count} of {changes.files} files changed on this "
            f"computer over the cloud's copies (more than {percent}% of the segment); "
            "nothing was copied"
        )
        if self._looks_encrypted(changes.changed):
            message += (
                "; the changed files look encrypted (text turned into random bytes): ransomware?"
            )
        return Outcome(
            NEEDS_USER,
            message,
            action="If you changed them on purpose, confirm; if not, put the cloud's copies "
            "back (this computer's versions are kept aside) with "
            f"`{command_for(name, '--restore-from-cloud')}`",
            command=command_for(name, "--confirm-changes"),
        )

    def _looks_encrypted(self, changed: list[str]) -> bool:
        """A few changed files, before (the cloud's copy, not yet overwritten) and now."""
        pairs = []
        for name in guard.sample(changed):
            before = self.rclone.head(
                f"{remote.remote_path(self.segment.name)}/{name}", guard.SAMPLE_BYTES
            )
            if before is not None:
                pairs.append((before, guard.head(guard.local_path(self.segment.path, name))))
        return guard.verdict(pairs)

    def _conflicts(self, result: RunResult) -> list[str]:
        found = []
        local_root = str(self.segment.path).rstrip("/\\")
        remote_root = remote.remote_path(self.segment.name) + "/"
        for record in result.records:
            match = _RENAMED.search(record.msg)
            if not match:
                continue
            target = match.group(1).strip()
            if target.startswith(remote_root):
                target = target[len(remote_root) :]
            elif target.startswith(local_root):
                target = target[len(local_root) :].lstrip("/\\").replace("\\", "/")
            if target not in found:
                found.append(target)
        return found

    # -- what a result means ---------------------------------------------------------------

    def classify(self, result: RunResult) -> Outcome:
        """Given bisync's result, return what it means for the person (decision 18).

        The exit code alone misleads, so rclone's own words decide: each reading below
        looks for its words and returns an outcome, or None to let the next one look; the
        first that answers wins, in this order.
        """
        seen = _Seen.of(result)
        if seen.code == 0:
            if result.signalled:
                return Outcome(
                    RETRY,
                    "stopped early, as asked; the next sync continues where this one stopped",
                    exit_code=seen.code,
                )
            return Outcome(OK, "in sync", exit_code=seen.code)
        readings = (
            self._over_quota,
            self._no_space,
            self._unreachable,
            self._too_many_deletes,
            self._all_changed,
            self._check_file_missing,
            self._rclone_locked,
            self._side_empty,
            self._critical,
            self._refused,
        )
        for reading in readings:
            outcome = reading(seen)
            if outcome is not None:
                return outcome
        if seen.code == 7:
            return Outcome(
                RETRY,
                f"the sync stopped on an error it can retry: {_last(seen.errors)}",
                exit_code=seen.code,
            )
        return Outcome(
            RETRY,
            f"the sync failed: {_last(seen.errors) or f'exit {seen.code}'}",
            exit_code=seen.code,
        )

    def _over_quota(self, seen: _Seen) -> Outcome | None:
        """An upload the cloud refused because the user is at or over their quota: sftp only
        says "permission denied", so the cloud is asked (decision 133)."""
        if not quota.refused_upload(seen.errors):
            return None
        found = quota.Quota.from_answer(CloudHTTP(self.settings).quota())
        if found is None:
            return None
        if not found.over:
            # Deletions in this very run brought the user under; the cloud, asked just now,
            # lets the restricted login go, so the next sync sends what was refused.
            return Outcome(
                RETRY,
                f"the cloud refused new files while over its quota; under it now: "
                f"{found.line()}; will retry",
                exit_code=seen.code,
            )
        if found.read_only:
            return Outcome(
                NEEDS_USER,
                f"over the cloud's quota, and files there grew while over it: the cloud "
                f"takes no changes now, only downloads: {found.line()}",
                action=quota.ACTION_READ_ONLY,
                exit_code=seen.code,
            )
        return Outcome(
            NEEDS_USER,
            f"over the cloud's quota: new files were refused: {found.line()}; downloads "
            "and deletions still sync",
            action=quota.ACTION,
            exit_code=seen.code,
        )

    def _unreachable(self, seen: _Seen) -> Outcome | None:
        return self._connection_outcome("\n".join(seen.errors) or seen.text, seen.code)

    def _too_many_deletes(self, seen: _Seen) -> Outcome | None:
        if "too many deletes" not in seen.text:
            return None
        detail = _first(seen.errors, "too many deletes") or "too many deletes"
        side = "on this computer" if "Path1" in detail else "on the cloud"
        how_many = self._deleted_files(seen.result, "Path1" if "Path1" in detail else "Path2")
        return Outcome(
            NEEDS_USER,
            f"stopped before deleting {how_many} {side} (more than "
            f"{self.segment.max_delete_percent}% of the segment); nothing was deleted",
            action="If you meant to delete them, confirm; if not, bring them back with "
            f"`{command_for(self.segment.name, '--resync')}`",
            command=command_for(self.segment.name, "--confirm-deletes"),
            exit_code=seen.code,
        )

    def _all_changed(self, seen: _Seen) -> Outcome | None:
        if "all files were changed" not in seen.text.lower():
            return None
        return Outcome(
            NEEDS_USER,
            "every file looks changed since the last sync (a clock or time zone change?); "
            "nothing was copied",
            action="If that is expected, confirm",
            command=command_for(self.segment.name, "--confirm-deletes"),
            exit_code=seen.code,
        )

    def _check_file_missing(self, seen: _Seen) -> Outcome | None:
        text = seen.text
        if "Access test failed" not in text and "check file check failed" not in text:
            return None
        on_cloud = "Path1 file not found in Path2" in text or "Path2 count 0" in text
        if (
            on_cloud
            and self.cloud_rebuilt
            and (self.segment.path / filters.CHECK_FILENAME).is_file()
        ):
            self.cloud_anew = True
        where = (
            "on the cloud"
            if on_cloud
            else f"in {self.segment.path} (is it the right folder, its disk mounted?)"
        )
        return Outcome(
            NEEDS_USER,
            f"the check file {filters.CHECK_FILENAME} is missing {where}; nothing was "
            "synced, to protect your files",
            action="If the folder is the right one, put the check file back and copy "
            "everything both ways (nothing is deleted)",
            command=command_for(self.segment.name, "--resync"),
            exit_code=seen.code,
        )

    def _rclone_locked(self, seen: _Seen) -> Outcome | None:
        if "prior lock file found" not in seen.text:
            return None
        return Outcome(
            RETRY, f"another sync of {self.segment.name} holds rclone's lock", exit_code=seen.code
        )

    def _side_empty(self, seen: _Seen) -> Outcome | None:
        if "Empty current Path" not in seen.text:
            return None
        return Outcome(
            NEEDS_USER,
            "one side of the segment is empty; nothing was synced, to protect your files",
            action="Check the folder (and its disk), then copy everything both ways",
            command=command_for(self.segment.name, "--resync"),
            exit_code=seen.code,
        )

    def _critical(self, seen: _Seen) -> Outcome | None:
        """Locked out: exit 7 with no listings left (nor their backups), or rclone's own
        "Must run --resync" (decision 18)."""
        if seen.code != 7 or (self._has_listings() and "Must run --resync" not in seen.text):
            return None
        return self._locked_out(
            _first(seen.errors, "critical") or "bisync reported a critical error"
        )

    def _refused(self, seen: _Seen) -> Outcome | None:
        if seen.code != 2:
            return None
        return Outcome(
            NEEDS_USER,
            f"rclone refused the sync command: {_last(seen.errors)}",
            action=f"This is a bug in Bluegrass; please report it with the log {self.files.log}",
            exit_code=seen.code,
        )

    def _no_space(self, seen: _Seen) -> Outcome | None:
        """A full disk, told apart from a broken connection (decision 67).

        The cloud's sftp server passes ENOSPC on as SSH_FX_FAILURE with the server's own
        words, "write PATH: no space left on device", but only on the write that hit it
        (often the Close); the other attempts read 'sftp: "io: read/write on closed pipe"
        (SSH_FX_FAILURE)', which says nothing of space. Then the cloud is asked its free
        space (`rclone about`, statvfs over sftp, 0.06 s): less than a file that failed
        to upload is a full disk too.
        """
        errors, code = seen.errors, seen.code
        full = [e for e in errors if _NO_SPACE.search(e)]
        failed_writes = [
            r for r in seen.result.records if "closed pipe" in r.msg and "SSH_FX_FAILURE" in r.msg
        ]
        if not full and failed_writes and self._cloud_too_full(failed_writes):
            full = ["sftp: the cloud has less free space than a file that failed"]
        if full:
            cloud = any("sftp:" in e or "SSH_FX" in e for e in full)
            where = "on the cloud" if cloud else "on this computer"
            return Outcome(
                RETRY,
                f"no space left {where}; nothing was lost, the files not copied are copied "
                "by the next sync; will retry",
                action=f"Free some space {where}" + (" (ask its administrator)" if cloud else ""),
                exit_code=code,
            )
        if any("closed pipe" in e and "SSH_FX_FAILURE" in e for e in errors):
            return Outcome(
                RETRY,
                "the cloud failed a write (io: read/write on closed pipe; a full disk on the "
                "cloud can look like this); will retry",
                exit_code=code,
            )
        return None

    def _cloud_too_full(self, failed: list[LogRecord]) -> bool:
        largest = 0
        for record in failed:
            try:
                largest = max(
                    largest, guard.local_path(self.segment.path, record.object).stat().st_size
                )
            except (OSError, ValueError):
                continue
        if not largest:
            return False
        try:
            proc = self.rclone.run(["about", f"{remote.REMOTE}:", "--json"], timeout=30)
            free = int(json.loads(proc.stdout)["free"]) if proc.returncode == 0 else None
        except (BluegrassError, ValueError, KeyError, TypeError):
            return False
        return free is not None and free < largest

    def _deleted_files(self, result: RunResult, side: str) -> str:
        """ "N of M files": rclone's own count in its abort message takes folders for files
        (8 photos in 8 albums deleted read "17 of 23"), so count the deletions it logged
        against the files of that side's last listing."""
        listing_file = guard.prior_listing(self.files.workdir, side.lower())
        listing = guard.read_listing(listing_file) if listing_file else {}
        names = []
        for record in result.records:
            match = _DELETED.match(record.msg)
            if match and match.group(1) == side:
                names.append(match.group(2))
        deleted, files = guard.files_only(listing, names)
        return f"{deleted} of {files} files" if files else "many files"

    def _connection_outcome(self, text: str, code: int) -> Outcome | None:
        kind = remote.connection_problem(text)
        server = self.settings.server
        if kind == remote.HOST_KEY:
            return Outcome(
                NEEDS_USER,
                "host key does not match: "
                + remote.host_key_message(server["host"], server["sftp_port"]),
                action="Get a new enrollment code from the server's administrator",
                command="bluegrass enroll --force CODE",
                exit_code=code,
            )
        if kind == remote.AUTH:
            return self._auth_outcome(code)
        if kind in (remote.NETWORK, remote.OTHER):
            return Outcome(
                RETRY,
                f"cannot reach the server {server['host']}:{server['sftp_port']} "
                f"({_reason(text)}); will retry",
                exit_code=code,
            )
        return None

    def _auth_outcome(self, code: int) -> Outcome:
        """A refused sftp login, worded by what the pinned HTTPS side says of the password."""
        user = self.settings.server["user"]
        verdict = credential.of_settings(self.settings)
        if verdict.kind == credential.REFUSED:
            return Outcome(
                NEEDS_USER,
                remote.auth_refused_message(user),
                action="Get a new enrollment code",
                command="bluegrass enroll --force CODE",
                exit_code=code,
            )
        if verdict.kind == credential.ACCEPTED:
            return Outcome(RETRY, remote.auth_busy_message(user), exit_code=code)
        return Outcome(RETRY, remote.auth_unknown_message(user, verdict.why), exit_code=code)

    def _locked_out(self, detail: str) -> Outcome:
        return Outcome(
            LOCKED_OUT,
            f"sync of {self.segment.name} is locked out: {_one_line(detail)}",
            action="Copy everything both ways to start afresh (nothing is deleted; files "
            "deleted since the last good sync come back)",
            command=command_for(self.segment.name, "--resync"),
        )

    # -- remembering -----------------------------------------------------------------------

    def _record(self, state: SegmentState, outcome: Outcome, started: str) -> None:
        if not outcome.recorded:
            return
        finished = now_iso()
        state.last_run = LastRun(
            started=started,
            finished=finished,
            outcome=outcome.kind,
            message=outcome.message,
            action=outcome.action,
            command=outcome.command,
            resync=outcome.resync,
            exit_code=outcome.exit_code,
            files_transferred=outcome.files_transferred,
            bytes_transferred=outcome.bytes_transferred,
            deletes=outcome.deletes,
            conflicts=len(outcome.conflict_files),
            bisync=outcome.bisync,
        )
        if outcome.kind == OK:
            state.failures = 0
            state.last_ok = finished
        else:
            state.failures += 1
        if self._has_listings():  # only a completed --resync creates them
            state.established = True
        self.files.save(state)


_NO_SPACE = re.compile(r"no space left on device|disk quota exceeded|not enough space", re.I)
_DELETED = re.compile(r"-\s+(Path[12])\s+File was deleted\s+-\s(.+)$")
_RENAMED = re.compile(r"Renaming Path[12] copy\s+-\s+(.+)$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _rclone_time(text: object) -> datetime | None:
    """rclone's RFC 3339 times carry nanoseconds; Python reads at most microseconds."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _files_under(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if not p.is_dir()) if folder.is_dir() else 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first(lines: list[str], needle: str) -> str | None:
    for line in lines:
        if needle.lower() in line.lower():
            return _one_line(line)
    return None


def _last(lines: list[str]) -> str:
    for line in reversed(lines):
        if line.strip():
            return _one_line(line)[:300]
    return ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return _one_line(lines[-1])[:300] if lines else ""


def _reason(text: str) -> str:
    low = text.lower()
    for needle in (
        "connection refused",
        "no route to host",
        "i/o timeout",
        "network is unreachable",
        "no such host",
        "connection reset",
        "temporary failure in name resolution",
    ):
        if needle in low:
            return needle
    return _last_line(text)[-120:]


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
