"""Emergency access's records and rules, in DATA/bluegrass.db (decisions 180-184).

An owner names trusted people (other users with a web login) and a waiting period in whole
days. A trusted person may request access; the request waits, the owner sees it at once and
may refuse it; once the wait has run out by the server's own clock, the request is granted:
the grantee may read the owner's history until the owner ends it or removes them. Every step
goes to `emergency_log`, which the owner reads, and to the server's log.

"Granted" is decided here and nowhere else: `refresh` turns each waiting request whose wait
has run out into a granted one (logging it, dated when the wait ended) inside the transaction
of whoever looks first, so every worker and every reader agrees on one moment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bluegrass.cloud.database import Database
from bluegrass.core.errors import UsageError

DAY = 86400.0
MIN_DAYS = 1
MAX_DAYS = 90
DEFAULT_DAYS = 7
LOG_PAGE = 200

log = logging.getLogger("bluegrass.cloud.emergency")


def _server_log(text: str) -> None:
    # The owner is told on their dashboard; the administrator sees it in `run`'s log
    # (gunicorn's stderr), where a notification can later be hooked.
    log.warning("emergency access: %s", text)


def check_wait(days: int) -> None:
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise UsageError(
            f"The waiting period is a whole number of days from {MIN_DAYS} to {MAX_DAYS}, "
            f"not {days}."
        )


@dataclass(frozen=True)
class Contact:
    owner: str
    grantee: str
    wait_days: int
    added: float


@dataclass(frozen=True)
class Request:
    id: int
    owner: str
    grantee: str
    requested: float
    wait_days: int
    state: str  # waiting, granted, refused, ended
    closed: float | None

    @property
    def grants_at(self) -> float:
        return self.requested + self.wait_days * DAY


@dataclass(frozen=True)
class Event:
    at: float
    owner: str
    grantee: str
    event: str
    detail: str


_REQUEST = "SELECT id, owner, grantee, requested, wait_days, state, closed FROM emergency_requests"
_DUE = " WHERE state = 'waiting' AND requested + wait_days * ? <= ?"


class EmergencyStore(Database):
    """Trusted people, requests and their log; every change in one transaction."""

    def _log(
        self,
        at: float,
        owner: str,
        grantee: str,
        event: str,
        detail: str,
        request: int | None = None,
        session: str | None = None,
    ) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO emergency_log (at, owner, grantee, event, detail, request,"
            " session) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, owner, grantee, event, detail, request, session),
        )
        return cur.rowcount == 1

    def refresh(self, now: float | None = None) -> None:
        """Grant every waiting request whose wait has run out (by this server's clock)."""
        now = time.time() if now is None else now
        # Every page a grantee opens asks: a read first, so a write lock is taken only when
        # there is something to grant.
        if self.db.execute(_REQUEST + _DUE, (DAY, now)).fetchone() is None:
            return
        with self.transaction():
            due = self.db.execute(
                _REQUEST + _DUE,
                (DAY, now),
            ).fetchall()
            for row in due:
                req = Request(*row)
                self.db.execute(
                    "UPDATE emergency_requests SET state = 'granted' WHERE id = ?", (req.id,)
                )
                detail = (
                    f"{req.grantee} may now read your history: the {req.wait_days}-day wait "
                    "ran out without a refusal."
                )
                self._log(req.grants_at, req.owner, req.grantee, "granted", detail, req.id)
                _server_log(f"{req.grantee} now has read access to {req.owner}'s history")

    # -- reading ---------------------------------------------------------------------------

    def has_login(self, name: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM web_accounts WHERE name = ?", (name,)).fetchone()
            is not None
        )

    def contact(self, owner: str, grantee: str) -> Contact | None:
        row = self.db.execute(
            "SELECT owner, grantee, wait_days, added FROM emergency_contacts"
            " WHERE owner = ? AND grantee = ?",
            (owner, grantee),
        ).fetchone()
        return Contact(*row) if row else None

    def trusted(self, owner: str) -> list[Contact]:
        rows = self.db.execute(
            "SELECT owner, grantee, wait_days, added FROM emergency_contacts WHERE owner = ?"
            " ORDER BY grantee",
            (owner,),
        )
        return [Contact(*row) for row in rows]

    def trusted_by(self, grantee: str) -> list[Contact]:
        rows = self.db.execute(
            "SELECT owner, grantee, wait_days, added FROM emergency_contacts WHERE grantee = ?"
            " ORDER BY owner",
            (grantee,),
        )
        return [Contact(*row) for row in rows]

    def latest(self, owner: str, grantee: str) -> Request | None:
        row = self.db.execute(
            _REQUEST + " WHERE owner = ? AND grantee = ? ORDER BY id DESC LIMIT 1",
            (owner, grantee),
        ).fetchone()
        return Request(*row) if row else None

    def open_request(self, owner: str, grantee: str) -> Request | None:
        found = self.latest(owner, grantee)
        return found if found is not None and found.state in ("waiting", "granted") else None

    def granted_owners(self, grantee: str) -> list[str]:
        """The owners whose history `grantee` may read now (call `refresh` first). A grant
        counts only while its owner still names the grantee."""
        rows = self.db.execute(
            "SELECT DISTINCT r.owner FROM emergency_requests r JOIN emergency_contacts c"
            " ON c.owner = r.owner AND c.grantee = r.grantee"
            " WHERE r.grantee = ? AND r.state = 'granted' ORDER BY r.owner",
            (grantee,),
        )
        return [row[0] for row in rows]

    def events(self, owner: str, limit: int = LOG_PAGE) -> list[Event]:
        rows = self.db.execute(
            "SELECT at, owner, grantee, event, detail FROM emergency_log WHERE owner = ?"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (owner, limit),
        )
        return [Event(*row) for row in rows]

    # -- steps -----------------------------------------------------------------------------

    def add_trusted(self, owner: str, grantee: str, wait_days: int) -> None:
        """Name `grantee` as trusted by `owner`, or change their wait. UsageError for oneself,
        someone without a web login, or a wait out of range; nothing is stored then."""
        if grantee == owner:
            raise UsageError("You cannot name yourself as your own trusted person.")
        check_wait(wait_days)
        now = time.time()
        with self.transaction():
            if not self.has_login(grantee):
                raise UsageError(
                    f"There is no user {grantee!r} with a web login on this server: a trusted "
                    "person needs their own account here."
                )
            before = self.contact(owner, grantee)
            if before is None:
                self.db.execute(
                    "INSERT INTO emergency_contacts (owner, grantee, wait_days, added)"
                    " VALUES (?, ?, ?, ?)",
                    (owner, grantee, wait_days, now),
                )
                detail = f"{grantee} named as a trusted person, with a {wait_days}-day wait."
                self._log(now, owner, grantee, "added", detail)
            elif before.wait_days != wait_days:
                self.db.execute(
                    "UPDATE emergency_contacts SET wait_days = ? WHERE owner = ? AND grantee = ?",
                    (wait_days, owner, grantee),
                )
                detail = (
                    f"The wait for {grantee} changed from {before.wait_days} to {wait_days} "
                    "days (a request already made keeps its own)."
                )
                self._log(now, owner, grantee, "changed", detail)
        _server_log(f"{owner} trusts {grantee} with a {wait_days}-day wait")

    def remove_trusted(self, owner: str, grantee: str) -> bool:
        """`grantee` is no longer trusted; their open request ends with it. False if they
        were not trusted."""
        now = time.time()
        with self.transaction():
            if self.contact(owner, grantee) is None:
                return False
            self.db.execute(
                "DELETE FROM emergency_contacts WHERE owner = ? AND grantee = ?", (owner, grantee)
            )
            self.db.execute(
                "UPDATE emergency_requests SET state = 'ended', closed = ?"
                " WHERE owner = ? AND grantee = ? AND state IN ('waiting', 'granted')",
                (now, owner, grantee),
            )
            detail = f"{grantee} removed from your trusted people; any access of theirs ended."
            self._log(now, owner, grantee, "removed", detail)
        _server_log(f"{owner} no longer trusts {grantee}")
        return True

    def request(self, owner: str, grantee: str) -> Request:
        """`grantee` asks for access to `owner`'s history. UsageError if `owner` does not name
        them (the caller shows that as not found); an open request is returned as it is."""
        now = time.time()
        self.refresh(now)
        with self.transaction():
            contact = self.contact(owner, grantee)
            if contact is None:
                raise UsageError(f"No user {owner!r} has named you as a trusted person.")
            found = self.open_request(owner, grantee)
            if found is not None:
                return found
            cur = self.db.execute(
                "INSERT INTO emergency_requests (owner, grantee, requested, wait_days, state)"
                " VALUES (?, ?, ?, ?, 'waiting')",
                (owner, grantee, now, contact.wait_days),
            )
            req_id = int(cur.lastrowid or 0)
            # No date in the text: the page shows when the wait ends, by the server's clock.
            detail = (
                f"{grantee} asked for emergency access to your history. Unless you refuse, "
                f"they can read it when the {contact.wait_days}-day wait runs out."
            )
            self._log(now, owner, grantee, "requested", detail, req_id)
        _server_log(f"{grantee} asked for access to {owner}'s history (request {req_id})")
        found = self.latest(owner, grantee)
        assert found is not None
        return found

    def end(self, owner: str, grantee: str) -> Request | None:
        """The owner refuses `grantee`'s waiting request or ends their granted one; None if
        there is none open."""
        now = time.time()
        self.refresh(now)
        with self.transaction():
            found = self.open_request(owner, grantee)
            if found is None:
                return None
            refused = found.state == "waiting"
            state = "refused" if refused else "ended"
            self.db.execute(
                "UPDATE emergency_requests SET state = ?, closed = ? WHERE id = ?",
                (state, now, found.id),
            )
            detail = (
                f"You refused {grantee}'s request; nothing was granted."
                if refused
                else f"You ended {grantee}'s access."
            )
            self._log(now, owner, grantee, state, detail, found.id)
        _server_log(f"{owner} {state} {grantee}'s access (request {found.id})")
        return self.latest(owner, grantee)

    def note_access(self, owner: str, grantee: str, session: str) -> None:
        """Log `grantee` reading `owner`'s history under the live grant, once per session."""
        now = time.time()
        self.refresh(now)
        with self.transaction():
            if owner not in self.granted_owners(grantee):
                return
            found = self.open_request(owner, grantee)
            if found is None:
                return
            detail = f"{grantee} opened your history (a new sign-in session)."
            added = self._log(now, owner, grantee, "accessed", detail, found.id, session)
        if added:
            _server_log(f"{grantee} reads {owner}'s history (request {found.id})")
