"""Boot suite (first cut): the boot timeline of the selected guest, per arch.

The claims engine (claims/*.toml, verdicts, report) builds on this; for now each
boot's milestones are checked for order and recorded as JUnit properties. They read a real
boot (``booted_guest``), also when the shared VM started from the boot cache.
"""

from __future__ import annotations

import pytest

from pytest_minix import VM


def test_boot_reaches_shell_with_ordered_milestones(booted_guest: VM, record_property: pytest.RecordProperty) -> None:
    guest = booted_guest
    tl = guest.timeline
    names = [m.name for m in tl.milestones]
    assert "login" in names and "shell" in names, names
    times = [m.t for m in tl.milestones]
    assert times == sorted(times)
    assert names.index("login") < names.index("shell")
    for m in tl.milestones:
        record_property(f"boot.{guest.arch}.{m.name}_s", round(m.t, 4))
    record_property(f"boot.{guest.arch}.accel", guest.accel)


def test_every_profile_marker_was_seen(booted_guest: VM) -> None:
    guest = booted_guest
    seen = {m.name for m in guest.timeline.milestones}
    missing = [m.name for m in guest.profile.markers if m.name not in seen]
    assert not missing, f"markers never seen on the console: {missing} (log: {guest.log_path})"
