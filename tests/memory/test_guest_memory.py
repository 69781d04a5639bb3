"""Memory suite (first cut): the guest sees the RAM QEMU gave it."""

from __future__ import annotations

import pytest

from pytest_minix import VM


def test_guest_sees_configured_ram(guest: VM) -> None:
    if guest.profile.name != "reference":
        pytest.skip(f"/proc/meminfo parsing for {guest.profile.name} arrives with the memory suite")
    text = guest.shell.run("cat /proc/meminfo").check().stdout
    fields = {k.strip(): v.split()[0] for k, v in (ln.split(":", 1) for ln in text.splitlines() if ":" in ln)}
    total_mib = int(fields["MemTotal"]) / 1024
    configured = guest.machine.spec.memory
    # The kernel reserves some RAM for itself: MemTotal is a little below -m.
    assert 0.75 * configured < total_mib <= configured
