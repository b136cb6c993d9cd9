"""The sync endpoint's failed logins, for its rate limiting, in DATA/bluegrass.db.

Failures are counted per source (an address; an IPv6 /64) and per device id, never per user
name: a user name is public, so counting by it let anyone lock a user's devices out
(decision 120). Kept apart from the web interface's (bluegrass.panel.accounts), so that
guessing a web password does not stop a user's laptops from syncing.
"""

from __future__ import annotations

from bluegrass.cloud.database import Database


class LoginFailures(Database):
    """Failed logins at the sync endpoint and git over HTTP, by source and by device id."""

    def record_failure(
        self, source: str, device: str, user: str, reason: str, at: float, keep: float
    ) -> None:
        """`user` is kept for the record only (shortened by the caller); it counts nothing."""
        with self.transaction() as db:
            db.execute("DELETE FROM login_failures WHERE at < ?", (at - keep,))
            db.execute(
                "INSERT INTO login_failures (at, user, client_ip, reason, device) "
                "VALUES (?, ?, ?, ?, ?)",
                (at, user, source, reason, device),
            )

    def recent_failures(self, source: str, device: str, since: float) -> tuple[int, int]:
        """Failures since `since` from this source, and for this device id ("" counts none)."""
        by_source, by_device = self.db.execute(
            "SELECT coalesce(sum(client_ip = ?), 0), coalesce(sum(device != '' AND device = ?), 0) "
            "FROM login_failures WHERE at >= ?",
            (source, device, since),
        ).fetchone()
        return int(by_source), int(by_device)
