"""DATA/bluegrass.db as one object: users and devices, login failures, job history, web jobs
and the web interface's sign-ins, over one connection.

Each part lives in the module that owns it (decision 102): the connection and the schema in
bluegrass.cloud.database, users and devices in bluegrass.cloud.credentials, the sync
endpoint's failed logins in bluegrass.cloud.loginfailures, the job history in
bluegrass.cloud.jobhistory, the web jobs in bluegrass.cloud.webjobstore. `Accounts` is all of
them, for the many callers that use several parts in one transaction; the web sign-ins
(bluegrass.panel.accounts) are reached from here because they need the users.
"""

from __future__ import annotations

from bluegrass.cloud.credentials import Credentials
from bluegrass.cloud.jobhistory import JobHistory
from bluegrass.cloud.loginfailures import LoginFailures
from bluegrass.cloud.webjobstore import WebJobStore
from bluegrass.core.errors import UsageError
from bluegrass.panel.accounts import Account, WebAccounts


class Accounts(Credentials, LoginFailures, JobHistory, WebJobStore):
    """One connection to DATA/bluegrass.db with every part's methods."""

    def web(self) -> WebAccounts:
        """The panel's sign-ins in this database (bluegrass.panel.accounts)."""
        return WebAccounts(self.db)

    def web_account(self, user: str) -> Account | None:
        return self.web().get(user)

    def web_accounts(self) -> list[Account]:
        return self.web().all()

    def has_web_admin(self) -> bool:
        return self.web().has_admin()

    def set_web_password(
        self, user: str, password_hash: str, *, admin: bool | None = None
    ) -> Account:
        """Inside a transaction: give `user` (an existing user) a web password; a new session
        epoch every time. `admin` None keeps the flag (a new account is not an administrator).
        Raise UsageError for an unknown user."""
        if not self.has_user(user):
            raise UsageError(f"unknown user {user!r} (see: bluegrass-cloud user list)")
        return self.web().set_password(user, password_hash, admin)
