"""Monitoring: Nagios/Icinga checks over the catalog and the clusters' primaries.

``registry`` holds the services (one small module each: ``archive``, ``replication``,
``fleet``); ``thresholds`` parses the standard ranges; ``result`` is the result model
that ``pgharbor.render.nagios`` and ``--json`` render."""
