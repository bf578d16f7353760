"""The node's HTTP server (stdlib, in a thread): ``GET /health`` is 200 while the
node's loop runs and the catalog answers, 503 otherwise, with a small JSON body;
``GET /metrics`` is the fleet's Prometheus metrics (monitor/metrics.py, cached there)
in the text exposition format. The web issue adds its endpoints here."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pgharbor.errors import UsageError

log = logging.getLogger(__name__)


class HasHealth(Protocol):
    def health(self) -> tuple[bool, dict[str, Any]]: ...


def start(
    node: HasHealth, host: str, port: int, registry: CollectorRegistry | None = None
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics" and registry is not None:
                self._metrics(registry)
                return
            if path != "/health":
                self._send(404, {"error": "not found"})
                return
            ok, body = node.health()
            self._send(200 if ok else 503, body)

        def _metrics(self, reg: CollectorRegistry) -> None:
            data = generate_latest(reg)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
