from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.storage_kits import BackendKit, FileKit, MemoryKit

BACKENDS = ["memory", "file", "ssh", "s3"]


@pytest.fixture(scope="session")
def file_kit() -> Iterator[FileKit]:
    kit = FileKit()
    yield kit
    kit.cleanup()


@pytest.fixture(params=BACKENDS)
def kit(request: pytest.FixtureRequest) -> BackendKit:
    name = request.param
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
