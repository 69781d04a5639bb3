"""What a guest boots from: files for the profile's placeholders and base disks to overlay."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BootMedia:
    """A provider's answer for one arch: fills ``{kernel}``-style placeholders, picks a profile variant."""

    files: dict[str, str | Path]  # placeholder -> path (or a ready-made string such as a module list)
    disks: dict[str, Path] = field(default_factory=dict)  # placeholder -> base image, booted through an overlay
    disk_formats: dict[str, str] = field(default_factory=dict)  # placeholder -> "raw" (default) or "qcow2"
    variant: str = ""  # the profile's [arch.X.variants.<name>] to apply; "" = the arch's defaults
    description: str = ""  # one line for logs and the session summary
    image_sha256: str = ""  # the guest image's hash, recorded with every measurement
