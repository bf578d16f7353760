"""Loading the CLI hashes nothing: the argon2 hash that sign-ins of unknown users are
verified against is made on first use, not when ``pgharbor.cli.main`` is imported (every
command, a Nagios check each minute among them, would pay ~140 ms for it)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import argon2

def refuse(self, *args, **kwargs):
    raise SystemExit("argon2 hashed at import")

argon2.PasswordHasher.hash = refuse
import pgharbor.cli.main
import pgharbor.services.hashing as hashing
try:
    hashing.dummy_password_hash()
except SystemExit:
    print("made on first use")
"""


def test_importing_the_cli_hashes_no_password() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "made on first use"
