"""A reader that stops early (`pgharbor wal list main | grep -q NAME`) is no internal error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PGHARBOR = str(Path(sys.executable).with_name("pgharbor"))


def test_closed_stdout_is_quiet() -> None:
    proc = subprocess.Popen(
        [PGHARBOR, "config", "sample"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes: its first write meets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "internal error" not in err and "Traceback" not in err, err
