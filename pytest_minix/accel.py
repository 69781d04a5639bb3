"""Accelerator choice: KVM where it works, else TCG, decided once per session."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import warnings

from .errors import ConfigError
from .profiles import ArchConfig

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


class AccelChooser:
    """Resolves ``--accel`` per arch; remembers a KVM failure for the rest of the session."""

    def __init__(self, requested: str) -> None:
        if requested not in ACCELS:
            raise ConfigError(f"Unknown accelerator {requested!r}; use one of {', '.join(ACCELS)} (--accel).")
        self.requested = requested
        self._broken: dict[str, str] = {}
        self._lock = threading.Lock()

    def choose(self, config: ArchConfig, qemu: str) -> str:
        if self.requested == "tcg":
            return "tcg"
        with self._lock:
            reason = self._broken.get(config.arch)
            if reason is None:
                reason = kvm_static_reason(config) or kvm_probe(qemu)
                if reason:
                    self._note(config.arch, reason)
        if reason is None:
            return "kvm"
        if self.requested == "kvm":
            raise ConfigError(f"--accel=kvm was given but KVM cannot be used for {config.arch}: {reason}. "
                              "Use --accel=auto or --accel=tcg.")  # fmt: skip
        return "tcg"

    def _note(self, arch: str, reason: str) -> None:
        self._broken[arch] = reason
        if self.requested == "auto":
            warnings.warn(KvmFallbackWarning(f"KVM unusable for {arch}, falling back to TCG: {reason}"), stacklevel=3)

    def report_failure(self, arch: str, reason: str) -> None:
        """A boot under KVM failed in a way that blames KVM: use TCG from now on."""
        with self._lock:
            if arch not in self._broken:
                self._note(arch, reason)

    def failure(self, arch: str) -> str | None:
        return self._broken.get(arch)
