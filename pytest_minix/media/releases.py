"""The manifest of known MINIX releases (``vm/minix/releases.toml``): names, URLs, hashes."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_minix.errors import ConfigError
from pytest_minix.paths import vm_dir

RELEASES_ENV = "PYTEST_MINIX_RELEASES"  # an extra manifest (a mirror, a new release) read after the shipped one
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {"file", "url", "compression", "kind", "arch", "sha256", "download_sha256"}


@dataclass(frozen=True)
class Release:
    """One downloadable image; empty hashes mean unknown (trust on first use)."""

    name: str
    file: str  # the decompressed image's file name in the cache
    url: str
    compression: str = "bz2"  # "bz2" or "none"
    kind: str = "iso"
    arch: str = "i386"
    sha256: str = ""
    download_sha256: str = ""

    @property
    def download_name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Manifest:
    default: str
    releases: dict[str, Release]
    sources: tuple[Path, ...]

    def get(self, name: str | None) -> Release:
        """The named release (default: the manifest's), or an error listing the known ones."""
        name = name or self.default
        try:
            return self.releases[name]
        except KeyError:
            raise ConfigError(
                f"Unknown MINIX release {name!r}. Known releases: {', '.join(sorted(self.releases))} "
                f"(from {', '.join(map(str, self.sources))}). Pass one of those with --minix-release, "
                f"or add it to a manifest named by ${RELEASES_ENV}."
            ) from None


def check_sha256(value: str, where: str) -> str:
    """A lower-case hex SHA-256, or a ConfigError saying what is wrong."""
    text = value.strip().lower()
    if text and not _SHA256.match(text):
        raise ConfigError(f"{where}: {value!r} is not a SHA-256 (64 hexadecimal digits).")
    return text


def _parse(path: Path, into: dict[str, Release]) -> str | None:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read the release manifest {path}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the file's syntax.") from None
    unknown_top = set(data) - {"default", "releases"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown_top))}; valid: default, releases.")
    for name, entry in data.get("releases", {}).items():
        where = f"{path}: releases.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table.")
        unknown = set(entry) - _KEYS
        if unknown:
            valid = ", ".join(sorted(_KEYS))
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: {valid}.")
        for key in ("file", "url"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"{where}: missing or empty '{key}'.")
        compression = entry.get("compression", "bz2")
        if compression not in ("bz2", "none"):
            raise ConfigError(f"{where}: compression must be 'bz2' or 'none', got {compression!r}.")
        if "/" in entry["file"] or entry["file"].startswith("."):
            raise ConfigError(f"{where}: file must be a plain file name, got {entry['file']!r}.")
        into[name] = Release(
            name=name,
            file=entry["file"],
            url=entry["url"],
            compression=compression,
            kind=entry.get("kind", "iso"),
            arch=entry.get("arch", "i386"),
            sha256=check_sha256(entry.get("sha256", ""), f"{where}.sha256"),
            download_sha256=check_sha256(entry.get("download_sha256", ""), f"{where}.download_sha256"),
        )
    default = data.get("default")
    return str(default) if default else None


def load_manifest() -> Manifest:
    """The shipped manifest, plus ``$PYTEST_MINIX_RELEASES`` if set (its entries win)."""
    sources = [vm_dir() / "minix" / "releases.toml"]
    extra = os.environ.get(RELEASES_ENV)
    if extra:
        sources.append(Path(extra))
    releases: dict[str, Release] = {}
    default = ""
    for src in sources:
        default = _parse(src, releases) or default
    if default not in releases:
        raise ConfigError(f"The release manifest's default {default!r} is not one of its releases ({sources}).")
    return Manifest(default, releases, tuple(sources))
