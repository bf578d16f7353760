"""The catalog: the central index of clusters, targets, placements and stored files."""
