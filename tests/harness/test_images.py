"""The MINIX image cache against a real HTTP server on loopback: fetch, bz2, hashes, offline, locks, prune.

The real release URLs cannot be reached from CI machines; everything here downloads from
the loopback server started by the test.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import filelock
import pytest
from minix_layout import MODULES, build_minix_iso

from pytest_minix.errors import ConfigError, ImageError
from pytest_minix.media.images import ImageStore, ImageUnavailable
from pytest_minix.media.releases import Release, load_manifest

FILE = "minix_R9.9.9-test.iso"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def iso_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = build_minix_iso(tmp_path_factory.mktemp("iso") / "minix.iso")
    return path.read_bytes()


@pytest.fixture
def store(tmp_path: Path) -> tuple[ImageStore, list[str]]:
    msgs: list[str] = []
    return ImageStore(tmp_path / "cache", notify=msgs.append, progress=False, timeout=2.0, retries=1), msgs


def release(url: str, **kw: str) -> Release:
    return Release(name="9.9.9", file=FILE, url=url, **kw)


def test_fetch_decompresses_records_both_hashes_and_extracts(http_server, store, iso_bytes):
    st, msgs = store
    packed = bz2.compress(iso_bytes)
    rel = release(http_server.add("/iso/minix_R9.9.9-test.iso.bz2", packed))
    image = st.fetch(rel)
    assert image.path == st.image_path(rel) and image.path.read_bytes() == iso_bytes
    assert (image.sha256, image.download_sha256, image.kind) == (sha(iso_bytes), sha(packed), "iso")
    record = json.loads((st.release_dir(rel) / "record.json").read_text())
    assert record["sha256"] == sha(iso_bytes) and record["download_sha256"] == sha(packed)
    assert record["pinned"] is False
    assert not st.download_path(rel).exists(), "the compressed download is dropped once decompressed"
    text = "\n".join(msgs)
    assert sha(iso_bytes) in text and sha(packed) in text and "trust on first use" in text
    # A second fetch verifies the cached image: no new request.
    again = st.fetch(rel)
    assert again.sha256 == image.sha256 and len(http_server.requests("/iso/minix_R9.9.9-test.iso.bz2")) == 1
    boot = st.boot_set(image)
    assert [m.name for m in boot.modules] == list(MODULES)
    assert boot.initrd_arg().count(",") == 11


def test_multistream_bz2(http_server, store, iso_bytes):
    st, _ = store
    half = len(iso_bytes) // 2
    packed = bz2.compress(iso_bytes[:half]) + bz2.compress(iso_bytes[half:])  # as pbzip2 writes
    image = st.fetch(release(http_server.add("/m.iso.bz2", packed)))
    assert image.path.read_bytes() == iso_bytes


def test_cached_image_changed_after_first_use_is_refused(http_server, store, iso_bytes):
    st, _ = store
    rel = release(http_server.add("/a.iso.bz2", bz2.compress(iso_bytes)))
    image = st.fetch(rel)
    with open(image.path, "r+b") as f:  # flip one byte, keeping the size
        f.seek(40000)
        byte = f.read(1)
        f.seek(40000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ImageError, match="has changed since it was recorded") as exc:
        st.fetch(rel)
    assert "pytest-minix fetch --force 9.9.9" in str(exc.value)


@pytest.mark.parametrize("where", ["manifest-image", "manifest-download", "option"])
def test_checksum_mismatch_caches_nothing(http_server, store, iso_bytes, where):
    st, _ = store
    url = http_server.add("/b.iso.bz2", bz2.compress(iso_bytes))
    wrong = "ab" * 32
    rel = release(url, sha256=wrong) if where == "manifest-image" else release(url)
    if where == "manifest-download":
        rel = release(url, download_sha256=wrong)
    with pytest.raises(ImageError, match="Checksum mismatch") as exc:
        st.fetch(rel, pin=wrong if where == "option" else "")
    assert wrong in str(exc.value) and "Nothing was cached" in str(exc.value)
    assert not st.image_path(rel).exists() and not st.download_path(rel).exists()
    assert not (st.release_dir(rel) / "record.json").exists()


def test_pins_accept_the_image_or_the_download_hash(http_server, store, iso_bytes):
    st, _ = store
    packed = bz2.compress(iso_bytes)
    rel = release(http_server.add("/c.iso.bz2", packed), download_sha256=sha(packed))
    image = st.fetch(rel, pin=sha(iso_bytes))
    assert json.loads((st.release_dir(rel) / "record.json").read_text())["pinned"] is True
    assert st.verify(rel, pin=sha(packed)).sha256 == image.sha256
    with pytest.raises(ImageError, match="--minix-sha256 pins"):
        st.verify(rel, pin="cd" * 32)
    with pytest.raises(ConfigError, match="not a SHA-256"):
        st.verify(rel, pin="1234")


def test_truncated_bz2_is_rejected(http_server, store, iso_bytes):
    st, _ = store
    packed = bz2.compress(iso_bytes)
    rel = release(http_server.add("/d.iso.bz2", packed[: len(packed) // 2]))  # the server's file itself is cut
    with pytest.raises(ImageError, match="not a complete bz2 file") as exc:
        st.fetch(rel)
    assert "truncated or corrupt" in str(exc.value)
    assert not st.image_path(rel).exists() and not st.download_path(rel).exists()


def test_not_bz2_at_all(http_server, store):
    st, _ = store
    rel = release(http_server.add("/e.iso.bz2", b"<html>captive portal</html>\n"))
    with pytest.raises(ImageError, match="not a complete bz2 file"):
        st.fetch(rel)
    assert not st.image_path(rel).exists()


def test_offline_names_file_url_and_where_to_put_it(http_server, store):
    st, _ = store
    url = http_server.add("/f.iso.bz2", b"x")
    rel = release(url)
    with pytest.raises(ImageUnavailable) as exc:
        st.fetch(rel, offline=True)
    msg = str(exc.value)
    for part in (
        FILE,
        url,
        str(st.download_path(rel)),
        str(st.image_path(rel)),
        "--minix-image",
        "--minix-guest=reference",
        "--minix-offline",
    ):
        assert part in msg
    assert http_server.requests("/f.iso.bz2") == []


def test_failed_download_is_unavailable_with_the_same_advice(http_server, store):
    st, _ = store
    url = http_server.add("/g.iso.bz2", b"", mode="404")
    with pytest.raises(ImageUnavailable) as exc:
        st.fetch(release(url))
    msg = str(exc.value)
    assert "404" in msg and url in msg and "on a machine with network access" in msg


def test_file_put_there_by_hand_is_used_offline(store, iso_bytes):
    st, msgs = store
    rel = release("http://127.0.0.1:9/unreachable/minix_R9.9.9-test.iso.bz2")
    st.release_dir(rel).mkdir(parents=True)
    st.download_path(rel).write_bytes(bz2.compress(iso_bytes))
    image = st.fetch(rel, offline=True)
    assert image.path.read_bytes() == iso_bytes
    # The decompressed image placed by hand (no record yet) is recorded on first use.
    rel2 = Release(name="9.9.8", file=FILE, url=rel.url)
    st.release_dir(rel2).mkdir(parents=True)
    st.image_path(rel2).write_bytes(iso_bytes)
    assert st.fetch(rel2, offline=True).sha256 == sha(iso_bytes)
    assert any("placed by hand" in m for m in msgs)


def test_two_processes_fetch_once(http_server, tmp_path, iso_bytes):
    """Concurrent fetches (xdist workers, two sessions) share one download through the file lock."""
    packed = bz2.compress(iso_bytes)
    url = http_server.add("/h/minix_R9.9.9-test.iso.bz2", packed)
    manifest = tmp_path / "releases.toml"
    manifest.write_text(f'[releases."9.9.9"]\nfile = "{FILE}"\nurl = "{url}"\n')
    env = {**os.environ, "PYTEST_MINIX_CACHE": str(tmp_path / "cache"), "PYTEST_MINIX_RELEASES": str(manifest)}
    store = ImageStore(tmp_path / "cache", progress=False)
    rel = load_manifest_with(manifest)
    store.release_dir(rel).mkdir(parents=True)
    # Hold the release's lock so that both processes are certainly waiting at once when it is freed.
    lock = filelock.FileLock(str(store.release_dir(rel) / ".lock"))
    lock.acquire()
    cmd = [sys.executable, "-m", "pytest_minix.cli", "fetch", "9.9.9"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    time.sleep(1.5)
    lock.release()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(http_server.requests("/h/minix_R9.9.9-test.iso.bz2")) == 1
    assert all(sha(iso_bytes) in out for out, _ in outs)
    assert sum("waiting for another process" in err for _, err in outs) == 2


def load_manifest_with(path: Path) -> Release:
    old = os.environ.get("PYTEST_MINIX_RELEASES")
    os.environ["PYTEST_MINIX_RELEASES"] = str(path)
    try:
        return load_manifest().get("9.9.9")
    finally:
        if old is None:
            del os.environ["PYTEST_MINIX_RELEASES"]
        else:
            os.environ["PYTEST_MINIX_RELEASES"] = old


def test_prune_keeps_only_what_is_in_use(http_server, store, iso_bytes):
    st, _ = store
    rel = release(http_server.add("/p.iso.bz2", bz2.compress(iso_bytes)))
    image = st.fetch(rel)
    st.boot_set(image)
    junk = [
        st.release_dir(rel) / "old.iso.bz2.part",
        st.root / "0.0.1" / "minix_R0.0.1.iso",  # a release no longer in the manifest
        st.boot_root / "0123456789abcdef" / "kernel",  # boot files of an image that is gone
    ]
    for p in junk:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"junk")
    removed = st.prune({"9.9.9"})
    assert {junk[0], junk[1].parent, junk[2].parent} <= set(removed)
    assert image.path.is_file() and (st.boot_root / image.sha256[:16] / "kernel").is_file()
    assert st.fetch(rel, offline=True).sha256 == image.sha256
    st.prune({"9.9.9"}, everything=True)
    assert not image.path.exists() and not any(st.boot_root.glob("*/kernel"))


def test_listing_shows_release_size_hash_and_partials(http_server, store, iso_bytes):
    st, _ = store
    rel = release(http_server.add("/l.iso.bz2", bz2.compress(iso_bytes)))
    st.fetch(rel)
    (st.root / "3.3.0").mkdir()
    (st.root / "3.3.0" / "minix_R3.3.0-588a35b.iso.bz2.part").write_bytes(b"x" * 1000)
    rows = st.cached()
    full = [r for r in rows if not r.get("partial")]
    assert [(r["release"], r["size"], r["sha256"]) for r in full] == [("9.9.9", len(iso_bytes), sha(iso_bytes))]
    assert [(r["release"], r["size"]) for r in rows if r.get("partial")] == [("3.3.0", 1000)]


def test_user_images_are_detected_by_content(tmp_path, iso_bytes):
    iso = tmp_path / "disk.img"  # a CD image with a disk's name
    iso.write_bytes(iso_bytes)
    assert ImageStore.user_image(iso).kind == "iso"
    qcow = tmp_path / "cd.iso"  # a qcow2 disk with a CD's name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "16M"], check=True)
    assert ImageStore.user_image(qcow).kind == "qcow2"
    raw = tmp_path / "minix.qcow2"
    raw.write_bytes(b"\0" * 510 + b"\x55\xaa" + b"\0" * 1024 * 1023)
    assert ImageStore.user_image(raw).kind == "raw"
    with pytest.raises(ImageError, match="Checksum mismatch"):
        ImageStore.user_image(raw, "ef" * 32)
    with pytest.raises(ConfigError, match="no such file"):
        ImageStore.user_image(tmp_path / "absent.iso")


def test_shipped_manifest_and_a_users_extra_one(tmp_path, monkeypatch):
    m = load_manifest()
    assert m.default == "3.4.0rc6" and m.get(None).file == "minix_R3.4.0rc6-d5e4fc0.iso"
    assert m.get("3.3.0").url.endswith("/iso/minix_R3.3.0-588a35b.iso.bz2")
    with pytest.raises(ConfigError, match=r"Known releases: 3\.3\.0, 3\.4\.0rc6"):
        m.get("2.0.4")
    bad = tmp_path / "bad.toml"
    bad.write_text('[releases."x"]\nfile = "a.iso"\nurl = "http://h/a.iso.bz2"\ncompresion = "bz2"\n')
    monkeypatch.setenv("PYTEST_MINIX_RELEASES", str(bad))
    with pytest.raises(ConfigError, match=r"bad\.toml: releases\.x: unknown key\(s\) compresion"):
        load_manifest()
    bad.write_text('[releases."x"]\nfile = "a.iso"\nurl = "http://h/a"\nsha256 = "xyz"\n')
    with pytest.raises(ConfigError, match="not a SHA-256"):
        load_manifest()
    bad.write_text("[releases\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_manifest()


def test_an_interrupted_install_leaves_no_image_taken_as_good(http_server, store, iso_bytes, monkeypatch):
    """A crash between decompressing and verifying must not leave an unverified image under its real
    name: a later (offline) fetch would otherwise record it on trust."""
    import pytest_minix.media.images as images_mod

    st, _ = store
    rel = release(http_server.add("/k.iso.bz2", bz2.compress(iso_bytes)))

    def crash(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(images_mod, "image_kind", crash)
    with pytest.raises(KeyboardInterrupt):
        st.fetch(rel)
    assert not st.image_path(rel).exists() and not (st.release_dir(rel) / "record.json").exists()
    monkeypatch.undo()
    image = st.fetch(rel, offline=True)  # the complete download is verified again, then installed
    assert image.path.read_bytes() == iso_bytes


def test_uncompressed_release_is_verified_before_it_gets_its_name(http_server, store, iso_bytes):
    st, _ = store
    url = http_server.add("/plain.iso", iso_bytes)
    bad = Release(name="9.9.7", file="plain.iso", url=url, compression="none", sha256="ab" * 32)
    with pytest.raises(ImageError, match="Checksum mismatch"):
        st.fetch(bad)
    assert not st.image_path(bad).exists() and not list(st.release_dir(bad).glob("plain.iso*"))
    good = Release(name="9.9.6", file="plain.iso", url=url, compression="none", sha256=sha(iso_bytes))
    assert st.fetch(good).path.read_bytes() == iso_bytes
