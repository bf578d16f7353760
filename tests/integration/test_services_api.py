"""The service layer stands alone: a small in-process caller (as the web API will be,
running as the postgres OS user) sets up a fleet, archives, backs up, verifies, reads
the status and restores through the same service functions the CLI calls — no command
line involved but PostgreSQL's own archive_command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import IS_ROOT, SERVER_USER, PgFactory, server_dir

pytestmark = pytest.mark.integration

CALLER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pgharbor.domain.pitr import RecoveryTarget
    from pgharbor.restore.restore import Options
    from pgharbor.render.output import to_jsonable
    from pgharbor.services import (
        Services, backups, catalog, clusters, health, placements, rebuild, restores,
        status, targets, wal,
    )
    from pgharbor.settings import load_settings

    step, url, work, dsn = sys.argv[1:5]
    svc = Services(load_settings(catalog=url))
    out = {}
    if step == "setup":
        out["init"] = catalog.init(svc)
        for t in ("t1", "t2"):
            out[t] = targets.add(svc, t, f"file://{work}/targets/{t}")
        out["registration"] = clusters.register(svc, "c1", dsn)
        for prio, t in enumerate(("t1", "t2"), 1):
            placements.add(svc, "c1", t, prio)
        out["set"] = clusters.set_options(svc, "c1", required_copies=2)
    elif step == "backup":
        b = backups.create(svc, "c1")
        out["backup"] = b
        out["verified"] = backups.verify(svc, "c1", b.id)
        out["list"] = backups.list_backups(svc, "c1")
    else:
        out["wal"] = wal.verify(svc, "c1").result
        out["files"] = len(wal.list_files(svc, "c1"))
        out["status"] = status.status(svc, "c1")
        out["checks"] = health.check(svc)
        out["points"] = restores.list_points(svc, "c1")
        r = restores.restore(
            svc, "c1", Path(work) / "restored" / "data", RecoveryTarget.from_options(),
            Options(),
        )
        out["restore"] = r
        lost = Services(load_settings(catalog=f"sqlite:///{work}/rebuilt.db"))
        out["rebuilt"] = rebuild.rebuild(
            lost, [f"file://{work}/targets/{t}" for t in ("t1", "t2")]
        )
    print(json.dumps(to_jsonable(out), default=str))
    """
)


def _call(step: str, harbor: Harbor, dsn: str) -> dict[str, object]:
    cmd = [sys.executable, "-c", CALLER, step, harbor.catalog, str(harbor.workdir), dsn]
    if IS_ROOT:
        cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
    env = {"PGHARBOR_STATE_DIR": str(harbor.state_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=harbor.workdir)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_an_in_process_caller_reaches_every_operation(workdir: Path, pg_factory: PgFactory) -> None:
    harbor = Harbor(workdir)  # not initialised: the caller does it through the service
    for t in ("t1", "t2"):
        server_dir(workdir / "targets" / t)
    server_dir(workdir / "restored")
    pg = pg_factory()
    setup = _call("setup", harbor, pg.dsn)
    reg = setup["registration"]
    assert isinstance(reg, dict) and reg["cluster"]["name"] == "c1"
    assert setup["set"]["cluster"]["required_copies"] == 2  # type: ignore[index]
    command = reg["archive_command"].split(" = ", 1)[1].strip("'").replace("''", "'")
    pg.configure(
        archive_mode=True, archive_command=f"PGHARBOR_STATE_DIR={harbor.state_dir} {command}"
    )
    pg.restart()
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 500) g")

    made = _call("backup", harbor, pg.dsn)
    assert made["verified"]["ok"] is True  # type: ignore[index]
    assert [b["status"] for b in made["list"]] == ["ok"]  # type: ignore[union-attr]
    pg.wait_for_archived(pg.switch_wal(), timeout=60)

    seen = _call("inspect", harbor, pg.dsn)
    assert seen["wal"]["bad"] == [] and seen["wal"]["gaps"] == []  # type: ignore[index]
    (st,) = seen["status"]  # type: ignore[misc]
    assert st["backups"]["usable"] == 1 and st["windows"][0]["timeline"] == 1
    assert [c["ok"] for c in seen["checks"]] == [True, True]  # type: ignore[union-attr]
    assert seen["restore"]["archive_mode"] == "off"  # type: ignore[index]
    assert (workdir / "restored" / "data" / "PG_VERSION").exists()
    rebuilt = seen["rebuilt"]
    assert isinstance(rebuilt, dict) and rebuilt["ok"] is True, rebuilt
    assert (rebuilt["backups"], rebuilt["wal_copies"]) == (1, 2 * seen["files"])  # type: ignore[operator]
