"""The plugin's options and ini settings, read into a :class:`HarnessConfig`; bad values are usage errors.

Every option has an ini twin named like it with underscores (``--minix-memory`` and
``minix_memory``); the command line wins. Numbers are typed ini values (``int``/``float``
on pytest >= 8.4, so a native ``[tool.pytest]`` table takes ``minix_memory = 256``) and are
checked here in every case: a bad one stops the session naming the option or ini key,
what it takes and a correct example. The flags ``--minix-network`` and ``--minix-offline``
have ``bool`` ini twins.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.errors import ConfigError
from pytest_minix.guest.pool import HarnessConfig
from pytest_minix.media.images import OFFLINE_ENV, offline_from_env
from pytest_minix.media.iso import image_kind
from pytest_minix.media.minix import MinixSource, disk_needs_boot_files
from pytest_minix.media.releases import check_sha256, load_manifest
from pytest_minix.profiles import ARCHES, expand_arch

OPTIONS: list[tuple[str, str, str, Any]] = [
    # (option, ini name, help, default)
    ("--arch", "minix_arch", "guest arch: i386, arm or all (default i386)", "i386"),
    ("--minix-guest", "minix_guest", "guest profile from vm/: minix (default) or reference", "minix"),
    ("--minix-accel", "minix_accel", "accelerator: auto (KVM if it works, else TCG), kvm or tcg", "auto"),
    ("--minix-boot-timeout", "minix_boot_timeout", "seconds to reach the login prompt (default: the guest's)", None),
    ("--minix-memory", "minix_memory", "guest RAM in MiB (default: the guest's)", None),
    ("--minix-log-dir", "minix_log_dir", "where serial and QEMU logs go (default: <basetemp>/vm-logs)", None),
    ("--minix-qemu-i386", "minix_qemu_i386", "QEMU binary for i386 guests", None),
    ("--minix-qemu-arm", "minix_qemu_arm", "QEMU binary for ARM guests", None),
    ("--minix-image", "minix_image", "your own MINIX ISO, raw or qcow2 disk image (never written)", None),
    ("--minix-release", "minix_release", "MINIX release to fetch (default: the manifest's, 3.4.0rc6)", None),
    ("--minix-boot-dir", "minix_boot_dir", "directory with kernel and modNN_* modules (for a disk image)", None),
    ("--minix-sha256", "minix_sha256", "pin the SHA-256 of the MINIX image (or of its download)", None),
    ("--minix-arm-image", "minix_arm_image", "MINIX/arm SD card image (needs a QEMU with -M beaglexm)", None),
]


# Flags: (option, ini name, help). The ini twin is a bool (true/false, yes/no, 1/0).
FLAGS: list[tuple[str, str, str]] = [
    ("--minix-network", "minix_network", "give guests a user-mode NIC (no host port forwards); off by default"),
    ("--minix-offline", "minix_offline", f"never download images (also: ${OFFLINE_ENV}=1)"),
    (
        "--minix-cold-boot",
        "minix_cold_boot",
        "boot every VM: do not start shared VMs from, nor save them in, the boot cache (pytest-minix states lists it)",
    ),
]

# Numbers: ini name -> (pytest ini type, what the value must be, an example value).
NUMBERS: dict[str, tuple[str, str, str]] = {
    "minix_boot_timeout": ("float", "a positive number of seconds", "300"),
    "minix_memory": ("int", "a whole number of MiB, at least 16", "256"),
}

# pytest reads int and float ini values itself since 8.4; before that they arrive as strings.
TYPED_INI = pytest.version_tuple >= (8, 4)


def ini_type(ini: str) -> str | None:
    """The ``type`` to register ``ini`` with (None: a plain string)."""
    if ini in NUMBERS:
        return NUMBERS[ini][0] if TYPED_INI else None
    if any(name == ini for _opt, name, _help in FLAGS):
        return "bool"
    return None


def option_name(ini: str) -> str:
    """The command-line twin of an ini key (``minix_memory`` -> ``--minix-memory``; ``minix_arch`` -> ``--arch``)."""
    return next((opt for opt, name, *_ in [*OPTIONS, *FLAGS] if name == ini), "--" + ini.replace("_", "-"))


def read_ini(config: pytest.Config, ini: str) -> Any:
    """``config.getini(ini)``; a value pytest cannot convert is a usage error naming the key and an example."""
    try:
        return config.getini(ini)
    except (pytest.UsageError, ValueError, TypeError) as exc:
        raise pytest.UsageError(_ini_error(config, ini, f"is not valid ({exc})")) from None


def _ini_error(config: pytest.Config, ini: str, problem: str) -> str:
    where = f" in {config.inipath}" if config.inipath else ""
    if ini in NUMBERS:
        _type, rule, example = NUMBERS[ini]
    else:
        rule, example = "true or false", "true"
    return (
        f"ini setting {ini}{where} {problem}: it takes {rule}, for example `{ini} = {example}` "
        f"(or on the command line {option_name(ini)}={example})."
    )


def setting(config: pytest.Config, ini: str, default: Any) -> Any:
    """The option's value, else the ini value, else ``default``."""
    value = config.getoption(ini)
    if value is None:
        value = read_ini(config, ini)
    return default if value in (None, "", []) else value


