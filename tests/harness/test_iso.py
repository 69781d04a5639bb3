"""Boot files off a MINIX-layout ISO (built here with pycdlib), boot directories, and image detection."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pycdlib
import pytest
from minix_layout import MODULES as MINIX_MODULES
from minix_layout import build_iso, minix_files

from pytest_minix.errors import HarnessError, ImageError
from pytest_minix.media.iso import BootSet, extract_boot, image_kind, read_boot_dir

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed (qemu-utils)")


def assert_minix_bootset(boot: BootSet, dest: Path, files: dict[str, bytes]) -> None:
    assert boot.kernel == dest.absolute() / "kernel"
    assert [p.name for p in boot.modules] == list(MINIX_MODULES)
    assert all(p.parent == dest.absolute() for p in boot.modules)
    assert boot.module_count == 12
    assert boot.kernel.read_bytes() == files["kernel"]
    for p in boot.modules:
        assert p.read_bytes() == files[p.name], p.name
    assert sorted(p.name for p in dest.iterdir()) == sorted([*files, ".extracted-from.json"])


def leftovers(parent: Path) -> list[str]:
    """Temporary or half-written directories extract_boot might have left beside dest."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---- extraction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rock_ridge", "joliet"),
    [(True, True), (True, False), (False, True), (False, False)],
    ids=["rr+joliet", "rr", "joliet", "iso9660"],
)
def test_extract_every_naming_scheme(tmp_path: Path, rock_ridge: bool, joliet: bool) -> None:
    files = minix_files()
    iso = build_iso(tmp_path / "minix.iso", files, rock_ridge=rock_ridge, joliet=joliet)
    dest = tmp_path / "boot"
    boot = extract_boot(iso, dest)
    assert_minix_bootset(boot, dest, files)
    assert boot.initrd_arg() == ",".join(str(dest.absolute() / m) for m in MINIX_MODULES)


def test_plain_iso9660_names_are_upper_case_with_version(tmp_path: Path) -> None:
    """What the fallback has to undo: without Rock Ridge or Joliet pycdlib shows ``KERNEL.;1``."""
    iso_path = build_iso(tmp_path / "plain.iso", rock_ridge=False, joliet=False)
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        names = {c.file_identifier() for c in iso.list_children(iso_path="/BOOT/MINIX_DEFAULT")}
    finally:
        iso.close()
    assert {b"KERNEL.;1", b"MOD01_DS.;1", b"MOD04_SCHED.;1"} <= names


def test_level1_iso9660_names_are_cut_to_8_characters(tmp_path: Path) -> None:
    """Level 1 cuts the directory to MINIX_DE and long module names to 8.3; the modNN order survives."""
    files = minix_files()
    iso = build_iso(tmp_path / "l1.iso", files, rock_ridge=False, joliet=False, level=1)
    boot = extract_boot(iso, tmp_path / "boot")
    short = [m[:8] for m in MINIX_MODULES]
    assert [p.name for p in boot.modules] == short
    assert [p.read_bytes() for p in boot.modules] == [files[m] for m in MINIX_MODULES]
    assert boot.kernel.read_bytes() == files["kernel"]


@pytest.mark.parametrize("scheme", ["rr", "joliet"])
def test_long_names_win_over_iso9660_names(tmp_path: Path, scheme: str) -> None:
    """The Rock Ridge (or Joliet) name is the real one even when the ISO 9660 name says otherwise."""
    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=3, rock_ridge="1.09" if scheme == "rr" else None, joliet=3 if scheme == "joliet" else None
    )

    def names(name: str, path: str) -> dict[str, Any]:
        return {"rr_name": name} if scheme == "rr" else {"joliet_path": path}

    iso.add_directory("/BOOT", **names("boot", "/boot"))
    iso.add_directory("/BOOT/MD", **names("minix_default", "/boot/minix_default"))
    iso.add_fp(io.BytesIO(b"K"), 1, "/BOOT/MD/A.;1", **names("kernel", "/boot/minix_default/kernel"))
    iso.add_fp(io.BytesIO(b"M1"), 2, "/BOOT/MD/B.;1", **names("mod01_x", "/boot/minix_default/mod01_x"))
    iso.add_fp(io.BytesIO(b"M2"), 2, "/BOOT/MD/KERNEL.;1", **names("mod02_y", "/boot/minix_default/mod02_y"))
    iso.write(str(tmp_path / "long.iso"))
    iso.close()
    boot = extract_boot(tmp_path / "long.iso", tmp_path / "boot")
    assert boot.kernel.read_bytes() == b"K"
    assert [(p.name, p.read_bytes()) for p in boot.modules] == [("mod01_x", b"M1"), ("mod02_y", b"M2")]


