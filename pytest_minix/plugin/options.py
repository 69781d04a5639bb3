"""The plugin's options and ini settings, read into a :class:`HarnessConfig`; bad values are usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_minix.errors import ConfigError
from pytest_minix.guest.pool import HarnessConfig
from pytest_minix.media.images import offline_from_env
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


def setting(config: pytest.Config, ini: str, default: Any) -> Any:
    value = config.getoption(ini)
    if value is None:
        value = config.getini(ini)
    return default if value in (None, "", []) else value


def _float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except ValueError:
        raise pytest.UsageError(f"{name} must be a number of seconds, got {value!r}.") from None
    if out <= 0:
        raise pytest.UsageError(f"{name} must be positive, got {value!r}.")
    return out


def harness_config(config: pytest.Config, log_dir: Path) -> HarnessConfig:
    """Options and ini settings as a HarnessConfig; bad values are usage errors."""
    try:
        arches = expand_arch(str(setting(config, "minix_arch", "i386")))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    memory = setting(config, "minix_memory", None)
    if memory is not None and (not str(memory).isdigit() or int(memory) < 16):
        raise pytest.UsageError(f"--minix-memory must be a whole number of MiB (at least 16), got {memory!r}.")
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
        offline=bool(config.getoption("minix_offline")) or offline_from_env(),
    )
    return HarnessConfig(
        guest=str(setting(config, "minix_guest", "minix")),
        arches=arches,
        accel=str(setting(config, "minix_accel", "auto")),
        boot_timeout=_float("--minix-boot-timeout", setting(config, "minix_boot_timeout", None)),
        memory=int(memory) if memory is not None else None,
        log_dir=Path(custom_log).resolve() if custom_log else log_dir,
        qemu_binaries={a: str(b) for a in ARCHES if (b := setting(config, f"minix_qemu_{a}", ""))},
        network=bool(config.getoption("minix_network")),
        minix=minix,
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
