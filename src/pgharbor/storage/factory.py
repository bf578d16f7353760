"""Target URL -> storage backend. Backends are imported lazily: a file:// push must not
pay for boto3 or paramiko."""

from __future__ import annotations

from pgharbor.errors import UsageError
from pgharbor.storage.base import plain_file_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from pgharbor.storage.base import Storage

SCHEMES = ("file", "ssh", "s3", "memory")


# query settings that hold credentials: never part of a URL (URLs reach the catalog,
# command lines and logs); they belong in the config file or the environment
SECRET_QUERY = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "secret_access_key",
        "access_key_id",
        "session_token",
        "token",
        "passphrase",
        "key",
    }
)


def redact_url(url: str) -> str:
    """The URL with any user information and query string replaced by ``***``, for a
    message about a URL that may hold a credential."""
    head, sep, rest = url.partition("://")
    if not sep:
        return "***"
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    path, q, _query = (slash + path).partition("?")
    return f"{head}://{netloc}{path}{'?***' if q else ''}"


def shown_url(url: str) -> str:
    """A target URL as listings and reprs show it: unchanged when it is a valid URL
    without credentials, else redacted (a row stored before credentials were refused)."""
    try:
        validate_url(url)
    except UsageError:
        return redact_url(url)
    return url


def _refuse_credentials(url: str, parts: Any) -> None:
    from urllib.parse import parse_qsl

    shown = redact_url(url)
    if parts.password is not None or (parts.scheme == "s3" and parts.username is not None):
        raise UsageError(
            f"target URL {shown} holds credentials: they must not be in the URL (it is "
            "stored in the catalog and shown in listings)",
            hint="ssh: use a key (key_file); s3: the AWS credential chain or "
            "[targets.NAME] in a 0600 config file",
        )
    secret = sorted(k for k, _ in parse_qsl(parts.query, True) if k.lower() in SECRET_QUERY)
    if secret:
        raise UsageError(
            f"target URL {shown} holds the setting(s) {', '.join(secret)}: credentials "
            "must not be in the URL",
            hint="put them in [targets.NAME] of a config file with mode 0600",
        )


def validate_url(url: str) -> str:
    """Check a target URL's form without connecting, and that it holds no credentials.
    Returns it unchanged."""
    plain = plain_file_url(url)
    if plain is not None:  # what urlsplit gives, without importing urllib.parse
        netloc, path = plain
        if netloc not in ("", "localhost") or not path:
            raise UsageError(f"bad file URL {redact_url(url)!r}: use file:///absolute/path")
        return url
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises ValueError here
    except ValueError:
        raise UsageError(f"bad target URL {redact_url(url)!r}") from None
    if parts.scheme not in SCHEMES:
        raise UsageError(
            f"unsupported target URL {redact_url(url)!r}: expected file://, ssh:// or s3://"
        )
    _refuse_credentials(url, parts)
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path):
        raise UsageError(f"bad file URL {url!r}: use file:///absolute/path")
    if parts.scheme == "ssh" and (not parts.hostname or not parts.path.strip("/")):
        raise UsageError(f"bad ssh URL {url!r}: use ssh://USER@HOST:PORT/ROOT/PATH")
    if parts.scheme == "s3" and not parts.netloc:
        raise UsageError(f"bad s3 URL {url!r}: use s3://BUCKET/PREFIX")
    return url


def open_storage(url: str, options: Mapping[str, Any] | None = None) -> Storage:
    """The backend for ``url``, built without connecting. ``options`` (a target's
    ``Settings.target_options``) are checked against the backend's declared options
    first: an unknown, mistyped or out-of-range one is one ConfigError naming the
    target, the key and where it came from."""
    validate_url(url)
    if plain_file_url(url) is not None:
        scheme = "file"
    else:
        from urllib.parse import urlsplit

        scheme = urlsplit(url).scheme
    opts: dict[str, Any] = {}
    if options:  # none (a plain file:// target, as on every WAL push): no spec to load
        from pgharbor.settings_check import backend_options

        opts = backend_options(scheme, options)
    defaulted = getattr(options, "defaults", ())
    if defaulted and scheme in ("ssh", "s3"):  # a default gives way to the URL's query
        from urllib.parse import parse_qsl, urlsplit

        for name, _ in parse_qsl(urlsplit(url).query):  # (blank values left out)
            if name in defaulted:
                opts.pop(name, None)
    return _open(scheme, url, opts)


def _open(scheme: str, url: str, opts: dict[str, Any]) -> Storage:
    if scheme == "file":
        from pgharbor.storage.file import FileStorage

        return FileStorage(url, **opts)
    if scheme == "memory":
        from pgharbor.storage.memory import MemoryStorage

        return MemoryStorage(url)
    if scheme == "ssh":
        from pgharbor.storage.ssh import SSHStorage

        return SSHStorage(url, **opts)
    from pgharbor.storage.s3 import S3Storage

    return S3Storage(url, **opts)
