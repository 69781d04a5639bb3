"""Metrics of the running kernel's layout (i386): IDT gates, SYSENTER/SYSCALL set-up, kernel base, PSE.

Everything is read through QEMU's monitor from the shared guest (idle at its shell prompt),
never from inside the guest: registers (``info registers``), the IDT's bytes (QMP ``memsave``),
page mappings (``info mem``, ``info tlb``) and the SYSENTER MSRs from QEMU's own device-state
stream (``xen-save-devices-state``). The parsers are in :mod:`pytest_minix.measure.kernel_image`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError

from pytest_minix.errors import HarnessError
from pytest_minix.guest.vm import VM
from pytest_minix.measure.boot import count_boot_image_processes
from pytest_minix.measure.kernel_image import (
    CR4_PAE,
    CR4_PSE,
    EFER_SCE,
    CpuState,
    Gate,
    Mapping,
    cpu_state_mismatches,
    decode_boot_image,
    decode_idt,
    idt_location,
    kernel_symbol,
    kernel_vbase,
    parse_cpu_states,
    parse_hmp_words,
    parse_info_mem,
    parse_info_tlb,
    parse_registers,
    user_vectors,
)
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import Metric, MetricContext, metric

CR0_PG = 1 << 31
_NOT_I386 = (
    "i386 only: {what}; on ARM there is no IDT or x86 paging, and QEMU 7.2's monitor has no "
    "'info mem'/'info tlb' for ARM guests"
)


def read_registers(vm: VM) -> dict[str, int]:
    """CPU 0's registers from HMP ``info registers``."""
    return parse_registers(vm.qmp.hmp("info registers"))


def read_virtual(vm: VM, addr: int, size: int) -> tuple[bytes, str]:
    """``size`` bytes at guest-virtual ``addr`` (through CPU 0's current page tables) and how they were read."""
    with tempfile.TemporaryDirectory(prefix="pytest-minix-mem-") as d:
        path = Path(d) / "mem.bin"
        try:
            vm.qmp.execute("memsave", {"val": addr, "size": size, "filename": str(path), "cpu-index": 0})
            return path.read_bytes(), "QMP memsave"
        except (QMPError, OSError):
            pass  # e.g. QEMU cannot write into the host's temp dir: fall back to the monitor's text dump
    start, raw = parse_hmp_words(vm.qmp.hmp(f"x /{(size + 3) // 4}xw 0x{addr:x}"))
    if start != addr or len(raw) < size:
        raise HarnessError(f"HMP x returned {len(raw)} bytes from 0x{start:x}, wanted {size} from 0x{addr:x}")
    return raw[:size], "HMP x"


def read_idt(vm: VM) -> tuple[list[Gate], dict[str, Any]]:
    """The IDT at IDTR, decoded, with where it was read."""
    regs = read_registers(vm)
    base, limit = idt_location(regs)
    raw, how = read_virtual(vm, base, limit + 1)
    return decode_idt(raw), {"idt_base": f"0x{base:08x}", "idt_limit": f"0x{limit:x}", "read_with": how}


def _gate_list(gates: list[Gate]) -> list[dict[str, Any]]:
    return [
        {
            "vector": g.vector,
            "hex": f"0x{g.vector:02x}",
            "kind": g.kind,
            "selector": f"0x{g.selector:04x}",
            "offset": f"0x{g.offset:08x}",
        }
        for g in gates
    ]


@metric("syscall.user_vectors", "count", "count", "IDT gates user mode may raise with INT n (present, DPL 3)")
def syscall_user_vectors(ctx: MetricContext, m: Metric) -> Measurement:
    if ctx.arch != "i386":
        return m.unmeasurable(ctx, _NOT_I386.format(what="IDT gates exist on x86 only"))
    vm = ctx.guest()
    gates, where = read_idt(vm)
    users = user_vectors(gates)
    listing = ", ".join(f"0x{g.vector:02x} ({g.kind})" for g in users) or "none"
    return m.measurement(
        [float(len(users))],
        ctx.conditions(vm),
        note=f"present DPL-3 gates of the IDT at IDTR of CPU 0, read from guest memory: {listing}",
        extra={**where, "user_vectors": _gate_list(users), "present_gates": sum(g.present for g in gates)},
    )


