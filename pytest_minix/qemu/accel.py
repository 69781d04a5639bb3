"""Accelerator choice: KVM where it works, else TCG, decided once per session."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import threading
import warnings
from pathlib import Path

from filelock import FileLock

from pytest_minix.errors import ConfigError
from pytest_minix.paths import cache_root
from pytest_minix.profiles import ArchConfig
from pytest_minix.qemu.binary import qemu_version

ACCELS = ("auto", "kvm", "tcg")

# Signs on QEMU's stderr that KVM itself failed (as opposed to the guest).
KVM_FAILURE_SIGNS = ("KVM internal error", "kvm run failed", "Could not access KVM", "failed to initialize kvm")


class KvmFallbackWarning(UserWarning):
    """KVM was asked for (auto) but cannot be used; the session runs under TCG."""


def kvm_static_reason(config: ArchConfig) -> str | None:
    """Why KVM cannot even be tried for this arch on this host, or None."""
    host = platform.machine()
    if host not in config.kvm_capable_hosts:
        return f"KVM cannot run {config.arch} guests on an {host} host"
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist (no KVM module loaded, or not allowed in this container)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user (add yourself to the 'kvm' group)"
    return None


def kvm_probe(qemu: str) -> str | None:
    """Start QEMU with KVM and no guest for a moment; return the failure, or None."""
    try:
        proc = subprocess.run(
            [qemu, "-accel", "kvm", "-machine", "none", "-nodefaults", "-display", "none", "-monitor", "stdio"],
            input="quit\n",
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"KVM probe failed: {exc}"
    if proc.returncode != 0:
        return (proc.stderr.strip() or f"QEMU exited {proc.returncode}").splitlines()[-1]
    return None


class KvmMemory:
    """KVM failures remembered across sessions, per host kernel, QEMU binary and version, and arch.

    A host whose KVM cannot run a guest would otherwise lose a failed boot (seconds) in
    every session and every xdist worker. The record is forgotten when the host kernel or
    QEMU changes, when the file is deleted, or when ``--minix-accel=kvm`` is asked for explicitly
    (which always tries, and clears the record if KVM then works).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_root() / "kvm-failures.json"

    @staticmethod
    def key(qemu: str, arch: str) -> str:
        version = qemu_version(qemu) or "unknown"
        return f"{platform.node()}|{platform.release()}|{os.path.realpath(qemu)}|{version}|{arch}"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def recall(self, qemu: str, arch: str) -> str | None:
        return self._load().get(self.key(qemu, arch))

    def _update(self, qemu: str, arch: str, reason: str | None) -> None:
        try:
            with FileLock(str(self.path) + ".lock", timeout=10):
                data = self._load()
                if reason is None:
                    data.pop(self.key(qemu, arch), None)
                else:
                    data[self.key(qemu, arch)] = reason
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                tmp.replace(self.path)
        except OSError:
            pass  # a cache we cannot write only costs the probe again next session

    def remember(self, qemu: str, arch: str, reason: str) -> None:
        self._update(qemu, arch, reason)

    def forget(self, qemu: str, arch: str) -> None:
        if self.recall(qemu, arch) is not None:
            self._update(qemu, arch, None)


log = logging.getLogger(__name__)


class AccelChooser:
    """Resolves ``--minix-accel`` per arch; remembers a KVM failure for the rest of the session."""

    def __init__(self, requested: str, memory: KvmMemory | None = None) -> None:
        if requested not in ACCELS:
            raise ConfigError(f"Unknown accelerator {requested!r}; use one of {', '.join(ACCELS)} (--minix-accel).")
        self.requested = requested
        self.memory = memory
        self._broken: dict[str, str] = {}
        self._qemu: dict[str, str] = {}
        self._lock = threading.Lock()

    def choose(self, config: ArchConfig, qemu: str) -> str:
        if self.requested == "tcg":
            return "tcg"
        with self._lock:
            self._qemu[config.arch] = qemu
            reason = self._broken.get(config.arch)
            if reason is None:
                reason = kvm_static_reason(config)
                if reason is None and self.memory is not None and self.requested == "auto":
                    remembered = self.memory.recall(qemu, config.arch)
                    if remembered:
                        reason = (
                            f"{remembered} (remembered from an earlier session in {self.memory.path}; "
                            "delete that file or pass --minix-accel=kvm to try KVM again)"
                        )
                reason = reason or kvm_probe(qemu)
                if reason:
                    self._note(config.arch, reason)
        if reason is None:
            return "kvm"
        if self.requested == "kvm":
            raise ConfigError(
                f"--minix-accel=kvm was given but KVM cannot be used for {config.arch}: {reason}. "
                "Use --minix-accel=auto or --minix-accel=tcg."
            )
        return "tcg"

    def _note(self, arch: str, reason: str) -> None:
        self._broken[arch] = reason
        log.info("KVM unusable for %s (%s); using TCG", arch, reason)
        if self.requested == "auto":
            warnings.warn(KvmFallbackWarning(f"KVM unusable for {arch}, falling back to TCG: {reason}"), stacklevel=3)

    def report_failure(self, arch: str, reason: str) -> None:
        """A boot under KVM failed in a way that blames KVM: use TCG from now on."""
        with self._lock:
            if arch not in self._broken:
                self._note(arch, reason)
            qemu = self._qemu.get(arch)
        if self.memory is not None and qemu is not None:
            self.memory.remember(qemu, arch, reason)

    def report_success(self, arch: str) -> None:
        """A guest booted under KVM: forget any failure remembered for this host and QEMU."""
        qemu = self._qemu.get(arch)
        if self.memory is not None and qemu is not None:
            self.memory.forget(qemu, arch)

    def failure(self, arch: str) -> str | None:
        return self._broken.get(arch)
