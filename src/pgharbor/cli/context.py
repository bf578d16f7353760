"""What every command gets: the global options, the settings, and the services."""

from __future__ import annotations

from dataclasses import dataclass

import click

from pgharbor.services import Services
from pgharbor.settings import Settings, load_settings


@dataclass
class AppContext:
    catalog_opt: str | None
    config_opt: str | None
    _svc: Services | None = None

    @property
    def settings(self) -> Settings:
        return self.svc.settings

    @property
    def svc(self) -> Services:
        if self._svc is None:
            self._svc = Services(load_settings(catalog=self.catalog_opt, config=self.config_opt))
        return self._svc


pass_app = click.make_pass_decorator(AppContext)
