"""Fixtures of the security suites."""

from tests.fakes.redis_server import redis_server  # noqa: F401 (a fixture: own redis-server per test)
