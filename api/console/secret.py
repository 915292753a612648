"""The key that signs console session cookies, and a session interface that needs it
only when a console session is really used.

A Flask session is a signed (not encrypted) cookie, so the key must be the same in
every worker and on every server that shares the database, or a login made through
one worker is refused by the next. `HASHDB_SECRET_KEY` sets it. Unset, a key is
generated once and kept in `console-secret-key` in the data directory (mode 0600):
workers of one server agree on it, and sessions survive restarts. Two workers
starting at once write their candidates to temporary files and `link` them into
place; `link` fails when the name exists, so the first wins and both read the same
key. If the data directory is not writable, each process makes its own random key
and says so: sessions then last as long as the process and do not span workers.

The API itself never uses the session: `LazySessions` gives requests outside the
console Flask's null session (no cookie parsed, none written), and opens a console
session without touching the key when the request carries no console cookie, so
API requests (and the API's tests) never create the key file. It also marks the cookie `Secure`
whenever the request came over HTTPS (`request.is_secure`): behind a reverse
proxy that is what gunicorn concludes from `X-Forwarded-Proto` sent by an address
in its `forwarded_allow_ips` (by default the same host). The cookie is always
`HttpOnly` and `SameSite=Lax` (`api.console.routes`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
import threading
from pathlib import Path

from flask import Flask, Request
from flask import request as current_request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from hashdb.errors import InvalidInput
from hashdb.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "console-secret-key"
CONSOLE_PATHS = "/console"  # api.console.routes' prefix: the only pages with sessions
MIN_KEY_CHARS = 32


def key_from_file(data_dir: Path) -> str:
    """The key kept in the data directory, created there if missing."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, candidate = tempfile.mkstemp(dir=data_dir, prefix=".console-key-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
            # If another worker won the race, its key is the one.
            with contextlib.suppress(FileExistsError):
                os.link(candidate, path)
        finally:
            Path(candidate).unlink(missing_ok=True)
    key = path.read_text().strip()
    if len(key) < MIN_KEY_CHARS:
        raise InvalidInput(
            f"{path} holds a key shorter than {MIN_KEY_CHARS} characters; delete it to "
            "have a new one made",
            field="HASHDB_SECRET_KEY",
        )
    return key


def session_key(settings: Settings) -> str:
    """HASHDB_SECRET_KEY, else the data directory's key, else a per-process one."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    try:
        return key_from_file(settings.data_dir)
    except OSError as exc:
        log.warning(
            "cannot keep the console key in %s (%s): using a key of this process only; "
            "console logins will not survive a restart nor span workers. Set "
            "HASHDB_SECRET_KEY.",
            settings.data_dir,
            exc.strerror,
        )
        return secrets.token_urlsafe(48)


class LazySessions(SecureCookieSessionInterface):
    """Signed-cookie sessions whose key is resolved on first use, not at start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key: str | None = None
        self._lock = threading.Lock()

    def key(self) -> str:
        with self._lock:
            if self._key is None:
                self._key = session_key(self._settings)
            return self._key

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self.key(),
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={
                "key_derivation": self.key_derivation,
                "digest_method": self.digest_method,
            },
        )

    def get_cookie_secure(self, app: Flask) -> bool:
        return current_request.is_secure or super().get_cookie_secure(app)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(CONSOLE_PATHS):
            return None  # Flask's null session: the JSON API has no use for a cookie
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)
