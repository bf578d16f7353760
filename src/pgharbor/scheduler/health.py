"""The node's HTTP server: uvicorn serving the web app (pgharbor.web.app) in a thread:
``GET /health`` (anonymous: 200 while the node's loop runs and the catalog answers, 503
otherwise, with a small JSON body), ``GET /metrics`` (the fleet's Prometheus metrics,
monitor/metrics.py), the JSON API under /api/v1 and the dashboard.

The listening socket is bound here, before the thread starts, so that a taken port is
one clear error line; the socket is loopback-only unless TLS is given (``check_listen``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pgharbor.errors import UsageError

if TYPE_CHECKING:
    import uvicorn
    from prometheus_client import CollectorRegistry

    from pgharbor.services.context import Services

log = logging.getLogger(__name__)


class HasHealth(Protocol):
    def health(self) -> tuple[bool, dict[str, Any]]: ...


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_listen(host: str, tls: Tls | None) -> None:
    """Anything but loopback only over TLS; a certificate and key that load."""
    if tls is None:
        if not is_loopback(host):
            raise UsageError(
                f"refusing to listen on {host} without TLS",
                hint="give --tls-cert and --tls-key, or listen on 127.0.0.1",
            )
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(
            f"cannot use --tls-cert {tls.cert} / --tls-key {tls.key}: {reason}"
        ) from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


class WebServer:
    """uvicorn in a daemon thread; ``shutdown()`` stops it (as the stdlib server did)."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # the node goes on; /health is what tells
            log.error("the web server stopped: %s", exc)

    def start(self, wait: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + wait
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def start(
    node: HasHealth,
    host: str,
    port: int,
    registry: CollectorRegistry | None = None,
    *,
    services: Services,
    tls: Tls | None = None,
) -> WebServer:
    import uvicorn

    from pgharbor.web.app import create_app
    from pgharbor.web.context import WebContext

    check_listen(host, tls)
    ctx = WebContext.build(services, node, registry, tls=tls is not None)
    sock = bind(host, port)
    config = uvicorn.Config(
        create_app(ctx),
        log_config=None,  # pgharbor's logging (scheduler/logs.py)
        access_log=False,
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
        server_header=False,
        timeout_graceful_shutdown=5,
        lifespan="off",
        log_level="warning",  # its start and stop lines: the node logs its own
    )
    server = WebServer(uvicorn.Server(config), sock)
    server.start()
    return server
