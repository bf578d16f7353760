"""docs/api.md is what ``python -m pgharbor.web.apidoc`` generates from the API's OpenAPI
document (regenerate it after changing a route), and it names every operation."""

from __future__ import annotations

from pathlib import Path

from pgharbor.web import apidoc

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_api_md_is_current() -> None:
    assert DOC.read_text() == apidoc.current(), (
        "docs/api.md is stale: .venv/bin/python -m pgharbor.web.apidoc > docs/api.md"
    )


def test_every_operation_is_documented_with_its_scope() -> None:
    from pgharbor.services.context import Services
    from pgharbor.settings import Settings
    from pgharbor.web.app import create_app
    from pgharbor.web.context import WebContext

    s = Settings()
    doc = create_app(WebContext(Services(s), s)).openapi()
    text = DOC.read_text()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            heading = f"### `{method.upper()} {path}`"
            assert heading in text
            section = text.split(heading, 1)[1].split("### ", 1)[0]
            assert f"Scope: `{op['x-pgharbor-scope']}`" in section
    assert "## Operations" in text and "pgharbor token create" in text
