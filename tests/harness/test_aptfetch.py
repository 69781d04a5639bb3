"""Tests of the private apt configuration: mirror parsing offline, resolution for real."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pytest_minix.media import aptfetch
from pytest_minix.media.aptfetch import (
    DEFAULT_MIRROR,
    PrivateApt,
    host_mirror,
    mirrors_from_deb822,
    mirrors_from_list,
    split_depends,
)

DEB822 = """\
Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm
Components: main

Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.example.org/debian
  http://second.example.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

ONE_LINE = """\
# deb http://commented.example.org/debian bookworm main
deb-src http://src.example.org/debian bookworm main
deb http://security.example.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://list.example.org/debian/ bookworm main contrib # trailing
deb http://contrib-only.example.org/debian bookworm contrib
"""


def test_deb822_picks_enabled_deb_stanzas_for_suite_and_component() -> None:
    assert mirrors_from_deb822(DEB822) == ["http://mirror.example.org/debian", "http://second.example.org/debian"]
    assert mirrors_from_deb822(DEB822, suite="bookworm-security") == ["http://security.example.org/debian-security"]
    assert mirrors_from_deb822(DEB822, suite="trixie") == []


def test_one_line_sources() -> None:
    assert mirrors_from_list(ONE_LINE) == ["http://list.example.org/debian/"]
    assert mirrors_from_list(ONE_LINE, component="contrib") == [
        "http://list.example.org/debian/",
        "http://contrib-only.example.org/debian",
    ]


def test_host_mirror_prefers_sources_files_then_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(aptfetch.MIRROR_ENV, raising=False)
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    assert host_mirror(etc) == DEFAULT_MIRROR  # nothing configured
    (etc / "sources.list").write_text(ONE_LINE)
    assert host_mirror(etc) == "http://list.example.org/debian"  # trailing slash dropped
    (etc / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert host_mirror(etc) == "http://mirror.example.org/debian"
    monkeypatch.setenv(aptfetch.MIRROR_ENV, "http://override.example.org/debian/")
    assert host_mirror(etc) == "http://override.example.org/debian"


def test_host_mirror_skips_non_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(aptfetch.MIRROR_ENV, raising=False)
    (tmp_path / "sources.list").write_text("deb cdrom:[Debian 12]/ bookworm main\ndeb file:/srv/mirror bookworm main\n")
    assert host_mirror(tmp_path) == DEFAULT_MIRROR


def test_split_depends() -> None:
    field = "linux-image-6.1.0-50-686 (= 6.1.176-1), kmod | busybox, foo:any, bar [i386] (>= 1)"
    assert split_depends(field) == ["linux-image-6.1.0-50-686", "kmod", "foo", "bar"]
    assert split_depends("") == []


def test_options_keep_apt_inside_private_root(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path / "apt", ("i386", "armhf"), mirror="http://m.example.org/debian", log=lambda _: None)
    opts = apt.options()
    values = dict(o.split("=", 1) for o in opts[1::2])
    for key in ("Dir::State", "Dir::State::Lists", "Dir::State::status", "Dir::Cache", "Dir::Etc::SourceParts"):
        assert values[key].startswith(str(tmp_path / "apt")), key
    assert values["Dir::Etc::SourceList"] == "/dev/null"
    assert values["Debug::NoLocking"] == "1"
    arches = [o.split("=", 1)[1] for o in opts[1::2] if o.startswith("APT::Architectures::=")]
    assert arches == ["i386", "armhf"]


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get not installed (not a Debian-based host)")
@pytest.mark.skipif(not aptfetch.DEFAULT_KEYRING.is_file(), reason="debian-archive-keyring not installed")
def test_real_update_and_resolve_kernel(tmp_path: Path) -> None:
    """Hits the Debian mirror: a private `apt-get update` (~17 MB) and two look-ups."""
    apt = PrivateApt(tmp_path / "apt", ("i386", "armhf"), log=lambda _: None)
    assert apt.update() is True
    assert apt.update() is False  # fresh index is reused
    sources = (tmp_path / "apt" / "sources.list.d" / "pytest-minix.sources").read_text()
    assert "Architectures: i386 armhf" in sources
    kernel = apt.resolve("linux-image-686", "i386", r"linux-image-\d+\.\d+\.\d+-\d+-686")
    assert re.fullmatch(r"linux-image-6\.1\.0-\d+-686", kernel.name)
    assert kernel.arch == "i386"
    assert re.fullmatch(r"[0-9a-f]{64}", kernel.sha256)
    busybox = apt.info("busybox-static", "armhf")
    assert busybox.arch == "armhf" and busybox.version
