"""The installed harness's version (part of every measurement's conditions and every saved VM's key)."""

from __future__ import annotations

from functools import cache


@cache
def harness_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-minix")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "unknown"
