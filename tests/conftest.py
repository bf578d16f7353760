"""Test-wide fixtures. Real servers live in tests/fixtures/*, loaded as plugins."""

pytest_plugins: list[str] = []
