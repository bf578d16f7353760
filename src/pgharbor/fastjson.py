"""json.loads and compact json.dumps for the archive hot path, without importing json.

``import json`` also imports ``re`` (and with it ``enum``): ~6 ms of every wal push and
wal fetch, which run as a new process per WAL segment. The work itself is done by the
same C accelerator (``_json``) the json package uses, so results are identical; any
input the fast path does not handle exactly as json would (leading whitespace, a BOM,
UTF-16, malformed text, a non-JSON value, no ``_json``) goes to the json package,
which then gives its own result or error.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # another Python implementation: the json package does it all
    _json = None  # type: ignore[assignment]


class _Context:
    """What the C scanner reads from a json.JSONDecoder with default settings."""

    __slots__ = (
        "object_hook",
        "object_pairs_hook",
        "parse_constant",
        "parse_float",
        "parse_int",
        "strict",
    )

    def __init__(self) -> None:
        constants = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_constant = constants.__getitem__
        self.parse_float = float
        self.parse_int = int
        self.strict = True


_OPEN = (ord("{"), ord("["), "{", "[")
_scan = None if _json is None else _json.make_scanner(_Context())  # type: ignore[arg-type]


def loads(data: str | bytes) -> Any:
    """``json.loads(data)``; the fast path takes a JSON object or array."""
    # bytes: json.loads reads them as UTF-8 unless a BOM or a NUL in the first two bytes
    # says otherwise; the first byte being "{" or "[" and the second not NUL rules both out
    if _scan is not None and len(data) >= 2 and data[0] in _OPEN and data[1]:
        try:
            text = data if isinstance(data, str) else data.decode("utf-8", "surrogatepass")
            obj, end = _scan(text, 0)
            if end == len(text):
                return obj
        except Exception:
            pass  # malformed: json.loads raises its own error
    import json

    return json.loads(data)


def _default(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps_compact(obj: dict[str, Any]) -> str:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` of a dict."""
    if _json is None:
        import json

        return json.dumps(obj, sort_keys=True, separators=(",", ":"))
    encode = _json.make_encoder(
        {}, _default, _json.encode_basestring_ascii, None, ":", ",", True, False, True
    )
    return "".join(encode(obj, 0))
