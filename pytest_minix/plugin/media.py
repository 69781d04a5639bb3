"""Boot media for a test: fetched or extracted with the output shown live, or the test skips with the reason."""

from __future__ import annotations

import contextlib

import pytest

from pytest_minix.errors import GuestUnavailable
from pytest_minix.guest.pool import VMPool


def need_media(request: pytest.FixtureRequest, pool: VMPool, arch: str) -> None:
    """Fetch or extract the guest's boot media (output shown live), or skip when it cannot be had."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
    try:
        with ctx:
            pool.media(arch)
    except GuestUnavailable as exc:
        pytest.skip(str(exc))
