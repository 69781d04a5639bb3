"""What a QEMU binary is and offers: where it is, its version, its machine types and devices.

Each answer is asked of the binary itself (``--version``, ``-machine help``, ``-device
help``), so a guest the binary cannot run is refused before any boot. The answers are kept
per process and, keyed by the binary's path, size and mtime, in the cache
(``qemu-answers.json``): three QEMU runs cost ~0.1 s of every session's and worker's start.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess

from pytest_minix.errors import ConfigError, QemuNotFound
from pytest_minix.paths import cache_root, read_memo, write_memo

ANSWERS = "qemu-answers.json"


def _ask(qemu: str, *args: str) -> str:
    """What ``qemu args...`` prints on stdout, remembered while the binary is unchanged."""
    real = os.path.realpath(qemu)
    st = os.stat(real)
    key = f"{real}|{st.st_size}|{st.st_mtime_ns}|{' '.join(args)}"
    memo = cache_root() / ANSWERS
    known = read_memo(memo)
    if isinstance(known.get(key), str):
        return str(known[key])
    proc = subprocess.run([qemu, *args], capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        return proc.stdout  # not remembered: a broken binary is asked again next time
    suffix = f"|{' '.join(args)}"
    known = {k: v for k, v in known.items() if not (k.startswith(f"{real}|") and k.endswith(suffix))}
    known[key] = out = proc.stdout
    with contextlib.suppress(OSError):  # two writers write the same answers: either one will do
        write_memo(memo, known)
    return out


def find_qemu(binary: str, arch: str) -> str:
    """Resolve a QEMU binary name or path, or say which package provides it."""
    path = shutil.which(binary)
    if path is None:
        pkg = "qemu-system-x86" if arch == "i386" else "qemu-system-arm"
        raise QemuNotFound(
            f"QEMU for {arch} ({binary}) was not found on PATH. Install it with "
            f"`sudo apt-get install {pkg} qemu-utils`, or pass its path with --minix-qemu-{arch}."
        )
    return path


@functools.cache
def _help_names(qemu: str, option: str) -> frozenset[str]:
    """The names ``qemu <option> help`` lists (``-machine``: first word of each line; ``-device``: quoted names)."""
    try:
        out = _ask(qemu, option, "help")
    except (OSError, subprocess.SubprocessError) as exc:
        raise QemuNotFound(f"{qemu} {option} help failed ({exc}); is this a working QEMU binary?") from None
    if option == "-device":
        return frozenset(re.findall(r'^name "([^"]+)"', out, re.MULTILINE))
    return frozenset(ln.split()[0] for ln in out.splitlines()[1:] if ln.strip() and not ln.startswith(" "))


def qemu_machines(qemu: str) -> frozenset[str]:
    """Machine types this QEMU binary offers (``-machine help``)."""
    return _help_names(qemu, "-machine")


def qemu_devices(qemu: str) -> frozenset[str]:
    """Device models this QEMU binary offers (``-device help``)."""
    return _help_names(qemu, "-device")


def check_devices(qemu: str, devices: tuple[str, ...], guest: str) -> None:
    """Refuse a QEMU binary that lacks a device model the guest needs, naming the package."""
    have = qemu_devices(qemu)
    missing = [d for d in devices if d.split(",")[0] not in have]
    if missing:
        raise ConfigError(
            f"The {guest} guest needs the QEMU device(s) {', '.join(missing)}, which {qemu} does not offer "
            f"(`{qemu} -device help` does not list them). Install Debian's full qemu-system-x86 / qemu-system-arm "
            f"(not a reduced build), or pass another binary with --minix-qemu-i386 / --minix-qemu-arm."
        )


@functools.cache
def qemu_version(binary: str) -> str:
    """The version ``binary --version`` prints, or "" when it cannot be run."""
    try:
        out = _ask(binary, "--version")
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else ""
