"""Base backups: a content-addressed chunk store on each target, manifests, creation."""
