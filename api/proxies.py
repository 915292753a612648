"""Trusted reverse proxies: whose X-Forwarded-* headers are believed.

Behind a load balancer every request's peer is the balancer, and the client's
address arrives in `X-Forwarded-For`. Any client can send that header too, so it
is applied only when the peer address is one of HASHDB_TRUSTED_PROXIES (addresses
or CIDR networks): then werkzeug's `ProxyFix` takes one hop of `X-Forwarded-For`,
`-Proto` and `-Host` (the proxy's own entry), and the request's `remote_addr` is
the client. A request from any other peer keeps its own address whatever it sends.
Everything downstream (the access log, `api.logs`, and anything keyed by address)
reads `request.remote_addr`, so it sees the resulting address. With no trusted
proxy (the default) the app is not wrapped at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Network = IPv4Network | IPv6Network


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests whose peer is a trusted proxy."""

    def __init__(self, app: WSGIApplication, networks: Iterable[Network]) -> None:
        self._app = app
        self._fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1)
        self._networks = tuple(networks)

    def trusts(self, peer: str | None) -> bool:
        if not peer:
            return False
        try:
            address = ip_address(peer)
        except ValueError:
            return False  # a unix socket peer, or a test client's name
        return any(address in network for network in self._networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.trusts(environ.get("REMOTE_ADDR")):
            return self._fixed(environ, start_response)
        return self._app(environ, start_response)


def wrap(app: WSGIApplication, networks: Iterable[Network]) -> WSGIApplication:
    """`app`, behind `TrustedProxies` when any network is trusted."""
    trusted = tuple(networks)
    return TrustedProxies(app, trusted) if trusted else app


__all__ = ["Network", "TrustedProxies", "wrap"]
