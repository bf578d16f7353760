"""Target URL -> storage backend. Backends are imported lazily: a file:// push must not
pay for boto3 or paramiko."""

from __future__ import annotations

from pgharbor.errors import ConfigError, UsageError
from pgharbor.storage.base import plain_file_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from pgharbor.storage.base import Storage

SCHEMES = ("file", "ssh", "s3", "memory")


def validate_url(url: str) -> str:
    """Check a target URL's form without connecting. Returns it unchanged."""
    plain = plain_file_url(url)
    if plain is not None:  # what urlsplit gives, without importing urllib.parse
        netloc, path = plain
        if netloc not in ("", "localhost") or not path:
            raise UsageError(f"bad file URL {url!r}: use file:///absolute/path")
        return url
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise UsageError(f"unsupported target URL {url!r}: expected file://, ssh:// or s3://")
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path):
        raise UsageError(f"bad file URL {url!r}: use file:///absolute/path")
    if parts.scheme == "ssh" and (not parts.hostname or not parts.path.strip("/")):
        raise UsageError(f"bad ssh URL {url!r}: use ssh://USER@HOST:PORT/ROOT/PATH")
    if parts.scheme == "s3" and not parts.netloc:
        raise UsageError(f"bad s3 URL {url!r}: use s3://BUCKET/PREFIX")
    return url


def open_storage(url: str, options: Mapping[str, Any] | None = None) -> Storage:
    validate_url(url)
    if plain_file_url(url) is not None:
        scheme = "file"
    else:
        from urllib.parse import urlsplit

        scheme = urlsplit(url).scheme
    opts = dict(options or {})
    try:
        return _open(scheme, url, opts)
    except TypeError as exc:  # an unknown option for this backend in the config file
        raise ConfigError(f"bad settings for target {url}: {exc}") from None


def _open(scheme: str, url: str, opts: dict[str, Any]) -> Storage:
    if scheme == "file":
        from pgharbor.storage.file import FileStorage

        return FileStorage(url, **opts)
    if scheme == "memory":
        from pgharbor.storage.memory import MemoryStorage

        return MemoryStorage(url)
    if scheme == "ssh":
        from pgharbor.storage.ssh import SSHStorage

        return SSHStorage(url, **opts)  # type: ignore[no-any-return]
    from pgharbor.storage.s3 import S3Storage

    return S3Storage(url, **opts)
