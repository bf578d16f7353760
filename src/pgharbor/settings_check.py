"""Checking values against the declarations of pgharbor.settings_spec: one error line
naming the key, its table and where the value came from; text from the environment or a
URL query parsed, a config file's typed values never coerced.

Cheap to import (the archive hot path loads it through pgharbor.settings).
"""

from __future__ import annotations

import os

from pgharbor.errors import ConfigError, UsageError
from pgharbor.plain import tidy_path
from pgharbor.settings_spec import (
    BACKENDS,
    BOOL,
    INT,
    NAMES,
    NUMBER,
    PATH,
    SIZE,
    TEXT,
    Key,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from pgharbor.errors import PgharborError

    _Dict = dict[str, Any]
else:
    _Dict = dict

_EXPECTED = {
    INT: "an integer",
    NUMBER: "a number",
    TEXT: "a string",
    PATH: "a string",
    BOOL: "true or false",
    SIZE: "a size (a number of bytes, or text such as 8MiB)",
    NAMES: "a string or an array of strings",
}
_UNITS = {"": 0, "k": 10, "m": 20, "g": 30}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class TargetOptions(_Dict):
    """A target's backend options as ``Settings.target_options`` gives them: a dict that
    also names its table (``section``, "[targets.NAME] "), where the table came from
    (``where``) and which values are defaults, not the table's (``defaults``)."""

    __slots__ = ("defaults", "section", "where")

    def __init__(
        self, options: Mapping[str, Any], section: str, where: str, defaults: Iterable[str] = ()
    ) -> None:
        super().__init__(options)
        self.section = section
        self.where = where
        self.defaults = frozenset(defaults)


# -- checking ------------------------------------------------------------------------


def shown(value: Any, *, text: bool = False, secret: bool = False) -> str:
    """A wrong value in a message: numbers and booleans as they are, text from the
    environment or a URL quoted, anything else (a misplaced secret?) by its kind only;
    the value of a secret key by its kind, whatever it is."""
    kinds: dict[type, str] = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    if secret:
        return kinds.get(type(value), f"a {type(value).__name__}")
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return repr(value)
    if text and isinstance(value, str):
        return repr(value[:60])
    return kinds.get(type(value), f"a {type(value).__name__}")


def parse_size(value: Any) -> int | None:
    """8388608, "8388608", "8M", "8MiB", "512k" -> bytes; None if it is not a size."""
    if type(value) is int:
        return value
    if not isinstance(value, str):
        return None
    s = value.strip().lower()
    digits = s[: len(s) - len(s.lstrip("0123456789"))]
    unit = s[len(digits) :].strip()
    if unit.endswith("b") and len(unit) > 1:
        unit = unit[:-1].removesuffix("i")
    if not digits or unit not in _UNITS:
        return None
    return int(digits) << _UNITS[unit]


def format_size(n: float) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and int(n) % (1 << shift) == 0:
            return f"{int(n) >> shift}{unit}"
    return f"{n:g}"


def _fmt(key: Key, n: float) -> str:
    return format_size(n) if key.kind == SIZE else f"{n:g}"


def describe_range(key: Key) -> str:
    """ "-7 to 22", "5MiB to 5GiB", "zstd, none" or ""."""
    if key.choices:
        return ", ".join(key.choices)
    if key.low is None or key.high is None:
        return ""
    return f"{_fmt(key, key.low)} to {_fmt(key, key.high)}"


def _from_text(key: Key, value: str) -> Any:
    """Text from the environment or a URL query as the kind of value ``key`` takes (the
    text itself when it does not parse: the checks below then name it)."""
    try:
        if key.kind == INT:
            return int(value)
        if key.kind == NUMBER:
            return float(value)
    except ValueError:
        return value
    if key.kind == BOOL:
        low = value.strip().lower()
        return True if low in _TRUE else False if low in _FALSE else value
    return value


def check(
    key: Key,
    value: Any,
    where: str,
    section: str = "",
    *,
    text: bool = False,
    error: type[PgharborError] = ConfigError,
) -> Any:
    """``value`` as the kind ``key`` declares (a number setting gives a float, a path is
    expanded and tidied), or ``error`` naming the key (within ``section``) and ``where``
    the value came from. With ``text``, the value is text to parse (the environment, a
    URL's query): a config file's value keeps its type and is never coerced."""
    got = shown(value, text=text, secret=key.secret)
    if text and isinstance(value, str):
        value = _from_text(key, value)
    kind = key.kind
    if kind == SIZE:
        size = None if isinstance(value, bool) else parse_size(value)
        if size is None:
            raise _bad(key, where, section, got, error)
        value = size
    elif kind in (INT, NUMBER):
        if type(value) is not int and not (kind == NUMBER and type(value) is float):
            raise _bad(key, where, section, got, error)
    elif kind == BOOL:
        if not isinstance(value, bool):
            raise _bad(key, where, section, got, error)
        return value
    elif kind == NAMES:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(key, where, section, got, error)
        return value
    elif not isinstance(value, str):
        raise _bad(key, where, section, got, error)
    elif value and key.choices and value not in key.choices:  # (empty: unset)
        raise error(
            f"{where}: {section}{key.name} must be one of {', '.join(key.choices)}, got "
            f"{shown(value, text=True, secret=key.secret)}"
        )
    else:
        return tidy_path(os.path.expanduser(value)) if kind == PATH and value else value
    if key.low is not None and key.high is not None and not key.low <= value <= key.high:
        raise error(
            f"{where}: {section}{key.name} must be between {_fmt(key, key.low)} and "
            f"{_fmt(key, key.high)}, got {_fmt(key, value) if kind == SIZE else value}"
        )
    return float(value) if kind == NUMBER else value


def _bad(key: Key, where: str, section: str, got: str, error: type[PgharborError]) -> PgharborError:
    return error(f"{where}: {section}{key.name} must be {_EXPECTED[key.kind]}, got {got}")


def refuse_unknown(
    names: Iterable[str],
    spec: Mapping[str, object],
    where: str,
    section: str = "",
    *,
    what: str = "setting",
    error: type[PgharborError] = ConfigError,
) -> None:
    unknown = sorted(set(names) - spec.keys())
    if unknown:
        raise error(
            f"{where}: {section}unknown {what}(s) {', '.join(unknown)} (known: {', '.join(spec)})"
        )


def check_table(
    spec: Mapping[str, Key],
    table: Mapping[str, Any],
    where: str,
    section: str = "",
    *,
    what: str = "setting",
    text: bool = False,
    url: bool = False,
    error: type[PgharborError] = ConfigError,
) -> dict[str, Any]:
    """Every value of ``table`` checked against ``spec``; unset ones (None, or empty
    text) left out. ``url``: the table is a URL's query, where no credential belongs."""
    refuse_unknown(table, spec, where, section, what=what, error=error)
    out: dict[str, Any] = {}
    for name, value in table.items():
        key = spec[name]
        if url and not key.in_url:
            raise error(
                f"{where}: {section}{name} is a credential: it does not belong in the URL "
                "(the catalog stores it and listings show it)"
            )
        if value is None or (value == "" and (text or key.kind in (TEXT, PATH))):
            continue
        out[name] = check(key, value, where, section, text=text, error=error)
    return out


def defaults(spec: Mapping[str, Key]) -> dict[str, Any]:
    return {k.name: k.default for k in spec.values() if k.default is not None}


def backend_options(scheme: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A target's options checked against its backend's spec before the backend is
    built: one ConfigError naming the target, the key and where the table came from."""
    options = options or {}
    return check_table(
        BACKENDS[scheme],
        options,
        getattr(options, "where", "storage options"),
        getattr(options, "section", ""),
        what=f"{scheme} option",
    )


def url_options(
    scheme: str, query: Iterable[tuple[str, str]], options: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """A backend's options: its defaults, then the URL query's (text), then ``options``
    (already checked by backend_options when they come from the factory). A problem
    with either is a UsageError naming ``where`` (the URL without its query)."""
    spec = BACKENDS[scheme]
    what = f"{scheme} option"
    from_url = check_table(
        spec, dict(query), where, what=what, text=True, url=True, error=UsageError
    )
    given = check_table(spec, options, where, what=what, error=UsageError)
    return {**check_table(spec, defaults(spec), "defaults"), **from_url, **given}
