"""pytest-minix: boot MINIX 3 (or the reference guest) under QEMU from pytest.

Public API for users' own tests: the ``guest`` and ``vm_pool`` fixtures hand out
:class:`VM` objects; ``vm.shell.run(cmd)`` returns a :class:`Result`.
"""

from .console import Console, Line, Match
from .errors import (
    BootTimeout,
    CommandTimeout,
    ConfigError,
    GuestPanic,
    HarnessError,
    ImageError,
    QemuNotFound,
    VMError,
)
from .pool import HarnessConfig, VMOptions, VMPool
from .profiles import GuestProfile, load_profile
from .shell import Result, Shell
from .timeline import Milestone, Phase, Timeline
from .vm import VM

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
