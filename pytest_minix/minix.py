"""Boot media for the MINIX guest: a release ISO (fetched), a user's ISO or disk image, an SD image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, GuestUnavailable
from .media import BootMedia

if TYPE_CHECKING:  # imported when needed: requests and pycdlib are not needed to run the reference guest
    from .images import CachedImage, ImageStore
    from .iso import BootSet


@dataclass(frozen=True)
class MinixSource:
    """Where the MINIX image and boot files come from (options ``--minix-*``, ``--offline``)."""

    image: Path | None = None  # a user's ISO, raw or qcow2 image (--minix-image)
    release: str | None = None  # a release from the manifest (--minix-release; default: the manifest's)
    boot_dir: Path | None = None  # kernel + modNN_* (--minix-boot-dir)
    sha256: str = ""  # pin for the image or the download (--minix-sha256)
    arm_image: Path | None = None  # SD card image for MINIX/arm (--minix-arm-image)
    offline: bool = False


def minix_media(arch: str, src: MinixSource, notify: Callable[[str], None] | None = None) -> BootMedia:
    """Resolve the source into boot media, fetching and extracting as needed."""
    from .images import ImageStore
    from .releases import load_manifest

    store = ImageStore(notify=notify) if notify else ImageStore()
    if arch == "arm":
        return _arm(src)
    if src.image is not None:
        image = store.user_image(src.image, src.sha256)
        if image.kind != "iso":
            boot = _disk_boot_files(store, src)
            return BootMedia(
                files=_boot_files(boot),
                disks={"disk": image.path},
                disk_formats={"disk": image.kind},
                variant="disk",
                image_sha256=image.sha256,
                description=f"{image.kind} disk image {image.path} (sha256 {image.sha256[:16]}), root c0d0p0, "
                f"kernel from {boot.kernel.parent}",
            )
        return _cd(store, image, src)
    rel = load_manifest().get(src.release)
    return _cd(store, store.fetch(rel, offline=src.offline, pin=src.sha256), src)


def _boot_files(boot: BootSet) -> dict[str, str | Path]:
    return {"kernel": boot.kernel, "modules": boot.initrd_arg()}


def _cd(store: ImageStore, image: CachedImage, src: MinixSource) -> BootMedia:
    from .iso import read_boot_dir

    boot = read_boot_dir(src.boot_dir) if src.boot_dir else store.boot_set(image)
    name = f"MINIX {image.release}" if image.release else str(image.path)
    return BootMedia(
        files={**_boot_files(boot), "cdrom": image.path},
        image_sha256=image.sha256,
        description=f"live CD {name} (sha256 {image.sha256[:16]}), {len(boot.modules)} modules from "
        f"{boot.kernel.parent}",
    )


def _disk_boot_files(store: ImageStore, src: MinixSource) -> BootSet:
    from .iso import read_boot_dir
    from .releases import load_manifest

    if src.boot_dir is not None:
        return read_boot_dir(src.boot_dir)
    if src.release is not None:
        iso = store.fetch(load_manifest().get(src.release), offline=src.offline)
        return store.boot_set(iso)
    raise disk_needs_boot_files(src.image)


def disk_needs_boot_files(image: Path | None) -> ConfigError:
    return ConfigError(
        f"--minix-image {image} is a disk image, and QEMU boots MINIX from a kernel and modules outside it. "
        "Pass --minix-boot-dir DIR (a directory holding `kernel` and `mod01_ds` ... `mod12_init`, e.g. a copy "
        "of the image's /boot/minix_default) or --minix-release RELEASE (the harness fetches that release's "
        "ISO and takes them from it; it must be the release the disk image was built from)."
    )


def _arm(src: MinixSource) -> BootMedia:
    from .iso import image_kind

    if src.arm_image is None:
        raise GuestUnavailable(
            "MINIX/arm needs an SD card image for a BeagleBoard-xM: build one with the MINIX source's "
            "releasetools/arm_sdimage.sh and pass it with --minix-arm-image PATH (ini minix_arm_image). "
            "Or run the ARM suites on the reference guest with --guest=reference."
        )
    path = src.arm_image
    if not path.is_file():
        raise ConfigError(f"--minix-arm-image {path}: no such file. Give the path of a MINIX/arm SD card image.")
    kind = image_kind(path)
    if kind == "iso":
        raise ConfigError(f"--minix-arm-image {path} is an ISO 9660 CD image; MINIX/arm boots from an SD card image.")
    return BootMedia(files={}, disks={"sd": path}, disk_formats={"sd": kind}, description=f"SD image {path}")
