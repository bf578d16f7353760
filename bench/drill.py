"""A restore drill of the benchmark database (docs/drills.md): the 1.1 GB pgbench
database (``pgbench -i -s 70``; ``--scale`` for another size), one backup, a minute of
pgbench writing WAL after it, then ``pgharbor drill run`` to the end of the archive.
Prints the drill's JSON result and the sizes. Run as the postgres OS user from the
repository: ``.venv/bin/python bench/drill.py [--scale N] [--seconds S] [--workdir DIR]``
(as root: ``runuser -u postgres -- …``)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import PRIMARY_SETTINGS, Server
from common import run, say
from tools import Pgharbor


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="pgharbor-drill-bench-", dir="/var/tmp"))
    exe = str(Path(sys.executable).with_name("pgharbor"))
    server = Server(root / "primary", root)
    try:
        server.initdb()
        server.configure(PRIMARY_SETTINGS)
        server.own_settings()
        harbor = Pgharbor(root / "harbor", exe, 3)
        server.configure({"archive_command": "/bin/true"})
        server.start()
        harbor.setup(server)
        server.set_archive_command(harbor.archive_command)
        say(f"pgbench -i -s {args.scale}")
        server.pgbench("-i", "-q", "-s", str(args.scale))
        size = int(server.sql("SELECT pg_database_size('postgres')"))
        say(f"database: {size / 2**30:.2f} GiB; backup")
        run(harbor.cmd("backup", "create", harbor.cluster), env=harbor.env, timeout=7200)
        say(f"pgbench -T {args.seconds} (WAL after the backup)")
        server.pgbench("-T", str(args.seconds), "-c", "4", "-j", "2")
        server.switch_wal()
        server.wait_archived()
        wal = int(server.sql("SELECT count(*) FROM pg_ls_waldir()"))
        say("drill run")
        out = run(
            harbor.cmd("drill", "run", harbor.cluster, "--json"), env=harbor.env, timeout=7200
        )
        result = json.loads(out)
        print(json.dumps({"database_bytes": size, "pg_wal_files": wal, "drill": result}, indent=2))
        return 0 if result["ok"] else 1
    finally:
        server.stop("immediate")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
