"""The web front door of ``pgharbor serve``: the JSON API under /api/v1 (web/api), the
dashboard (web/pages, web/templates, web/static), /health and /metrics, behind the
authentication of web/auth.py. Built by web/app.py's ``create_app``."""
