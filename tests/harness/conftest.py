"""Fixtures of the harness self-tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopback_http import LoopbackHTTPServer


@pytest.fixture
def http_server() -> Iterator[LoopbackHTTPServer]:
    """A started HTTP server on 127.0.0.1; register paths with ``http_server.add(...)``."""
    with LoopbackHTTPServer() as server:
        yield server
