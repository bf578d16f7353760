"""pgharbor serve: run a scheduler node (see pgharbor.scheduler) until SIGTERM."""

from __future__ import annotations

import socket

from pgharbor.backup.lease import refuse_root
from pgharbor.errors import UsageError
from pgharbor.scheduler import logs
from pgharbor.scheduler.daemon import NodeOptions, NodeReport, serve
from pgharbor.scheduler.health import Tls, check_listen
from pgharbor.services.context import Services

DEFAULT_LISTEN = "127.0.0.1:8420"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r} is not HOST:PORT", hint=f"e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def run_node(
    svc: Services,
    *,
    listen: str = DEFAULT_LISTEN,
    node: str | None = None,
    max_jobs: int | None = None,
    verbose: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> NodeReport:
    """Run this host's scheduler node until SIGTERM (exit 0 after a clean stop). The web
    server listens on loopback, or with TLS (a certificate and its key) anywhere."""
    refuse_root("serve")
    host, port = parse_listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give both --tls-cert and --tls-key (or neither)")
    tls = Tls(tls_cert, tls_key) if tls_cert and tls_key else None
    check_listen(host, tls)  # before anything is started
    if max_jobs is not None and max_jobs < 1:
        raise UsageError("--max-jobs must be at least 1")
    name = node or socket.gethostname()
    logs.setup(svc.settings, name, verbose=verbose)
    node_svc = Services(svc.settings, pooled=True)  # a daemon keeps its connections
    node_svc.catalog  # noqa: B018 - open (and check) the catalog before listening
    return serve(node_svc, NodeOptions(name, host, port, max_jobs, tls))
