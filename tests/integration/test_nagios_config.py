"""contrib/nagios/pgharbor.cfg is valid Nagios configuration: the real ``nagios4 -v``
(Debian's package, installed by scripts/setup) reads it with Debian's stock objects;
a broken copy is refused (the validator really checks), and the command lines it
defines run the real check_pgharbor."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.harbor import PGHARBOR, Harbor

pytestmark = pytest.mark.integration

CFG = Path(__file__).resolve().parents[2] / "contrib" / "nagios" / "pgharbor.cfg"
STOCK = Path("/etc/nagios4/objects")
NAGIOS = shutil.which("nagios4") or "/usr/sbin/nagios4"


def _verify(workdir: Path, objects: Path) -> subprocess.CompletedProcess[str]:
    main = workdir / "nagios.cfg"
    results = workdir / "results"
    results.mkdir(exist_ok=True)
    results.chmod(0o777)
    files = [STOCK / f"{n}.cfg" for n in ("commands", "contacts", "timeperiods", "templates")]
    main.write_text(
        "".join(f"cfg_file={f}\n" for f in [*files, objects])
        + f"log_file={workdir}/nagios.log\nstatus_file={workdir}/status.dat\n"
        + f"lock_file={workdir}/nagios.pid\ntemp_file={workdir}/nagios.tmp\n"
        + f"check_result_path={results}\nobject_cache_file={workdir}/objects.cache\n"
    )
    return subprocess.run([NAGIOS, "-v", str(main)], capture_output=True, text=True, timeout=60)


def test_the_nagios_example_is_valid(workdir: Path) -> None:
    proc = _verify(workdir, CFG)
    assert proc.returncode == 0, proc.stdout
    assert re.search(r"Total Errors:\s+0", proc.stdout), proc.stdout
    assert re.search(r"Checked 19 services\.", proc.stdout), proc.stdout  # 9 x 2 clusters + fleet
    assert re.search(r"Checked 3 hosts\.", proc.stdout), proc.stdout


def test_a_broken_copy_is_refused(workdir: Path) -> None:
    broken = workdir / "broken.cfg"
    broken.write_text(
        CFG.read_text().replace("check_pgharbor!copies", "check_pgharbor_nope!copies")
    )
    proc = _verify(workdir, broken)
    assert proc.returncode != 0 and "check_pgharbor_nope" in proc.stdout, proc.stdout


def test_its_fleet_command_runs_the_real_plugin(harbor: Harbor) -> None:
    text = CFG.read_text()
    line = re.search(r"command_name\s+check_pgharbor_fleet\s+command_line\s+(.+)", text)
    assert line
    plugin = str(Path(PGHARBOR).with_name("check_pgharbor"))
    cmd = line[1].replace("/usr/local/bin/check_pgharbor", plugin)
    cmd = cmd.replace("--config /etc/pgharbor/pgharbor.toml", f"--catalog {harbor.catalog}")
    argv = cmd.replace("$ARG1$", "all").replace("$ARG2$", "").split()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "PGHARBOR_ALL OK - no clusters in the catalog\n")
