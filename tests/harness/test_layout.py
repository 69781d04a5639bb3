"""Kernel-layout parsers on real monitor output of the reference guest, and the layout metrics on a live boot.

The fixtures (tests/fixtures/reference/, see its README) were captured from the i386 reference
guest under QEMU 7.2; the live tests read the same things from a fresh boot. The whitepaper's
claims are about MINIX, so here the metrics' values on Linux are asserted, not verdicts.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minix.guest.pool import HarnessConfig, VMPool
from pytest_minix.guest.vm import VM
from pytest_minix.measure import layout as metrics_layout
from pytest_minix.measure.kernel_image import (
    CR4_PAE,
    CR4_PSE,
    Mapping,
    cpu_state_mismatches,
    decode_idt,
    idt_location,
    kernel_vbase,
    parse_cpu_states,
    parse_hmp_words,
    parse_info_mem,
    parse_info_tlb,
    parse_registers,
    user_vectors,
)
from pytest_minix.measure.registry import METRICS, MetricContext

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reference"
LAYOUT_METRICS = [
    "syscall.user_vectors",
    "syscall.int80_user_gate",
    "syscall.fast_paths_unused",
    "mem.kernel_vbase",
    "mem.pse_unused",
]


def text(name: str) -> str:
    return (FIX / name).read_text()


def hexbytes(name: str) -> bytes:
    return bytes.fromhex(text(name))


REGS = parse_registers(text("i386-info-registers.txt"))


# -- parsers on the captured output ---------------------------------------------------------------
def test_registers_of_the_real_dump() -> None:
    assert idt_location(REGS) == (0xFF400000, 0x7FF)
    assert (REGS["GDT_BASE"], REGS["GDT_LIMIT"]) == (0xFF401000, 0xFF)
    assert REGS["CR0"] == 0x80050033 and REGS["CR4"] == 0x690 and REGS["EFER"] == 0
    assert REGS["CS"] == 0x60 and REGS["CS_FLAGS"] == 0x00CF9A00 and REGS["TR_BASE"] == 0xFF406000
    assert REGS["CR4"] & CR4_PSE and not REGS["CR4"] & CR4_PAE  # Debian's 686 kernel: PSE on, no PAE
    assert "XMM00" not in REGS and "FPR0" not in REGS  # multi-word registers are left out


def test_registers_take_the_first_cpu_of_info_registers_all() -> None:
    one = text("i386-info-registers.txt")
    two = one + one.replace("CPU#0", "CPU#1").replace("CR4=00000690", "CR4=00000000")
    assert parse_registers(two)["CR4"] == 0x690


def test_idt_of_the_real_kernel() -> None:
    gates = decode_idt(hexbytes("i386-idt.hex"))
    assert len(gates) == 256 and all(g.present for g in gates)
    users = user_vectors(gates)
    # Linux 6.1 i386 (arch/x86/kernel/idt.c): int3, into and INT 0x80 are system gates.
    assert [(g.vector, g.kind, g.dpl, g.selector) for g in users] == [
        (0x03, "interrupt", 3, 0x60),
        (0x04, "interrupt", 3, 0x60),
        (0x80, "interrupt", 3, 0x60),
    ]
    df = gates[8]  # the double fault goes through a task gate to its own TSS
    assert (df.kind, df.selector, df.dpl) == ("task", 0xF8, 0)
    assert sum(g.kind == "interrupt" and g.dpl == 0 for g in gates) == 252


def test_hmp_x_dump_equals_the_memsave_bytes() -> None:
    start, raw = parse_hmp_words(text("i386-idt-x.txt"))
    assert start == 0xFF400000 and raw == hexbytes("i386-idt.hex")
    with pytest.raises(ValueError, match="jumps"):
        parse_hmp_words("ff400000: 0x00000001\nff400010: 0x00000002\n")


def test_gate_kinds_and_flags() -> None:
    def gate(attr: int, offset: int = 0x12345678, sel: int = 0x8) -> bytes:
        return struct.pack("<HHBBH", offset & 0xFFFF, sel, 0, attr, offset >> 16)

    raw = gate(0xEF) + gate(0x8E) + gate(0x66) + gate(0x0E) + gate(0xE5) + gate(0x9E) + b"\x00" * 5
    gates = decode_idt(raw)
    assert [(g.kind, g.dpl, g.present) for g in gates] == [
        ("trap", 3, True),
        ("interrupt", 0, True),
        ("interrupt16", 3, False),
        ("interrupt", 0, False),
        ("task", 3, True),
        ("invalid", 0, True),
    ]
    assert gates[0].offset == 0x12345678 and gates[0].selector == 0x8
    assert [g.vector for g in user_vectors(gates)] == [0, 4]  # not-present and invalid gates are not callable


def test_info_mem_of_the_real_guest() -> None:
    maps = parse_info_mem(text("i386-info-mem.txt"))
    assert len(maps) == 149
    assert maps[0] == Mapping(0x08048000, 0x08059000, user=True, write=False)  # busybox's text
    assert kernel_vbase(maps) == 0xC0000000
    assert max(m.end for m in maps if m.user) == 0xBF874000 <= 0xC0000000  # the shell's stack, below the split
    assert all(not m.user for m in maps if m.start >= 0xC0000000)


def test_kernel_vbase_rule() -> None:
    minix_like = [
        Mapping(0x1000, 0x80000, True, True),
        Mapping(0xEFFF0000, 0xF0000000, True, True),
        Mapping(0xF0400000, 0xF0800000, False, True),
        Mapping(0xF1000000, 0xF1001000, True, False),
        Mapping(0xF1400000, 0xF1401000, False, True),
    ]
    assert kernel_vbase(minix_like) == 0xF0400000  # a user page above the kernel does not move it
    assert kernel_vbase([Mapping(0x1000, 0x2000, True, True)]) is None


def test_info_tlb_of_the_real_guest() -> None:
    head = parse_info_tlb(text("i386-info-tlb-head.txt"))
    assert len(head) == 40 and all(e.user and not e.large for e in head)
    assert head[0].vaddr == 0x08048000 and head[0].flags == "----A--U-"
    excerpt = parse_info_tlb(text("i386-info-tlb-excerpt.txt"))
    large = [e for e in excerpt if e.large]
    assert [(e.vaddr, e.paddr) for e in large] == [
        (0xC0400000, 0x400000),
        (0xC0800000, 0x800000),
        (0xC0C00000, 0xC00000),
    ]
    assert all(e.flags == "-GPDA---W" for e in large)
    assert not any(e.user for e in excerpt)


def test_cpu_state_stream_of_the_real_guest() -> None:
    stream = hexbytes("i386-devices-state.hex")
    (cpu,) = parse_cpu_states(stream, 4)
    assert cpu_state_mismatches(cpu, REGS) == []  # every register agrees with info registers at that instant
    # Linux's enable_sep_cpu(): __KERNEL_CS, the entry stack in the cpu_entry_area, entry_SYSENTER_32.
    assert cpu.sysenter_cs == 0x60 and cpu.sysenter_esp == 0xFF404000
    assert cpu.sysenter_eip == 0xCA91A010  # KASLR put the text near 0xca9...; INT 0x80's gate is beside it
    assert 0 < decode_idt(hexbytes("i386-idt.hex"))[0x80].offset - cpu.sysenter_eip < 0x1000
    wide = parse_cpu_states(stream, 8)  # the x86_64 target's layout must not pass the check
    assert not wide or cpu_state_mismatches(wide[0], REGS)


def test_cpu_state_check_catches_a_wrong_layout() -> None:
    stream = bytearray(hexbytes("i386-devices-state.hex"))
    at = stream.find(b"\x03cpu") + 4 + 8 + 4 * 8  # EIP, just after the eight general registers
    stream[at : at + 4] = b"\xde\xad\xbe\xef"
    (cpu,) = parse_cpu_states(bytes(stream), 4)
    assert cpu_state_mismatches(cpu, REGS) == ["EIP: stream 0xdeadbeef, info registers 0xca917b83"]
    with pytest.raises(ValueError, match="not a QEMU state stream"):
        parse_cpu_states(b"NOPE" + bytes(stream[4:]), 4)
    bumped = bytes(stream).replace(
        b"\x03cpu\x00\x00\x00\x00\x00\x00\x00\x0c", b"\x03cpu\x00\x00\x00\x00\x00\x00\x00\x0d"
    )
    with pytest.raises(ValueError, match="version 13"):
        parse_cpu_states(bumped, 4)
    with pytest.raises(ValueError, match="cut short"):
        parse_cpu_states(bytes(stream[: stream.find(b"\x03cpu") + 40]), 4)


# -- metrics without a VM ----------------------------------------------------------------------------
@pytest.fixture
def arm_ctx(tmp_path: Path) -> Iterator[MetricContext]:
    pool = VMPool(HarnessConfig(guest="reference", accel="tcg", log_dir=tmp_path))  # never boots
    yield MetricContext(pool, "arm")
    pool.close()


def test_layout_metrics_are_registered() -> None:
    for mid in LAYOUT_METRICS:
        assert METRICS[mid].method.__module__ == metrics_layout.__name__, mid


@pytest.mark.parametrize("mid", LAYOUT_METRICS)
def test_layout_metrics_are_i386_only(mid: str, arm_ctx: MetricContext) -> None:
    m = METRICS[mid].measure(arm_ctx)
    assert m.samples == [] and str(m.unmeasurable).startswith("i386 only: ") and "ARM" in str(m.unmeasurable)


# -- the metrics on a live reference guest ---------------------------------------------------------
@pytest.fixture
def i386_only(request: pytest.FixtureRequest) -> None:
    """Skip before ``guest`` boots anything: listed first, it is set up first."""
    if request.node.callspec.params.get("guest") != "i386":
        pytest.skip("i386 only: ARM has no IDT, SYSENTER or x86 page tables (see test_layout_metrics_are_i386_only)")


@pytest.fixture
def ctx(guest: VM, vm_pool: VMPool) -> MetricContext:
    if guest.profile.name != "reference":
        pytest.skip("the asserted values are the Linux reference guest's")
    return MetricContext(vm_pool, guest.arch)


def test_live_idt(i386_only: None, guest: VM, ctx: MetricContext) -> None:
    m = METRICS["syscall.user_vectors"].measure(ctx)
    assert m.samples == [3.0] and [v["vector"] for v in m.extra["user_vectors"]] == [0x03, 0x04, 0x80]
    assert m.extra["read_with"] == "QMP memsave" and m.extra["idt_base"] == "0xff400000"
    assert "0x03 (interrupt), 0x04 (interrupt), 0x80 (interrupt)" in m.note
    flag = METRICS["syscall.int80_user_gate"].measure(ctx)
    assert flag.samples == [1.0] and flag.note.startswith("vector 0x80: 0x80 interrupt DPL3 0060:")
    assert metrics_layout.read_virtual(guest, 0xFF400000, 2048)[1] == "QMP memsave"


def test_live_fast_paths(i386_only: None, guest: VM, ctx: MetricContext) -> None:
    m = METRICS["syscall.fast_paths_unused"].measure(ctx)
    # Linux sets up SYSENTER when the CPU offers SEP (qemu32 does); qemu32 offers no SYSCALL.
    assert m.samples == [0.0] and m.inconclusive is None and m.unmeasurable is None
    assert m.extra["sysenter_cs"] == "0x60" and m.extra["sysenter_esp"] == "0xff404000"
    assert m.extra["efer"] == "0x0" and m.extra["cpu_state_words"] == 4
    assert m.extra["cpu"]["model"] == "qemu32" and m.extra["cpu"]["sep"] is True and m.extra["cpu"]["syscall"] is False
    assert m.extra["guest_cpuinfo_flags"] == ["sep"]  # the guest kernel sees the same CPUID
    assert m.note.startswith("SYSENTER_CS=0x60 (EIP 0x") and "qemu32 offers SEP=yes, SYSCALL=no" in m.note
    # The stop/save/cont left the shared guest running and usable.
    assert guest.qmp.execute("query-status")["running"] is True
    assert guest.shell.run("echo still here").check().stdout.strip() == "still here"


def test_live_kernel_vbase_and_pse(i386_only: None, guest: VM, ctx: MetricContext) -> None:
    base = METRICS["mem.kernel_vbase"].measure(ctx)
    assert base.samples == [float(0xC0000000)] and base.extra["user_above"] == []
    assert base.note.endswith("lie below it, 0 above") and base.extra["highest_user_end_below"] is not None
    pse = METRICS["mem.pse_unused"].measure(ctx)
    # Debian's 686 kernel maps low memory with 4 MiB pages: PSE is on and used.
    assert pse.samples == [0.0] and pse.inconclusive is None
    assert pse.extra["pse"] is True and pse.extra["pae"] is False and pse.extra["large_pages"] > 40
    assert pse.extra["large_first"][0] == "c0400000 -> 00400000 -GPDA---W"
