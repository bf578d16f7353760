"""The operations on the fleet, in one layer that the CLI, the scheduler, monitoring and
the web API all call: validation in one place, typed results (dataclasses) that each
caller renders its own way (text, JSON, Nagios, metrics), errors from pgharbor.errors.

Every operation is a function ``op(svc: Services, ...) -> Result``; ``Services`` holds the
settings and opens the catalog on first use. No caller builds domain objects or talks to
the catalog layer itself.
"""

from pgharbor.services.context import Services

__all__ = ["Services"]
