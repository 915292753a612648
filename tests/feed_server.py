"""A central service's export endpoint for sync tests, served from the library.

It answers `GET /v1/export?format=json` as the API does (the page as one JSON
object), authenticating the bearer key against its store. `db` may be swapped
while it runs, to stand for a central whose database was restored; `pages`
records every page served.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hashdb.consortium import export
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.errors import Unauthenticated
from hashdb.settings import Settings
from hashdb.store import Store


class FeedServer:
    """The central service's export endpoint, served from the library on 127.0.0.1."""

    def __init__(self, store: Store) -> None:
        self.db = Consortium(Settings(), store)  # swapped by a test to "restore" central
        self.pages: list[export.FeedPage] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    auth = self.headers.get("Authorization", "")
                    reader = Actor(
                        server.db.store.members.authenticate(auth.removeprefix("Bearer ")).member
                    )
                except Unauthenticated:
                    refusal = b'{"error": {"code": "unauthenticated", "message": "no"}}'
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(refusal)))
                    self.end_headers()
                    self.wfile.write(refusal)
                    return
                url = urllib.parse.urlsplit(self.path)
                args = dict(urllib.parse.parse_qsl(url.query))
                if url.path != "/v1/export":
                    self.send_error(404)
                    return
                assert args["format"] == "json"
                since = int(args.get("cursor", args.get("since", "0")))
                page = server.db.feed.page(reader, since, int(args["limit"]))
                server.pages.append(page)
                body = json.dumps(page.to_json()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
