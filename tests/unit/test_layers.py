"""The layers hold: the CLI is a thin shell over the services (it never imports the
catalog layer), and the stored format and keys never read the settings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pgharbor"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("path", sorted((SRC / "cli").glob("*.py")), ids=lambda p: p.name)
def test_the_cli_never_talks_to_the_catalog(path: Path) -> None:
    assert not [m for m in _imports(path) if m.startswith("pgharbor.catalog")]


@pytest.mark.parametrize(
    "module", ["envelope.py", "crypto.py", "backup/chunks.py", "backup/chunkdb.py"]
)
def test_format_and_keys_never_read_the_settings(module: str) -> None:
    assert "pgharbor.settings" not in _imports(SRC / module)
