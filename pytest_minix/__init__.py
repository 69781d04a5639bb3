"""pytest-minix: boot MINIX 3 (or the reference guest) under QEMU from pytest.

Public API for users' own tests: the ``guest`` and ``vm_pool`` fixtures hand out
:class:`VM` objects; ``vm.shell.run(cmd)`` returns a :class:`Result`.
"""

from pytest_minix.errors import (
    BootTimeout,
    CommandTimeout,
    ConfigError,
    GuestPanic,
    HarnessError,
    ImageError,
    QemuNotFound,
    VMError,
)
from pytest_minix.guest.pool import HarnessConfig, VMOptions, VMPool
from pytest_minix.guest.shell import Result, Shell
from pytest_minix.guest.timeline import Milestone, Phase, Timeline
from pytest_minix.guest.vm import VM
from pytest_minix.profiles import GuestProfile, load_profile
from pytest_minix.qemu.console import Console, Line, Match

__version__ = "0.1.0"

__all__ = [
    "VM",
    "BootTimeout",
    "CommandTimeout",
    "ConfigError",
    "Console",
    "GuestPanic",
    "GuestProfile",
    "HarnessConfig",
    "HarnessError",
    "ImageError",
    "Line",
    "Match",
    "Milestone",
    "Phase",
    "QemuNotFound",
    "Result",
    "Shell",
    "Timeline",
    "VMError",
    "VMOptions",
    "VMPool",
    "load_profile",
]