@metric("syscall.int80_user_gate", "flag", "flag", "IDT vector 0x80 is present with DPL 3 (INT 0x80 callable)")
def syscall_int80_user_gate(ctx: MetricContext, m: Metric) -> Measurement:
    if ctx.arch != "i386":
        return m.unmeasurable(ctx, _NOT_I386.format(what="INT 0x80 is an x86 instruction"))
    vm = ctx.guest()
    gates, where = read_idt(vm)
    users = user_vectors(gates)
    yes = any(g.vector == 0x80 for g in users)
    g80 = next((g for g in gates if g.vector == 0x80), None)
    return m.measurement(
        [1.0 if yes else 0.0],
        ctx.conditions(vm),
        note="vector 0x80: "
        + (g80.describe() + (" present" if g80.present else " not present") if g80 else "beyond the IDT limit")
        + "; user vectors: "
        + (", ".join(f"0x{g.vector:02x}" for g in users) or "none"),
        extra={**where, "user_vectors": _gate_list(users)},
    )


# -- SYSENTER / SYSCALL -------------------------------------------------------------------------
def _cpu_features(vm: VM) -> dict[str, Any]:
    """CPU 0's QOM model type and the CPUID features SEP and SYSCALL it offers the guest."""
    path = vm.qmp.execute("query-cpus-fast")[0]["qom-path"]
    out: dict[str, Any] = {"qom_path": path, "configured_cpu": vm.machine.spec.config.cpu or "(machine default)"}
    for prop in ("type", "sep", "syscall"):
        out[prop] = vm.qmp.execute("qom-get", {"path": path, "property": prop})
    out["model"] = str(out["type"]).removesuffix("-i386-cpu").removesuffix("-x86_64-cpu")
    return out


def read_cpu_state(vm: VM) -> tuple[CpuState, dict[str, int]]:
    """CPU 0's vmstate (with the SYSENTER MSRs) and ``info registers``, both taken while the VM is stopped.

    ``xen-save-devices-state`` writes every device's state except RAM (a few KiB) and resumes
    the VM itself; stopping first makes ``info registers`` describe the same instant, which is
    how the fixed stream layout is checked. The pause lasts milliseconds of host time.
    """
    running = bool(vm.qmp.execute("query-status")["running"])
    with tempfile.TemporaryDirectory(prefix="pytest-minix-state-") as d:
        path = Path(d) / "devices.bin"
        if running:
            vm.qmp.execute("stop")
        try:
            regs = read_registers(vm)
            # live=false: QEMU must not hand the disk images over to a migration target.
            vm.qmp.execute("xen-save-devices-state", {"filename": str(path), "live": False})
        finally:
            if running and not vm.qmp.execute("query-status")["running"]:
                vm.qmp.execute("cont")
        stream = path.read_bytes()
    tried = []
    for word in (4, 8):  # target_ulong of qemu-system-i386, then of qemu-system-x86_64
        states = [s for s in parse_cpu_states(stream, word) if s.instance == 0]
        if states and not (bad := cpu_state_mismatches(states[0], regs)):
            return states[0], regs
        tried.append(f"{word}-byte words: " + ("no cpu section" if not states else "; ".join(bad[:3])))
    raise HarnessError(
        "QEMU's cpu state did not match info registers taken at the same instant (" + " | ".join(tried) + ")"
    )


def _cpuinfo_flags(vm: VM) -> list[str] | str:
    """The guest kernel's own view of the CPU flags (cross-check only; the decision uses QEMU's)."""
    try:
        text = vm.shell.run("cat /proc/cpuinfo", timeout=30).stdout
    except HarnessError as e:
        return f"not read: {e}"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return [f for f in value.split() if f in ("sep", "syscall")]
    return "no flags line in /proc/cpuinfo"


