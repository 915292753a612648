"""The web console: server-rendered pages for admins, ops and member analysts.

    api.console.register(app)    # after create_app has built the OpenAPI document

Pages (one blueprint per family, all under `/console`): dashboard, review queue
and disputes, lookup, hash detail, imports, members and keys, reports. Login
takes an API key; the session is a signed cookie (`secret`), re-checked against
the database on every request (`session`); every POST carries a CSRF token
(`csrf`). Charts are SVG drawn on the server (`charts`), hashes are pictured by
their bits (`visual`), and the only script (`static/console.js`) polls import
progress and helps with ticking boxes and dropping files; everything works
without it. No asset comes from another site.

`register` comes after the OpenAPI build because the console's pages are not part
of the API and carry no `@document`.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Mount the console on `app` (once; a second call does nothing)."""
    from api.console.routes import mount

    mount(app)
