"""Boot media by provider: a guest profile's ``artifacts`` names where its boot files come from."""

from __future__ import annotations

import functools
from collections.abc import Callable

from pytest_minix.media.bootmedia import BootMedia
from pytest_minix.media.images import sha256_file
from pytest_minix.media.minix import MinixSource, minix_media
from pytest_minix.media.reference import ensure_reference
from pytest_minix.paths import cache_root

Notify = Callable[[str], None] | None
# provider(arch, the user's MINIX source options, progress notifier) -> what to boot
Provider = Callable[[str, MinixSource, Notify], BootMedia]


@functools.cache
def _reference_media(arch: str, cache: str) -> BootMedia:
    # Cached per process and cache directory: verifying the artifacts' hashes costs ~20 ms per
    # boot. Keyed by the cache too: the paths are part of a saved VM's key (the boot cache).
    art = ensure_reference(arch)
    # The manifest pins kernel, initrd and disk by SHA-256: its own hash stands for all three.
    return BootMedia(
        files={"kernel": art.kernel, "initrd": art.initrd},
        disks={"disk": art.disk},
        description=f"reference guest, Linux {art.kernel_version}",
        image_sha256=sha256_file(art.manifest),
    )


def reference_media(arch: str, minix: MinixSource, notify: Notify = None) -> BootMedia:
    """The reference guest, built from Debian packages into the cache on first use."""
    return _reference_media(arch, str(cache_root()))


PROVIDERS: dict[str, Provider] = {"reference": reference_media, "minix": minix_media}
