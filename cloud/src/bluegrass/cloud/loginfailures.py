"""The sync endpoint's failed logins, for its rate limiting, in DATA/bluegrass.db.

Kept apart from the web interface's (bluegrass.panel.accounts), so that guessing a web
password does not stop a user's laptops from syncing.
"""

from __future__ import annotations

from bluegrass.cloud.database import Database


class LoginFailures(Database):
    """Failed logins at the sync endpoint, by user name and by address."""

    def record_failure(
        self, user: str, client_ip: str, reason: str, at: float, keep: float
    ) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM login_failures WHERE at < ?", (at - keep,))
            db.execute(
                "INSERT INTO login_failures VALUES (?, ?, ?, ?)", (at, user, client_ip, reason)
            )

    def recent_failures(self, user: str, client_ip: str, since: float) -> tuple[int, int]:
        """Failures since `since` for this user name, and from this address."""
        by_user, by_ip = self.db.execute(
            "SELECT coalesce(sum(user = ?), 0), coalesce(sum(client_ip = ?), 0) "
            "FROM login_failures WHERE at >= ?",
            (user, client_ip, since),
        ).fetchone()
        return int(by_user), int(by_ip)
