"""What every request of the web app reaches: the services, the settings, this node (for
/health), the metrics registry (for /metrics), and the key that signs session cookies."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgharbor.errors import ConfigError
from pgharbor.services.context import Services
from pgharbor.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from pgharbor.scheduler.health import HasHealth

SECRET_BYTES = 32


@dataclass
class WebContext:
    services: Services
    settings: Settings
    node: HasHealth | None = None
    registry: CollectorRegistry | None = None
    secret: bytes = b""
    session_ttl: float = 8 * 3600.0
    tls: bool = False  # served over https: cookies are Secure

    @classmethod
    def build(
        cls,
        services: Services,
        node: HasHealth | None = None,
        registry: CollectorRegistry | None = None,
        *,
        tls: bool = False,
    ) -> WebContext:
        s = services.settings
        return cls(services, s, node, registry, load_secret(s), s.web_session_ttl, tls)


def secret_path(settings: Settings) -> Path:
    return Path(settings.web_secret_file or os.path.join(settings.state_dir, "web-secret"))


def load_secret(settings: Settings) -> bytes:
    """The cookie-signing key from ``web_secret_file``; made (mode 0600) when absent."""
    path = secret_path(settings)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise ConfigError(f"cannot read the web secret {path}: {exc.strerror}") from None
    if data:
        if len(data.strip()) < SECRET_BYTES:
            raise ConfigError(f"the web secret {path} is too short (at least {SECRET_BYTES} bytes)")
        return data.strip()
    key = secrets.token_hex(SECRET_BYTES).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return load_secret(settings)
    except OSError as exc:
        raise ConfigError(f"cannot create the web secret {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return key
