"""The catalog itself: creating it, upgrading its schema."""

from __future__ import annotations

from dataclasses import dataclass

from pgharbor.services.context import Services


@dataclass(frozen=True)
class InitResult:
    catalog: str  # shown without a password
    before: str | None  # the schema revision before (None: a new catalog)
    after: str


def init(svc: Services) -> InitResult:
    """Create the catalog, or upgrade its schema to this version. Safe to run twice."""
    from pgharbor.catalog import db

    s = svc.settings
    engine, cu = db.make_engine(s.require_catalog(), timeout=s.catalog_timeout)
    before, after = db.migrate(engine, cu)
    return InitResult(cu.display(), before, after)
