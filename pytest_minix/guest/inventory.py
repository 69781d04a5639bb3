"""What this machine can boot: guests, arches, QEMU binaries and machines, boot media, KVM.

Read-only: nothing is downloaded or built here (that happens at the first boot).
"""

from __future__ import annotations

from typing import Any

from pytest_minix.errors import HarnessError
from pytest_minix.paths import cache_root
from pytest_minix.profiles import available_guests, load_profile
from pytest_minix.qemu.accel import kvm_static_reason
from pytest_minix.qemu.binary import find_qemu, qemu_machines


def _media_state(guest: str, arch: str, images: list[dict[str, Any]]) -> str:
    if guest == "reference":
        from pytest_minix.media.reference import load_cached

        if load_cached(arch) is not None:
            return "built (cached)"
        return "not built yet: built from Debian packages at the first boot (about 10 s; needs the apt mirror)"
    if guest == "minix":
        if arch == "arm":
            return "needs a MINIX/arm SD-card image given to the server (--minix-arm-image) and qemu-linaro"
        whole = [r for r in images if not r.get("partial")]
        if whole:
            return "cached image(s): " + ", ".join(f"{r['release']} sha256 {r['sha256'][:12]}" for r in whole)
        return "no image cached: the first boot downloads it (or run `pytest-minix fetch`)"
    return "unknown"


def guests_inventory() -> dict[str, Any]:
    """Per guest and arch: QEMU binary, whether it has the machine, boot media state, KVM state."""
    from pytest_minix.media.images import ImageStore

    images = ImageStore().cached()
    guests = []
    for name in available_guests():
        profile = load_profile(name)
        arches = []
        for arch, conf in sorted(profile.arches.items()):
            row: dict[str, Any] = {"arch": arch, "machine": conf.machine}
            try:
                qemu = find_qemu(conf.qemu, arch)
                row["qemu"] = qemu
                row["machine_supported"] = conf.machine in qemu_machines(qemu)
            except HarnessError as exc:
                row["qemu"] = None
                row["machine_supported"] = False
                row["problem"] = str(exc)
            if not row["machine_supported"] and "problem" not in row:
                row["problem"] = f"{row['qemu']} has no machine {conf.machine!r}. {conf.machine_hint}".strip()
            kvm_reason = kvm_static_reason(conf)
            row["kvm"] = "may be used (tried first; a failure falls back to TCG)" if kvm_reason is None else "no"
            if kvm_reason:
                row["kvm_reason"] = kvm_reason
            row["media"] = _media_state(name, arch, images)
            row["bootable"] = bool(row["machine_supported"])
            arches.append(row)
        guests.append(
            {"guest": name, "description": profile.description, "memory_mib": profile.memory, "arches": arches}
        )
    return {"guests": guests, "cache": str(cache_root())}


def images_inventory() -> dict[str, Any]:
    """Cached MINIX images and partial downloads, known releases, and built reference guests."""
    from pytest_minix.media.images import ImageStore
    from pytest_minix.media.reference import load_cached
    from pytest_minix.media.releases import load_manifest

    manifest = load_manifest()
    reference = []
    for arch in sorted(load_profile("reference").arches):
        art = load_cached(arch)
        if art is not None:
            reference.append(
                {
                    "arch": arch,
                    "kernel": str(art.kernel),
                    "initrd": str(art.initrd),
                    "disk": str(art.disk),
                    "kernel_version": art.kernel_version,
                }
            )
    return {
        "minix_images": ImageStore().cached(),
        "minix_releases": sorted(manifest.releases),
        "default_release": manifest.default,
        "reference_builds": reference,
        "cache": str(cache_root()),
    }
