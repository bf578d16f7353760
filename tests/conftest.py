"""Test-wide fixtures. Real servers live in tests/fixtures/*, loaded as plugins."""

pytest_plugins: list[str] = [
    "tests.fixtures.postgres",
    "tests.fixtures.harbor",
    "tests.fixtures.s3server",
    "tests.fixtures.sshd",
    "tests.fixtures.web",
    "tests.fixtures.browser",
]
