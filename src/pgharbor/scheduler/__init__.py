"""The scheduler (``pgharbor serve``): ``tick`` turns due fires into jobs, ``daemon``
runs a node (claims, leases, signals), ``worker`` runs one job in its own process,
``health`` answers HTTP. See docs/design.md, "Jobs and leases"."""