@metric(
    "syscall.fast_paths_unused",
    "flag",
    "flag",
    "SYSENTER_CS and EFER.SCE left unset by the running kernel (read from QEMU's CPU state)",
)
def syscall_fast_paths_unused(ctx: MetricContext, m: Metric) -> Measurement:
    if ctx.arch != "i386":
        return m.unmeasurable(ctx, _NOT_I386.format(what="SYSENTER and SYSCALL are x86 instructions"))
    vm = ctx.guest()
    feats = _cpu_features(vm)
    try:
        state, regs = read_cpu_state(vm)
    except (HarnessError, QMPError, ValueError) as e:
        return m.unmeasurable(
            ctx,
            f"the SYSENTER MSRs could not be read: QEMU 7.2's monitor does not "
            f"show them and its device-state stream gave no usable cpu section ({e})",
        )
    # SYSENTER raises #GP while IA32_SYSENTER_CS[15:2] is 0; SYSCALL raises #UD while EFER.SCE is 0.
    # So both unset means neither instruction can enter this kernel.
    sysenter_on = (state.sysenter_cs & 0xFFFC) != 0
    efer = regs.get("EFER", 0)
    syscall_on = bool(efer & EFER_SCE)
    extra: dict[str, Any] = {
        "cpu": feats,
        "cpu_state_words": state.word,
        "sysenter_cs": f"0x{state.sysenter_cs:x}",
        "sysenter_esp": f"0x{state.sysenter_esp:x}",
        "sysenter_eip": f"0x{state.sysenter_eip:x}",
        "efer": f"0x{efer:x}",
        "guest_cpuinfo_flags": _cpuinfo_flags(vm),
        "star": "not readable: QEMU keeps STAR in the x86_64 target's state stream only; EFER.SCE decides SYSCALL",
    }
    offered = (
        f"{feats['model']} offers SEP={'yes' if feats['sep'] else 'no'}, SYSCALL={'yes' if feats['syscall'] else 'no'}"
    )
    seen = f"SYSENTER_CS=0x{state.sysenter_cs:x} (EIP 0x{state.sysenter_eip:08x}), EFER.SCE={int(syscall_on)}"
    note = f"{seen}; {offered}; read from QEMU's CPU state (xen-save-devices-state), checked against info registers"
    value = 0.0 if sysenter_on or syscall_on else 1.0
    inconclusive = None
    if value == 1.0 and not feats["sep"] and not feats["syscall"]:
        inconclusive = (
            f"the CPU model {feats['model']} offers neither SEP nor SYSCALL, so the kernel could not "
            "have set up either; run with a -cpu that offers them"
        )
    elif value == 1.0 and not (feats["sep"] and feats["syscall"]):
        note += "; only the offered instruction was the kernel's choice"
    return m.measurement([value], ctx.conditions(vm), note=note, inconclusive=inconclusive, extra=extra)


# -- paging -------------------------------------------------------------------------------------
def _paging(ctx: MetricContext, m: Metric, why_x86: str) -> tuple[VM, dict[str, int]] | Measurement:
    """The VM and its registers when page tables can be read (i386, paging on), else the unmeasurable answer."""
    if ctx.arch != "i386":
        return m.unmeasurable(ctx, _NOT_I386.format(what=why_x86))
    vm = ctx.guest()
    regs = read_registers(vm)
    if not regs.get("CR0", 0) & CR0_PG:
        return m.unmeasurable(ctx, f"paging is off (CR0=0x{regs.get('CR0', 0):08x})")
    return vm, regs


@metric("mem.kernel_vbase", "address", "address", "lowest supervisor-only virtual mapping (info mem)")
def mem_kernel_vbase(ctx: MetricContext, m: Metric) -> Measurement:
    got = _paging(ctx, m, "the page tables are read with info mem")
    if isinstance(got, Measurement):
        return got
    vm, regs = got
    maps = parse_info_mem(vm.qmp.hmp("info mem"))
    base = kernel_vbase(maps)
    if base is None:
        return m.unmeasurable(
            ctx,
            f"info mem showed {len(maps)} mappings at CR3=0x{regs['CR3']:x}, none of them supervisor-only",
        )
    below = [mp for mp in maps if mp.user and mp.end <= base]
    above = [mp for mp in maps if mp.user and mp.start >= base]
    return m.measurement(
        [float(base)],
        ctx.conditions(vm),
        note="start of the lowest supervisor-only mapping (no U bit) in the page tables at CR3, "
        "read with info mem while the guest idles at its shell prompt: the CPU is then in the shell "
        "or in the kernel, and every address space maps the kernel; "
        f"{len(below)} user mappings lie below it, {len(above)} above",
        extra={
            "cr3": f"0x{regs['CR3']:x}",
            "cpl": regs.get("CPL"),
            "mappings": len(maps),
            "highest_user_end_below": f"0x{max(mp.end for mp in below):08x}" if below else None,
            "user_above": [mp.describe() for mp in above[:20]],
            "first_supervisor": [mp.describe() for mp in _supervisor(maps)[:10]],
        },
    )


def _supervisor(maps: list[Mapping]) -> list[Mapping]:
    return [mp for mp in maps if not mp.user]


