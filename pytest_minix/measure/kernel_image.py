"""Parsers for what QEMU's monitor shows of an i386 guest: registers, IDT gates, page mappings, CPU state.

Pure functions on text and bytes, so they can be tested on captured output. The formats are
those of QEMU 7.2's i386 target (``target/i386/cpu-dump.c``, ``target/i386/monitor.c``,
``target/i386/machine.c``); nothing here runs inside the guest.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# -- info registers ---------------------------------------------------------------------------
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
EFER_SCE = 1 << 0  # SYSCALL enable: without it SYSCALL raises #UD

_SEGMENTS = ("ES", "CS", "SS", "DS", "FS", "GS", "LDT", "TR")
_SEG_LINE = re.compile(r"^(ES|CS|SS|DS|FS|GS|LDT|TR)\s*=([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)")
_TABLE_LINE = re.compile(r"^(GDT|IDT)=\s+([0-9a-f]+) ([0-9a-f]+)")
_SIMPLE = re.compile(r"\b([A-Z][A-Z0-9]*)=([0-9a-f]+)\b")
# Multi-word vector registers; their first word alone would be misleading.
_VECTOR = re.compile(r"^(FPR|XMM|YMM|ZMM|Opmask)")


def parse_registers(text: str) -> dict[str, int]:
    """The first CPU of HMP ``info registers``: ``EAX``, ``EIP``, ``CR0``..``CR4``, ``EFER``...

    Segments give ``CS`` (selector), ``CS_BASE``, ``CS_LIMIT``, ``CS_FLAGS`` (likewise ES..GS, LDT,
    TR); the descriptor tables give ``GDT_BASE``/``GDT_LIMIT`` and ``IDT_BASE``/``IDT_LIMIT``.
    """
    regs: dict[str, int] = {}
    seen_cpu = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CPU#"):
            if seen_cpu:  # ``info registers -a``: only the first CPU
                break
            seen_cpu = True
            continue
        if m := _SEG_LINE.match(line):
            name = m.group(1)
            regs[name] = int(m.group(2), 16)
            regs[f"{name}_BASE"], regs[f"{name}_LIMIT"], regs[f"{name}_FLAGS"] = (
                int(m.group(i), 16) for i in (3, 4, 5)
            )
            continue
        if m := _TABLE_LINE.match(line):
            regs[f"{m.group(1)}_BASE"], regs[f"{m.group(1)}_LIMIT"] = int(m.group(2), 16), int(m.group(3), 16)
            continue
        if _VECTOR.match(line):
            continue
        for name, value in _SIMPLE.findall(line):
            regs[name] = int(value, 16)
    return regs


def idt_location(regs: dict[str, int]) -> tuple[int, int]:
    """(base, limit) of the IDT; raises KeyError if ``info registers`` did not show it."""
    return regs["IDT_BASE"], regs["IDT_LIMIT"]


# -- IDT ----------------------------------------------------------------------------------------
GateKind = Literal["task", "interrupt16", "trap16", "interrupt", "trap", "invalid"]
GATE_KINDS: dict[int, GateKind] = {0x5: "task", 0x6: "interrupt16", 0x7: "trap16", 0xE: "interrupt", 0xF: "trap"}


@dataclass(frozen=True)
class Gate:
    """One 8-byte i386 IDT descriptor. ``offset`` is meaningless for a task gate (it names a TSS)."""

    vector: int
    offset: int
    selector: int
    kind: GateKind
    dpl: int
    present: bool

    def describe(self) -> str:
        return f"0x{self.vector:02x} {self.kind} DPL{self.dpl} {self.selector:04x}:{self.offset:08x}"


def decode_idt(raw: bytes) -> list[Gate]:
    """Decode every whole 8-byte descriptor of ``raw`` (the IDT's bytes, limit + 1 long)."""
    gates = []
    for vector in range(len(raw) // 8):
        lo, selector, _zero, attr, hi = struct.unpack_from("<HHBBH", raw, vector * 8)
        # Bit 4 (S) must be 0 for a system descriptor; anything else cannot be a gate.
        kind: GateKind = GATE_KINDS.get(attr & 0x1F, "invalid")
        gates.append(Gate(vector, lo | hi << 16, selector, kind, (attr >> 5) & 3, bool(attr & 0x80)))
    return gates


def user_vectors(gates: list[Gate]) -> list[Gate]:
    """Present, valid gates with DPL 3: the vectors user mode may raise with ``INT n``."""
    return [g for g in gates if g.present and g.kind != "invalid" and g.dpl == 3]


_X_LINE = re.compile(r"^([0-9a-f]+):((?:\s+0x[0-9a-f]{8})+)\s*$")


def parse_hmp_words(text: str) -> tuple[int, bytes]:
    """HMP ``x /Nxw ADDR`` output as (first address, little-endian bytes); raises ValueError on a gap."""
    start: int | None = None
    out = bytearray()
    for line in text.splitlines():
        m = _X_LINE.match(line.strip())
        if not m:
            continue
        addr = int(m.group(1), 16)
        if start is None:
            start = addr
        elif addr != start + len(out):
            raise ValueError(f"x output jumps to 0x{addr:x}, expected 0x{start + len(out):x}")
        for word in m.group(2).split():
            out += struct.pack("<I", int(word, 16))
    if start is None:
        raise ValueError(f"no memory dump lines in {text[:80]!r}")
    return start, bytes(out)


# -- info mem / info tlb --------------------------------------------------------------------------
_MEM_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) ([0-9a-f]+) ([u-])r([w-])$")
_TLB_LINE = re.compile(r"^([0-9a-f]+): ([0-9a-f]+) ([A-Z-]{9})$")


@dataclass(frozen=True)
class Mapping:
    """A run of virtual pages with equal protection, as ``info mem`` prints it."""

    start: int
    end: int
    user: bool
    write: bool

    def describe(self) -> str:
        return f"{self.start:08x}-{self.end:08x} {'u' if self.user else '-'}r{'w' if self.write else '-'}"


def parse_info_mem(text: str) -> list[Mapping]:
    """HMP ``info mem`` (i386: ``start-end size [u-]r[w-]``; 8 or 16 hex digits)."""
    out = []
    for line in text.splitlines():
        m = _MEM_LINE.match(line.strip())
        if m:
            out.append(Mapping(int(m.group(1), 16), int(m.group(2), 16), m.group(4) == "u", m.group(5) == "w"))
    return out


def kernel_vbase(mappings: list[Mapping]) -> int | None:
    """Start of the lowest supervisor-only mapping, or None if every mapping is user-accessible.

    On a higher-half kernel all user mappings lie below the kernel, so this is where the
    kernel's part of the address space begins; user-accessible pages the kernel maps above it
    (MINIX's pages shared with processes) do not move it.
    """
    sup = [m.start for m in mappings if not m.user]
    return min(sup) if sup else None


@dataclass(frozen=True)
class TlbEntry:
    """One ``info tlb`` line: a present leaf entry of the page tables of the current CR3.

    ``flags`` is QEMU's ``XGPDACTUW``; ``P`` (PS bit) appears only on large-page directory
    entries: QEMU masks it off 4 KiB entries, where that bit is PAT.
    """

    vaddr: int
    paddr: int
    flags: str

    @property
    def large(self) -> bool:
        return self.flags[2] == "P"

    @property
    def user(self) -> bool:
        return self.flags[7] == "U"


def parse_info_tlb(text: str) -> list[TlbEntry]:
    """HMP ``info tlb`` (i386): ``vaddr: paddr XGPDACTUW`` per present page."""
    out = []
    for line in text.splitlines():
        m = _TLB_LINE.match(line.strip())
        if m:
            out.append(TlbEntry(int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    return out


# -- CPU state from the device-state stream --------------------------------------------------------
@dataclass(frozen=True)
class CpuState:
    """Fields of QEMU's ``cpu`` vmstate section (``target/i386/machine.c``), up to CR4.

    It carries the SYSENTER MSRs, which no monitor command of QEMU 7.2 shows. STAR (SYSCALL)
    is only in the x86_64 target's stream.
    """

    instance: int
    word: int  # target_ulong size: 4 for qemu-system-i386, 8 for qemu-system-x86_64
    regs: tuple[int, ...]  # EAX ECX EDX EBX ESP EBP ESI EDI (QEMU's order)
    eip: int
    eflags: int
    segs: dict[str, tuple[int, int, int, int]]  # name -> (selector, base, limit, flags)
    sysenter_cs: int
    sysenter_esp: int
    sysenter_eip: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int


_QEVM = b"QEVM"
_SECTION_FULL = 0x04
_CPU_VERSION = 12  # vmstate_x86_cpu.version_id in QEMU 7.2's source


def parse_cpu_states(stream: bytes, word: int) -> list[CpuState]:
    """Every ``cpu`` section of a QEMU device-state stream (``xen-save-devices-state``), read with
    target_ulong size ``word``; check the result against ``info registers`` (:func:`cpu_state_mismatches`),
    since the layout is fixed by QEMU's source, not described in the stream."""
    if not stream.startswith(_QEVM):
        raise ValueError(f"not a QEMU state stream (starts {stream[:8]!r})")
    tl = ">I" if word == 4 else ">Q"
    out = []
    # Section header: type (1) section_id (4) idstr_len (1) idstr instance_id (4) version_id (4).
    for m in re.finditer(rb"\x03cpu", stream):
        pos = m.start()
        if pos < 5 or stream[pos - 5] != _SECTION_FULL or len(stream) < m.end() + 8:
            continue
        instance, version = struct.unpack_from(">II", stream, m.end())
        if instance > 0xFFFF:  # not a section header: the bytes merely look like one
            continue
        if version != _CPU_VERSION:
            raise ValueError(f"cpu section version {version}, this parser knows {_CPU_VERSION}")
        p = m.end() + 8

        def take(fmt: str) -> int:
            nonlocal p
            (v,) = struct.unpack_from(fmt, stream, p)
            p += struct.calcsize(fmt)
            return int(v)

        try:
            regs = tuple(take(tl) for _ in range(8))
            eip, eflags = take(tl), take(tl)
            take(">I")  # hflags
            p += 4 * 2 + 8 * (8 + 2)  # fpuc, fpus, fptag, fpregs_format; 8 x87 registers (mantissa, exponent)
            segs = {}
            for name in (*_SEGMENTS[:6], "LDT", "TR", "GDT", "IDT"):
                selector, base, limit, flags = take(">I"), take(tl), take(">I"), take(">I")
                segs[name] = (selector, base, limit, flags)
            sysenter = take(">I"), take(tl), take(tl)
            cr0, cr2, cr3, cr4 = (take(tl) for _ in range(4))
        except struct.error as e:
            raise ValueError(f"cpu section at byte {pos} is cut short: {e}") from None
        out.append(CpuState(instance, word, regs, eip, eflags, segs, *sysenter, cr0, cr2, cr3, cr4))
    return out


_QEMU_REG_ORDER = ("EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI")


def cpu_state_mismatches(state: CpuState, regs: dict[str, int]) -> list[str]:
    """Where ``state`` disagrees with ``info registers`` taken while the VM was stopped for the save.

    The SYSENTER fields sit between the IDT and CR0 in the stream, so agreement on the registers
    before and after them shows the offsets are right."""
    want: dict[str, int] = {
        "EIP": state.eip,
        "EFL": state.eflags,
        "CR0": state.cr0,
        "CR2": state.cr2,
        "CR3": state.cr3,
        "CR4": state.cr4,
    }
    want.update(zip(_QEMU_REG_ORDER, state.regs, strict=True))
    for name in ("CS", "SS", "DS", "TR"):
        want[name], want[f"{name}_BASE"], want[f"{name}_LIMIT"] = state.segs[name][:3]
    for name in ("GDT", "IDT"):
        want[f"{name}_BASE"], want[f"{name}_LIMIT"] = state.segs[name][1:3]
    return [
        f"{k}: stream 0x{v:x}, info registers " + (f"0x{regs[k]:x}" if k in regs else "absent")
        for k, v in want.items()
        if regs.get(k) != v
    ]


__all__ = [
    "CR4_PAE",
    "CR4_PSE",
    "EFER_SCE",
    "GATE_KINDS",
    "CpuState",
    "Gate",
    "Mapping",
    "TlbEntry",
    "cpu_state_mismatches",
    "decode_idt",
    "idt_location",
    "kernel_vbase",
    "parse_cpu_states",
    "parse_hmp_words",
    "parse_info_mem",
    "parse_info_tlb",
    "parse_registers",
    "user_vectors",
]


# -- the kernel's boot image table ----------------------------------------------------------
# struct boot_image (minix/include/minix/type.h): int proc_nr; char proc_name[PROC_NAME_LEN = 16];
# endpoint_t endpoint; phys_bytes start_addr, len: 32 bytes on i386.
BOOT_IMAGE_ENTRY = struct.Struct("<i16siII")


@dataclass(frozen=True)
class BootProc:
    """One entry of the kernel's boot image table as kmain left it."""

    proc_nr: int
    name: str
    endpoint: int
    start_addr: int
    length: int

    @property
    def kernel_task(self) -> bool:
        return self.proc_nr < 0  # ASYNCM, IDLE, CLOCK, SYSTEM, HARDWARE are negative (minix/com.h)


def kernel_symbol(path: Path, name: str) -> tuple[int, int] | None:
    """(address, size) of ``name`` in the ELF's symbol table (pyelftools), or None without one."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if isinstance(sec, SymbolTableSection):
                for sym in sec.get_symbol_by_name(name) or []:
                    if int(sym["st_size"]) > 0:
                        return int(sym["st_value"]), int(sym["st_size"])
    return None


def decode_boot_image(raw: bytes) -> list[BootProc]:
    """The entries of ``image[]`` (minix/kernel/table.c) from its bytes in the running kernel."""
    if len(raw) % BOOT_IMAGE_ENTRY.size:
        raise ValueError(f"{len(raw)} bytes is not a whole number of {BOOT_IMAGE_ENTRY.size}-byte boot_image entries")
    out = []
    for proc_nr, name, endpoint, start, length in BOOT_IMAGE_ENTRY.iter_unpack(raw):
        out.append(BootProc(proc_nr, name.split(b"\0", 1)[0].decode("ascii", "replace"), endpoint, start, length))
    return out