def test_module_count_is_not_fixed_at_12(tmp_path: Path) -> None:
    files = {"kernel": b"k", "mod01_ds": b"1", "mod02_rs": b"22", "mod03_pm": b"333"}
    boot = extract_boot(build_iso(tmp_path / "old.iso", files), tmp_path / "boot")
    assert boot.module_count == 3
    assert [p.name for p in boot.modules] == ["mod01_ds", "mod02_rs", "mod03_pm"]


def test_modules_ordered_by_number_not_by_listing(tmp_path: Path) -> None:
    """The directory lists records in ISO 9660 name order; here that is mod10 first."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09")
    iso.add_directory("/BOOT", rr_name="boot")
    iso.add_directory("/BOOT/MINIX_DEFAULT", rr_name="minix_default")
    iso.add_fp(io.BytesIO(b"K"), 1, "/BOOT/MINIX_DEFAULT/Z.;1", rr_name="kernel")
    for n in range(1, 11):
        data = f"module {n}".encode()
        iso.add_fp(
            io.BytesIO(data), len(data), f"/BOOT/MINIX_DEFAULT/{chr(ord('A') + 10 - n)}.;1", rr_name=f"mod{n:02d}_m"
        )
    iso.write(str(tmp_path / "o.iso"))
    iso.close()
    boot = extract_boot(tmp_path / "o.iso", tmp_path / "boot")
    assert [p.name for p in boot.modules] == [f"mod{n:02d}_m" for n in range(1, 11)]
    assert [p.read_bytes() for p in boot.modules] == [f"module {n}".encode() for n in range(1, 11)]


def test_second_call_reuses_dest(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "minix.iso")
    dest = tmp_path / "boot"
    first = extract_boot(iso, dest)
    stamp_before = {p.name: p.stat().st_ino for p in dest.iterdir()}
    second = extract_boot(iso, dest)
    assert second == first
    assert {p.name: p.stat().st_ino for p in dest.iterdir()} == stamp_before  # nothing rewritten
    assert leftovers(tmp_path) == []


def test_dest_from_another_iso_is_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "boot"
    old_iso = build_iso(tmp_path / "old.iso", {"kernel": b"old kernel", "mod01_ds": b"old"})
    extract_boot(old_iso, dest)
    files = minix_files()
    new_iso = build_iso(tmp_path / "new.iso", files)
    boot = extract_boot(new_iso, dest)
    assert_minix_bootset(boot, dest, files)
    assert json.loads((dest / ".extracted-from.json").read_text())["iso"] == str(new_iso.resolve())
    assert leftovers(tmp_path) == []


def test_foreign_dest_is_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "precious").write_text("keep me")
    with pytest.raises(ImageError, match=r"mine already exists and was not written by extract_boot") as exc:
        extract_boot(build_iso(tmp_path / "minix.iso"), dest)
    assert "Remove it or choose another directory" in str(exc.value)
    assert [p.name for p in dest.iterdir()] == ["precious"]


def test_incomplete_dest_of_ours_is_redone(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "minix.iso")
    dest = tmp_path / "boot"
    extract_boot(iso, dest)
    (dest / "mod05_vfs").unlink()  # damaged by hand: must not be trusted
    boot = extract_boot(iso, dest)
    assert_minix_bootset(boot, dest, minix_files())


def test_concurrent_extractions_agree(tmp_path: Path) -> None:
    """xdist workers may race to extract the same CD: all get the same complete dest, nothing is left over."""
    iso = build_iso(tmp_path / "minix.iso")
    dest = tmp_path / "cache" / "boot"  # parent does not exist yet
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: extract_boot(iso, dest), range(8)))
    assert all(r == results[0] for r in results)
    assert_minix_bootset(results[0], dest, minix_files())
    assert leftovers(dest.parent) == []


def test_two_versions_of_a_file_are_ambiguous(tmp_path: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3)
    iso.add_directory("/BOOT")
    iso.add_directory("/BOOT/MINIX_DEFAULT")
    iso.add_fp(io.BytesIO(b"old"), 3, "/BOOT/MINIX_DEFAULT/KERNEL.;1")
    iso.add_fp(io.BytesIO(b"new"), 3, "/BOOT/MINIX_DEFAULT/KERNEL.;2")
    iso.add_fp(io.BytesIO(b"m"), 1, "/BOOT/MINIX_DEFAULT/MOD01_DS.;1")
    iso.write(str(tmp_path / "v.iso"))
    iso.close()
    _fails(tmp_path / "v.iso", tmp_path / "boot", "lists kernel twice", "KERNEL.;1", "KERNEL.;2", "ambiguous")


def test_image_error_is_a_harness_error() -> None:
    assert issubclass(ImageError, HarnessError)


def _fails(iso: Path, dest: Path, *patterns: str) -> str:
    """extract_boot must fail naming the ISO, leave no dest and no temp dir beside it."""
    with pytest.raises(ImageError) as exc:
        extract_boot(iso, dest)
    message = str(exc.value)
    assert str(iso) in message
    for pattern in patterns:
        assert pattern in message, message
    assert not dest.exists()
    assert leftovers(dest.parent) == []
    assert "\n" not in message
    return message


def test_missing_boot_dir(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "x.iso", boot_dir="/boot/other")
    _fails(iso, tmp_path / "boot", "has no /boot/minix_default directory", "--minix-boot-dir")


@pytest.mark.parametrize("rock_ridge", [True, False], ids=["rr", "iso9660"])
def test_missing_kernel(tmp_path: Path, rock_ridge: bool) -> None:
    files = minix_files()
    del files["kernel"]
    iso = build_iso(tmp_path / "x.iso", files, rock_ridge=rock_ridge, joliet=False)
    message = _fails(iso, tmp_path / "boot", "has no kernel file", "mod01_ds, mod02_rs", "minix_R3.4.0rc6")
    assert "/boot/minix_default" in message


def test_no_modules(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "x.iso", {"kernel": b"k", "notes.txt": b"n"})
    _fails(iso, tmp_path / "boot", "no boot modules named modNN_*", "found: kernel, notes.txt")


def test_gap_in_module_numbers(tmp_path: Path) -> None:
    files = minix_files()
    del files["mod03_pm"], files["mod07_tty"]
    iso = build_iso(tmp_path / "x.iso", files)
    message = _fails(iso, tmp_path / "boot", "gap", "mod03, mod07")
    assert "have mod01_ds, mod02_rs, mod04_sched" in message


def test_duplicate_module_numbers(tmp_path: Path) -> None:
    files = minix_files()
    files["mod02_other"] = b"x"
    _fails(build_iso(tmp_path / "x.iso", files), tmp_path / "boot", "same number (mod02_other, mod02_rs)")


def test_empty_kernel(tmp_path: Path) -> None:
    files = minix_files()
    files["kernel"] = b""
    _fails(build_iso(tmp_path / "x.iso", files), tmp_path / "boot", "kernel is empty (0 bytes)")


def test_truncated_iso(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "x.iso")
    whole = iso.read_bytes()
    iso.write_bytes(whole[: len(whole) // 2])
    _fails(iso, tmp_path / "boot", f"is truncated: {len(whole) // 2} of {len(whole)} bytes", "re-download")


def test_file_extent_past_end(tmp_path: Path) -> None:
    """A volume size that agrees with a cut file must not hide a file that ran off the end."""
    files = {"kernel": b"k" * 10000, "mod01_ds": os.urandom(50000)}
    iso = build_iso(tmp_path / "x.iso", files)
    data = bytearray(iso.read_bytes())
    blocks = len(data) // 2048 - 10
    data[0x8000 + 80 : 0x8000 + 88] = blocks.to_bytes(4, "little") + blocks.to_bytes(4, "big")
    iso.write_bytes(bytes(data[: blocks * 2048]))
    _fails(iso, tmp_path / "boot", "truncated or corrupt", "mod01_ds")


def test_corrupt_iso_pycdlib_rejects(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "x.iso")
    data = bytearray(iso.read_bytes())
    data[0x8000 + 158 : 0x8000 + 162] = (10**6).to_bytes(4, "little")  # root extent: LE and BE now disagree
    iso.write_bytes(bytes(data))
    _fails(iso, tmp_path / "boot", "is corrupt: pycdlib cannot read it", "PyCdlibInvalidISO")


def test_bad_block_size(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "x.iso")
    data = bytearray(iso.read_bytes())
    data[0x8000 + 128 : 0x8000 + 130] = (3).to_bytes(2, "little")
    iso.write_bytes(bytes(data))
    _fails(iso, tmp_path / "boot", "blocks of 3 bytes")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (random.Random(1).randbytes(40000), "it is unrecognised data (first bytes: "),
        (bz2.compress(b"not really an iso" * 1000), "it is bz2-compressed. Decompress it first (bunzip2 -k "),
        (gzip.compress(b"x" * 100), "it is gzip-compressed. Decompress it first (gunzip -k "),
        (b"", "it is empty (0 bytes)"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", "HTML/XML page"),
    ],
    ids=["random", "bz2", "gzip", "empty", "html"],
)
def test_not_an_iso(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "minix.iso"
    path.write_bytes(content)
    message = _fails(path, tmp_path / "boot", "is not an ISO 9660 CD image (no CD001 signature at offset 0x8001)")
    assert expected in message
    assert "--minix-boot-dir" in message


def test_qcow2_given_as_iso(tmp_path: Path) -> None:
    path = tmp_path / "disk.iso"
    path.write_bytes(b"QFI\xfb" + bytes(1000))
    _fails(path, tmp_path / "boot", "is a qcow2 disk image", "not as the CD")


def test_missing_iso_and_directory_iso(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"ISO image .*nowhere\.iso does not exist\. Check the path"):
        extract_boot(tmp_path / "nowhere.iso", tmp_path / "boot")
    with pytest.raises(ImageError, match=r"is a directory, not an image file"):
        extract_boot(tmp_path, tmp_path / "boot")
    assert not (tmp_path / "boot").exists()


# ---- boot directories --------------------------------------------------------------------------


def write_boot_dir(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def test_read_boot_dir(tmp_path: Path) -> None:
    files = minix_files()
    directory = write_boot_dir(tmp_path / "bootfiles", {**files, "README": b"ignored", "kernel.old": b"ignored"})
    (directory / "mod13_dir").mkdir()  # a directory is not a module
    boot = read_boot_dir(directory)
    assert boot.kernel == directory / "kernel"
    assert [p.name for p in boot.modules] == list(MINIX_MODULES)
    assert boot.module_count == 12


def test_read_boot_dir_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_boot_dir(tmp_path / "b", {"kernel": b"k", "mod01_ds": b"1"})
    monkeypatch.chdir(tmp_path)
    boot = read_boot_dir(Path("b"))
    assert boot.kernel == tmp_path / "b" / "kernel"
    assert boot.initrd_arg() == str(tmp_path / "b" / "mod01_ds")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"mod01_ds": b"1"}, "has no kernel file (found: mod01_ds)"),
        ({"kernel": b"k", "README": b"r"}, "has a kernel but no boot modules named modNN_* (found: README, kernel)"),
        ({"kernel": b"k", "mod01_ds": b"1", "mod03_pm": b"3"}, "gap or bad start: mod02 (have mod01_ds, mod03_pm)"),
        ({"kernel": b"k", "mod00_x": b"0", "mod01_ds": b"1"}, "mod00 (numbering starts at mod01)"),
        ({"kernel": b"k", "mod02_rs": b"2"}, "gap or bad start: mod01 (have mod02_rs)"),
        ({"kernel": b"k", "mod01_a": b"1", "mod01_b": b"1"}, "same number (mod01_a, mod01_b)"),
        ({"kernel": b"k", "mod01_ds": b""}, "mod01_ds is empty (0 bytes)"),
    ],
    ids=["no-kernel", "no-modules", "gap", "mod00", "no-mod01", "duplicate", "empty-module"],
)
def test_read_boot_dir_errors(tmp_path: Path, files: dict[str, bytes], expected: str) -> None:
    directory = write_boot_dir(tmp_path / "bootfiles", files)
    with pytest.raises(ImageError) as exc:
        read_boot_dir(directory)
    message = str(exc.value)
    assert message.startswith(f"Boot directory {directory}")
    assert expected in message
    assert "Copy kernel and every modNN_* file from /boot/minix_default" in message


def test_read_boot_dir_missing_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"Boot directory .*/absent does not exist\. Create it"):
        read_boot_dir(tmp_path / "absent")
    (tmp_path / "kernel").write_bytes(b"k")
    with pytest.raises(ImageError, match=r"/kernel is not a directory\. Give the directory that holds kernel"):
        read_boot_dir(tmp_path / "kernel")


@pytest.mark.parametrize(("dirname", "what"), [("a,b", "a comma"), ("a b", "a space")])
def test_initrd_arg_rejects_what_qemu_would_split(tmp_path: Path, dirname: str, what: str) -> None:
    directory = write_boot_dir(tmp_path / dirname, {"kernel": b"k", "mod01_ds": b"1", "mod02_rs": b"2"})
    boot = read_boot_dir(directory)
    with pytest.raises(ImageError) as exc:
        boot.initrd_arg()
    message = str(exc.value)
    assert f"Boot module path {directory / 'mod01_ds'} contains {what}" in message
    assert "Move the boot files to a directory whose path has no commas or spaces" in message


# ---- image_kind -------------------------------------------------------------------------------


def mbr_disk(size: int = 4 * 512) -> bytes:
    data = bytearray(size)
    data[446] = 0x80  # one active partition entry, as MINIX's disk images have
    data[450] = 0x81  # MINIX partition type
    data[510:512] = b"\x55\xaa"
    return bytes(data)


def test_image_kind_iso(tmp_path: Path) -> None:
    assert image_kind(build_iso(tmp_path / "cd.img")) == "iso"  # the name does not matter


def test_image_kind_iso_truncated(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "cd.iso")
    whole = iso.read_bytes()
    iso.write_bytes(whole[: len(whole) - 4096])
    with pytest.raises(ImageError, match=rf"is truncated: {len(whole) - 4096} of {len(whole)} bytes"):
        image_kind(iso)


def test_image_kind_raw(tmp_path: Path) -> None:
    path = tmp_path / "disk.qcow2"  # misleading name: content decides
    path.write_bytes(mbr_disk())
    assert image_kind(path) == "raw"


def test_image_kind_raw_bad_size(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(mbr_disk() + b"x")
    with pytest.raises(ImageError, match=r"its size, 2049 bytes, is not a multiple of 512: it is truncated"):
        image_kind(path)


def test_image_kind_raw_without_mbr(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(4096))
    with pytest.raises(ImageError) as exc:
        image_kind(path)
    message = str(exc.value)
    assert f"{path} is not a usable image: it is unrecognised data (first bytes: 00 00" in message
    assert "Accepted images: an ISO 9660 CD image (the MINIX release CD), or a raw or qcow2 disk image." in message
    assert "MBR partition table" in message


@needs_qemu_img
def test_image_kind_qcow2(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"  # misleading name again
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    assert image_kind(path) == "qcow2"


@needs_qemu_img
def test_image_kind_qcow2_with_data(tmp_path: Path) -> None:
    raw = tmp_path / "src.img"
    raw.write_bytes(mbr_disk(1024 * 1024))
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(path)], check=True)
    assert image_kind(path) == "qcow2"


@needs_qemu_img
@pytest.mark.parametrize(("keep", "expected"), [(100_000, "is corrupt or truncated"), (50, "cannot be opened")])
def test_image_kind_qcow2_truncated(tmp_path: Path, keep: int, expected: str) -> None:
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ImageError) as exc:
        image_kind(path)
    message = str(exc.value)
    assert f"qcow2 image {path} {expected}" in message
    assert "qemu-img check" in message


def test_image_kind_qcow2_without_qemu_img(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "disk.qcow2"
    path.write_bytes(b"QFI\xfb" + bytes(508))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(
        ImageError, match=r"qemu-img is not installed to check it\. Install it \(apt-get install qemu-utils"
    ):
        image_kind(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (random.Random(2).randbytes(3000), "it is unrecognised data"),
        (bz2.compress(mbr_disk(8192)), "it is bz2-compressed. Decompress it first (bunzip2 -k"),
        (b"\xfd7zXZ\x00\x00\x04rest", "it is xz-compressed. Decompress it first (unxz -k"),
        (b"", "it is empty (0 bytes)"),
        (b"\n  <html><head><title>Error</title></head></html>", "HTML/XML page"),
        (b"just some notes\n", "it is a text file"),
    ],
    ids=["random", "bz2", "xz", "empty", "html", "text"],
)
def test_image_kind_rejects(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(content)
    with pytest.raises(ImageError) as exc:
        image_kind(path)
    message = str(exc.value)
    assert message.startswith(f"{path} is not a usable image: ")
    assert expected in message
    assert "Accepted images: an ISO 9660 CD image" in message


def test_image_kind_missing_or_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"Image .*/gone\.img does not exist"):
        image_kind(tmp_path / "gone.img")
    with pytest.raises(ImageError, match=r"is a directory, not an image file"):
        image_kind(tmp_path)


def test_rock_ridge_records_of_two_versions_are_read_like_makefs_cds() -> None:
    """NetBSD makefs (the MINIX release CD's tool) mixes 1.09 and 1.12 records; stock pycdlib refuses that."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibInvalidISO

    from pytest_minix.media.iso import _MixedRockRidgePyCdlib

    stock = pycdlib.PyCdlib()
    stock._set_rock_ridge("1.12")
    with pytest.raises(PyCdlibInvalidISO, match="Inconsistent Rock Ridge versions"):
        stock._set_rock_ridge("1.09")  # what `iso.open()` did on a CD made like the release CD
    mixed = _MixedRockRidgePyCdlib()
    for version in ("1.09", "1.12", "1.09", "", "1.10"):
        mixed._set_rock_ridge(version)
    assert mixed.rock_ridge == "1.12"  # the highest version seen; reading goes on