@metric("mem.pse_unused", "flag", "flag", "CR4.PSE clear and no large-page entries in the page tables (info tlb)")
def mem_pse_unused(ctx: MetricContext, m: Metric) -> Measurement:
    got = _paging(ctx, m, "PSE is an x86 paging feature")
    if isinstance(got, Measurement):
        return got
    vm, regs = got
    cr4 = regs["CR4"]
    pse, pae = bool(cr4 & CR4_PSE), bool(cr4 & CR4_PAE)
    text = vm.qmp.hmp("info tlb")
    entries = parse_info_tlb(text)
    large = [e for e in entries if e.large]
    size = "2 MiB" if pae else "4 MiB"
    value = 0.0 if pse or large else 1.0
    inconclusive = None
    if pae:
        # PAE paging ignores CR4.PSE and its PS bit makes 2 MiB pages: 4 MiB pages cannot exist.
        inconclusive = (
            f"CR4.PAE is set: the guest uses PAE paging, whose large pages are 2 MiB; the claim's "
            f"4 MiB PSE pages do not exist in this mode ({len(large)} 2 MiB entries seen)"
        )
    return m.measurement(
        [value],
        ctx.conditions(vm),
        inconclusive=inconclusive,
        note=f"CR4=0x{cr4:08x} (PSE {'set' if pse else 'clear'}, PAE {'set' if pae else 'clear'}); "
        f"{len(large)} of {len(entries)} present leaf entries of info tlb (page tables at CR3) are "
        f"{size} pages",
        extra={
            "cr4": f"0x{cr4:08x}",
            "cr3": f"0x{regs['CR3']:x}",
            "pse": pse,
            "pae": pae,
            "entries": len(entries),
            "large_pages": len(large),
            "large_first": [f"{e.vaddr:08x} -> {e.paddr:08x} {e.flags}" for e in large[:10]],
            "tlb_head": text.splitlines()[:10],
        },
    )


__all__ = ["read_cpu_state", "read_idt", "read_registers", "read_virtual"]


# -- the kernel's boot loop (kmain) ------------------------------------------------------------
@metric("boot.processes", "count", "count", "processes the kernel's boot loop (kmain) sets up, from its image[] table")
def boot_processes(ctx: MetricContext, m: Metric) -> Measurement:
    """Count what kmain's loop over ``image[]`` created, read from the running kernel's memory.

    kmain (minix/kernel/main.c) sets up one process-table entry per element of the boot
    image table ``image[NR_BOOT_PROCS]`` (minix/kernel/table.c): the kernel tasks, then one
    process per multiboot module (it panics unless the module count matches). It writes
    each entry's endpoint, and each module's load address and length, back into the
    table. The figure is the number of entries so filled in: the table is found by the
    booted kernel ELF's ``image`` symbol and read over QMP; ``ps -ax`` is kept as a cross-check.
    """
    if ctx.guest_name != "minix":
        return m.unmeasurable(ctx, f"guest {ctx.guest_name!r} has no MINIX kernel boot image table")
    if ctx.arch != "i386":
        return m.unmeasurable(ctx, "the table is read through the i386 kernel's ELF and x86 paging")
    kernel = ctx.pool.media(ctx.arch).files.get("kernel")
    sym = kernel_symbol(Path(kernel), "image") if kernel else None
    if sym is None:
        return m.unmeasurable(ctx, f"the kernel {kernel} has no `image` symbol to find kmain's table by")
    vm = ctx.guest()
    addr, size = sym
    try:
        raw, how = read_virtual(vm, addr, size)
        procs = decode_boot_image(raw)
    except (HarnessError, QMPError, ValueError) as exc:
        return m.unmeasurable(ctx, f"the kernel's image[] table could not be read: {exc}")
    # Entries kmain processed: it stored an endpoint in each, and a load address and length for modules.
    created = [p for p in procs if p.name and (p.kernel_task or p.length > 0)]
    tasks = [p.name for p in created if p.kernel_task]
    modules = [p.name for p in created if not p.kernel_task]
    ps = vm.shell.run("ps -ax", timeout=60).stdout
    return m.measurement(
        [float(len(created))],
        ctx.conditions(vm),
        note=f"entries of the kernel's image[] table that kmain set up: {len(tasks)} kernel tasks "
        f"({', '.join(tasks)}) + {len(modules)} boot-module processes ({', '.join(modules)}); "
        f"read at 0x{addr:08x} ({size} bytes) with {how}",
        extra={
            "kernel_tasks": tasks,
            "boot_modules": modules,
            "entries": [p.__dict__ for p in procs],
            "ps_boot_lines": count_boot_image_processes(ps),
            "ps": ps,
        },
    )