def flag(config: pytest.Config, ini: str) -> bool:
    """A flag: given on the command line, or true in the ini file."""
    return bool(config.getoption(ini)) or bool(read_ini(config, ini))


def number(config: pytest.Config, ini: str) -> float | int | None:
    """A numeric setting (``NUMBERS``), from the command line or the ini file, checked; None when unset."""
    _type, rule, example = NUMBERS[ini]
    value = config.getoption(ini)
    from_ini = value is None
    if from_ini:
        value = read_ini(config, ini)
    if value in (None, ""):
        return None
    out = _parse_number(ini, value)
    if out is None:
        if from_ini:
            raise pytest.UsageError(_ini_error(config, ini, f"is {value!r}"))
        opt = option_name(ini)
        raise pytest.UsageError(f"{opt} takes {rule}, got {value!r}; for example {opt}={example}.")
    return out


def _parse_number(ini: str, value: Any) -> float | int | None:
    """``value`` as the setting's number, or None when it is not a valid one."""
    if isinstance(value, bool):
        return None
    if ini == "minix_memory":
        text = str(value).strip()
        return int(text) if text.isascii() and text.isdigit() and int(text) >= 16 else None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def harness_config(config: pytest.Config, log_dir: Path) -> HarnessConfig:
    """Options and ini settings as a HarnessConfig; bad values are usage errors."""
    where = "--arch" if config.getoption("minix_arch") else f"ini setting minix_arch in {config.inipath}: minix_arch"
    try:
        arches = expand_arch(str(setting(config, "minix_arch", "i386")), where)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    memory = number(config, "minix_memory")
    custom_log = setting(config, "minix_log_dir", None)

    def path(ini: str) -> Path | None:
        value = setting(config, ini, None)
        return Path(str(value)).expanduser().resolve() if value else None

    minix = MinixSource(
        image=path("minix_image"),
        release=setting(config, "minix_release", None),
        boot_dir=path("minix_boot_dir"),
        sha256=str(setting(config, "minix_sha256", "")),
        arm_image=path("minix_arm_image"),
        offline=flag(config, "minix_offline") or offline_from_env(),
    )
    return HarnessConfig(
        guest=str(setting(config, "minix_guest", "minix")),
        arches=arches,
        accel=str(setting(config, "minix_accel", "auto")),
        boot_timeout=number(config, "minix_boot_timeout"),
        memory=int(memory) if memory is not None else None,
        log_dir=Path(custom_log).resolve() if custom_log else log_dir,
        qemu_binaries={a: str(b) for a in ARCHES if (b := setting(config, f"minix_qemu_{a}", ""))},
        network=flag(config, "minix_network"),
        minix=minix,
        warm_start=not flag(config, "minix_cold_boot"),
    )


def check_minix(src: MinixSource) -> None:
    """Bad --minix-* values fail the session at start."""
    check_sha256(src.sha256, "--minix-sha256")
    if src.release is not None or src.image is None:
        load_manifest().get(src.release)
    for opt, p, want_dir in (
        ("--minix-image", src.image, False),
        ("--minix-boot-dir", src.boot_dir, True),
        ("--minix-arm-image", src.arm_image, False),
    ):
        if p is not None and not (p.is_dir() if want_dir else p.is_file()):
            what = "directory" if want_dir else "file"
            raise ConfigError(f"{opt} {p}: no such {what}. Check the path.")
    if src.image is not None and src.boot_dir is None and src.release is None and image_kind(src.image) != "iso":
        raise disk_needs_boot_files(src.image)
