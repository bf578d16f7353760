"""Restore drills: a backup restored into a scratch folder, started on loopback,
recovered, checked and recorded (see run.py, docs/drills.md)."""
