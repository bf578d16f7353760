"""pgharbor config check / config sample, run as the real CLI in a subprocess (an SQLite
catalog, no servers: targets are checked without connecting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.fixtures.catalogs import add_test_cluster, init_catalog

CANARIES = ("CANARY-key-id", "CANARY-secret", "987654321")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog with a file target t1, an s3 target s3t and an ssh target sshd, a
    cluster c1, and a key file for it (made once: the tests only read them)."""
    tmp_path = tmp_path_factory.mktemp("site")
    cat = init_catalog(f"sqlite:///{tmp_path}/catalog.db")
    (tmp_path / "t1").mkdir()
    cat.add_target("t1", f"file://{tmp_path}/t1")
    cat.add_target("s3t", "s3://bkt/p?region=eu-1&timeout=3")
    cat.add_target("sshd", "ssh://u@127.0.0.1:1/srv")
    add_test_cluster(cat)
    from pgharbor.crypto import generate_key_file

    generate_key_file(tmp_path / "c1.key")
    return tmp_path


GOOD = """\
catalog = "sqlite:///{site}/catalog.db"
state_dir = "{site}/state"
[targets.t1]
timeout = 4
[targets.s3t]
endpoint_url = "http://127.0.0.1:9"
access_key_id = "CANARY-key-id"
secret_access_key = "CANARY-secret"
[targets.sshd]
key_file = "{site}/id"
[clusters.c1]
encryption_key_file = "{site}/c1.key"
"""


def _run(
    site: Path, text: str | None, *args: str, env: dict[str, str] | None = None, mode: int = 0o600
) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("PGHARBOR")}
    child.update(env or {})
    where = []
    if text is not None:
        config = site / "pgharbor.toml"
        config.write_text(text.format(site=site))
        config.chmod(mode)
        where = ["--config", str(config)]
    return subprocess.run(
        [sys.executable, "-m", "pgharbor", *where, "config", *args],
        capture_output=True,
        text=True,
        env=child,
        check=False,
    )


def _no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    shown = proc.stdout + proc.stderr
    assert not [c for c in CANARIES if c in shown], shown


