from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures import no_servers
from tests.fixtures.storage_kits import BackendKit, FileKit, MemoryKit

#: memory and file need no server; ssh (a real sshd) and s3 (moto server) are integration
BACKENDS = [
    "memory",
    "file",
    pytest.param("ssh", marks=pytest.mark.integration),
    pytest.param("s3", marks=pytest.mark.integration),
]


@pytest.fixture(scope="session")
def file_kit() -> Iterator[FileKit]:
    kit = FileKit()
    yield kit
    kit.cleanup()


@pytest.fixture(params=BACKENDS)
def kit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> BackendKit:
    name = request.param
    if name in ("memory", "file"):  # these run with the unit tests: the same guard
        no_servers.install(monkeypatch)
    if name == "memory":
        return MemoryKit()
    if name == "file":
        k: BackendKit = request.getfixturevalue("file_kit")
        return k
    if name == "ssh":
        k = request.getfixturevalue("ssh_kit")
        return k
    k = request.getfixturevalue("s3_kit")
    return k
