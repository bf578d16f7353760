"""What every operation needs: the settings, and the catalog, opened on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgharbor.settings import Settings

if TYPE_CHECKING:
    from pgharbor.catalog.repo import Catalog


class Services:
    """One caller's access to the fleet (a CLI run, a scheduler node, a web worker)."""

    def __init__(self, settings: Settings, *, pooled: bool = False) -> None:
        self.settings = settings
        self.pooled = pooled  # keep catalog connections open (a daemon)
        self._catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from pgharbor.catalog.repo import open_catalog

            s = self.settings
            self._catalog = open_catalog(
                s.require_catalog(), timeout=s.catalog_timeout, pooled=self.pooled
            )
        return self._catalog
