"""Where pytest-minix keeps its cache, per-session state and guest definitions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs

CACHE_ENV = "PYTEST_MINIX_CACHE"


def cache_root() -> Path:
    """The cache directory: ``$PYTEST_MINIX_CACHE``, else the user cache dir.

    platformdirs honours ``XDG_CACHE_HOME``, so CI can point the whole cache at a
    fresh temporary directory with that variable alone.
    """
    override = os.environ.get(CACHE_ENV)
    root = Path(override) if override else Path(platformdirs.user_cache_dir("pytest-minix"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def read_memo(path: Path) -> dict[str, Any]:
    """A JSON object kept in the cache (remembered answers); empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_memo(path: Path, data: dict[str, Any]) -> None:
    """Replace a memo whole (write aside, then rename): a reader never sees half of one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def _shipped(name: str, probe: str, what: str) -> Path:
    """A data directory shipped inside the wheel (``pytest_minix/<name>``) or beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if (candidate / probe).is_file():
            return candidate
    raise FileNotFoundError(
        f"pytest-minix cannot find its {what} ({name}/) next to {here}; "
        "the installation is incomplete: reinstall with `pip install --force-reinstall pytest-minix`."
    )


def vm_dir() -> Path:
    """The guest definitions (``vm/``)."""
    return _shipped("vm", "reference.toml", "guest definitions")


def claims_dir() -> Path:
    """The shipped claims files (``claims/``)."""
    return _shipped("claims", "whitepaper.toml", "claims files")


# The claims suites, in the order they run: pytest's testpaths in a checkout, pytest_minix/suites/ in the wheel.
SUITES = ("boot", "syscalls", "memory")


def suites_root() -> Path:
    """The directory holding the claims suites: ``pytest_minix/suites`` in a wheel, ``tests/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "suites", here.parent / "tests"):
        if all((candidate / name).is_dir() for name in SUITES):
            return candidate
    raise FileNotFoundError(
        f"pytest-minix cannot find its claims suites ({', '.join(SUITES)}) in {here / 'suites'} "
        f"or {here.parent / 'tests'}; the installation is incomplete: reinstall with "
        "pip install --force-reinstall pytest-minix."
    )


def suite_dirs() -> list[Path]:
    """The claims suites' directories (boot, syscalls, memory), for ``pytest-minix validate``."""
    root = suites_root()
    return [root / name for name in SUITES]