def test_a_good_configuration_is_summed_up_without_its_secrets(site: Path) -> None:
    key_id = subprocess.run(
        [sys.executable, "-m", "pgharbor", "key", "id", str(site / "c1.key")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    extra = "[targets.extra]\nregion = 'x'\n"  # not in the catalog: fits an s3 target
    proc = _run(site, GOOD + extra, "check", env={"PGHARBOR_COMPRESSION_LEVEL": "5"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    _no_secret(proc)
    out = proc.stdout
    assert f"config file {site}/pgharbor.toml: valid" in out
    assert f"catalog sqlite:///{site}/catalog.db (from config file " in out and "reachable" in out
    assert "compression_level = 5  (environment variable PGHARBOR_COMPRESSION_LEVEL)" in out
    assert "[targets.t1]: backend file | timeout = 4" in out
    assert "[targets.s3t]: backend s3 | " in out and "secret_access_key = '***'" in out
    assert "[targets.sshd]: backend ssh | " in out
    assert f"[clusters.c1]: encryption_key_file = '{site}/c1.key' | keys {key_id} (" in out
    assert "encryption required" in out
    assert (
        "[targets.extra]: backend s3 | region = 'x' (no target of this name in the catalog)" in out
    )

    proc = _run(site, GOOD, "check", "--json")
    assert proc.returncode == 0, proc.stderr
    _no_secret(proc)
    result = json.loads(proc.stdout)
    assert result["catalog_reachable"] is True
    sources = {v["name"]: v["source"] for v in result["settings"]}
    assert sources["state_dir"] == f"config file {site}/pgharbor.toml"
    assert sources["prefetch_depth"] == "default"
    sections = {t["section"]: t for t in result["targets"] + result["clusters"]}
    assert sections["[targets.s3t]"]["backends"] == ["s3"]
    assert sections["[targets.s3t]"]["options"]["access_key_id"] == "***"
    assert sections["[clusters.c1]"]["encryption_required"] is True


def test_without_the_catalog_tables_are_checked_against_every_backend(site: Path) -> None:
    text = GOOD.replace("catalog.db", "missing/catalog.db")
    proc = _run(site, text, "check")
    assert proc.returncode == 0, proc.stderr
    _no_secret(proc)
    assert "catalog not reachable" in proc.stdout
    assert "[targets.t1]: backend file, ssh or s3 | timeout = 4" in proc.stdout
    assert "[targets.s3t]: backend s3 |" in proc.stdout
    bad = _run(site, text + "[targets.x]\nkey_file = '/k'\nregion = 'r'\n", "check")
    assert bad.returncode == 3
    assert bad.stderr.endswith(
        "[targets.x] mixes the options of different backends: key_file (ssh), region (s3)\n"
    )


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        ("compression_level = 99\n", {}, "pgharbor.toml: compression_level must be between -7 "),
        (
            "",
            {"PGHARBOR_ASYNC_WAIT": "soon"},
            "environment variable PGHARBOR_ASYNC_WAIT: async_wait must be a number, got 'soon'",
        ),
        ("compresion = 'zstd'\n", {}, "unknown setting(s) compresion (known: catalog, "),
        (
            "",
            {"PGHARBOR_CATALOG": "mysql://u:CANARY-secret@h/db"},
            "environment variable PGHARBOR_CATALOG: catalog: unsupported catalog URL mysql://",
        ),
        ("[targets.t1.x]\n", {}, "[targets.t1] unknown file option(s) x (known: timeout)"),
        ("[targets.t9]\nbogus = 1\n", {}, "[targets.t9] unknown option bogus (no backend"),
        (
            "[clusters.c2]\nencyption_key_file = '/k'\n",
            {},
            "[clusters.c2] unknown setting(s) encyption_key_file",
        ),
        (
            "[clusters.c3]\nencryption_required = 'yes'\n",
            {},
            "[clusters.c3]: encryption_required must be true or false, got a string",
        ),
        (
            "[clusters.c4]\nencryption_key_file = '{site}/nokey'\n",
            {},
            "encryption key file "
            "{site}/nokey (from [clusters.c4] encryption_key_file) does not exist",
        ),
    ],
)
def test_a_bad_configuration_is_one_line_naming_the_key_exit_3(
    site: Path, extra: str, env: dict[str, str], expected: str
) -> None:
    text = GOOD + extra if extra.startswith("[") else extra + GOOD  # tables last
    proc = _run(site, text, "check", env=env)
    _no_secret(proc)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("pgharbor: error: ")
    assert expected.format(site=site) in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        ("[targets.t1]", "region = 'x'", "[targets.t1] unknown file option(s) region"),
        (
            "[targets.s3t]",
            "multipart_chunksize = '1MiB'",
            "[targets.s3t] multipart_chunksize must be between 5MiB and 5GiB, got 1MiB",
        ),
        (
            "[targets.s3t]",
            "session_token = 987654321",
            "[targets.s3t] session_token must be a string, got an integer",
        ),
        ("[targets.sshd]", "timeout = 0", "[targets.sshd] timeout must be between 0.1 and 3600"),
    ],
)
def test_a_target_table_is_checked_against_its_catalog_backend(
    site: Path, section: str, line: str, expected: str
) -> None:
    text = GOOD.replace(f"{section}\n", f"{section}\n{line}\n")
    proc = _run(site, text, "check")
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"pgharbor: error: config file {site}/pgharbor.toml: {expected}" in proc.stderr
    _no_secret(proc)


def test_a_loose_key_file_and_a_readable_secret_are_reported(site: Path) -> None:
    (site / "c1.key").chmod(0o644)
    try:
        proc = _run(site, GOOD, "check")
    finally:
        (site / "c1.key").chmod(0o600)  # the other tests share the key
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stderr
    assert (
        "(from [clusters.c1] encryption_key_file) is accessible by group or others" in proc.stderr
    )
    proc = _run(site, GOOD, "check", mode=0o644)
    assert proc.returncode == 0, proc.stderr
    config = site / "pgharbor.toml"
    assert (
        f"note: config file {config} holds a secret ([targets.s3t] access_key_id) but its "
        f"mode is 0644: chmod 600 {config}"
    ) in proc.stdout
    _no_secret(proc)


def test_the_sample_is_printed_even_when_the_config_is_broken(site: Path) -> None:
    proc = _run(site, "not toml = = =\n", "sample")
    assert proc.returncode == 0, proc.stderr
    from pgharbor.settings_doc import sample_toml

    assert proc.stdout == sample_toml()
    assert tomllib.loads(proc.stdout)["compression"] == "zstd"
