"""Harness errors: each says what went wrong and how to fix it, in one paragraph.

A ``HarnessError`` means the harness or its set-up broke (no QEMU, bad image, a guest
that never reaches a prompt); a failed claim or command is an ordinary test failure.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: the harness, not the guest under test, could not do its job."""


class ConfigError(HarnessError):
    """Bad option, unknown guest or arch, malformed definition."""


class QemuNotFound(HarnessError):
    """The QEMU binary for an arch is missing."""


class ImageError(HarnessError):
    """An image or build artifact is missing, corrupt or unusable."""


class DownloadError(ImageError):
    """A download failed (HTTP error, timeout, cut connection) after its retries."""


class GuestUnavailable(HarnessError):
    """The guest cannot be had here (no image offline, no machine in this QEMU): tests skip."""


class BuildError(HarnessError):
    """The reference guest could not be built."""


class VMError(HarnessError):
    """A VM died, hung or could not be controlled; carries the serial log path."""

    def __init__(self, message: str, log_path: object | None = None) -> None:
        if log_path is not None:
            message = f"{message} Serial log: {log_path}"
        super().__init__(message)
        self.log_path = log_path


class BootTimeout(VMError):
    """The guest did not reach the expected prompt in time."""


class BootStalled(BootTimeout):
    """The guest printed something, then nothing more for the stall timeout, before its login prompt."""


class GuestPanic(VMError):
    """A failure pattern (panic, reboot) appeared on the console."""


class CommandTimeout(VMError):
    """A shell command outlived its timeout."""
