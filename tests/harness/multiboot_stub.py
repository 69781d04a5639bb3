"""A tiny multiboot (v1) kernel, hand-assembled, that reports what the boot loader handed it.

Booted by ``qemu-system-i386 -kernel STUB -initrd a,b -append ...`` it writes to COM1::

    CMDLINE <command line>
    MODULE <module string>      (one pair of lines per module, in order)
    MODSIZE <end - start, decimal>
    MODS <module count>
    END

and halts. The multiboot header sets flags bit 16 (the "a.out kludge"), so QEMU loads the flat
image at 1 MiB from the header's address fields and needs no ELF. The bytes are checked in, with
their listing beside them, so tests need no assembler; they came from GNU as (``as --32``) and
were checked with ``objdump -D -b binary -mi386 --adjust-vma=0x100000``.
"""

from __future__ import annotations

LOAD_ADDR = 0x100000
MULTIBOOT_MAGIC = 0x1BADB002
FLAGS = 0x00010000  # bit 16: header_addr .. entry_addr below are valid
LOAD_END = 0x10011A  # end of the image in memory (its file size is LOAD_END - LOAD_ADDR)
BSS_END = LOAD_END + 0x1000  # a 4 KiB stack, zeroed by the loader
ENTRY = 0x100020

_HEADER = b"".join(
    value.to_bytes(4, "little")
    for value in (
        MULTIBOOT_MAGIC,
        FLAGS,
        -(MULTIBOOT_MAGIC + FLAGS) & 0xFFFFFFFF,  # checksum: the three fields sum to 0
        LOAD_ADDR,  # header_addr: where this header lands (it is at file offset 0)
        LOAD_ADDR,  # load_addr: load the file from offset 0 ...
        LOAD_END,  # load_end_addr: ... to its end
        BSS_END,  # bss_end_addr
        ENTRY,  # entry_addr
    )
)

# Code at 0x100020. Calls and jumps are relative; the string addresses are absolute.
# fmt: off
_CODE = bytes.fromhex(
    # start:  (entry; EAX = 0x2BADB002, EBX = multiboot info, flat 32-bit segments, no paging)
    "fa"                # 100020  cli
    "bc 1a 11 10 00"    # 100021  mov $bss_end,%esp             ; stack in the 4 KiB bss after the image
    "89 dd"             # 100026  mov %ebx,%ebp                 ; EBP = multiboot info
    "be f5 00 10 00"    # 100028  mov $s_cmdline,%esi
    "e8 96 00 00 00"    # 10002d  call puts
    "f6 45 00 04"       # 100032  testb $0x4,0x0(%ebp)          ; flags bit 2: cmdline valid?
    "74 08"             # 100036  je 1f
    "8b 75 10"          # 100038  mov 0x10(%ebp),%esi           ; ESI = info->cmdline
    "e8 88 00 00 00"    # 10003b  call puts
    # 1:  (after the command line)
    "e8 6e 00 00 00"    # 100040  call newline
    "31 db"             # 100045  xor %ebx,%ebx                 ; EBX = module count (0 if none)
    "f6 45 00 08"       # 100047  testb $0x8,0x0(%ebp)          ; flags bit 3: mods valid?
    "74 42"             # 10004b  je no_mods
    "8b 5d 14"          # 10004d  mov 0x14(%ebp),%ebx           ; EBX = info->mods_count
    "8b 7d 18"          # 100050  mov 0x18(%ebp),%edi           ; EDI = info->mods_addr
    "53"                # 100053  push %ebx                     ; keep the count for MODS
    # mod_loop:
    "85 db"             # 100054  test %ebx,%ebx
    "74 36"             # 100056  je mods_done
    "be fe 00 10 00"    # 100058  mov $s_module,%esi
    "e8 66 00 00 00"    # 10005d  call puts
    "8b 77 08"          # 100062  mov 0x8(%edi),%esi            ; ESI = mod->string
    "e8 5e 00 00 00"    # 100065  call puts
    "e8 44 00 00 00"    # 10006a  call newline
    "be 06 01 10 00"    # 10006f  mov $s_modsize,%esi
    "e8 4f 00 00 00"    # 100074  call puts
    "8b 47 04"          # 100079  mov 0x4(%edi),%eax            ; EAX = mod->end
    "2b 07"             # 10007c  sub (%edi),%eax               ;       - mod->start
    "e8 52 00 00 00"    # 10007e  call putdec
    "e8 2b 00 00 00"    # 100083  call newline
    "83 c7 10"          # 100088  add $0x10,%edi                ; next 16-byte module entry
    "4b"                # 10008b  dec %ebx
    "eb c6"             # 10008c  jmp mod_loop
    # mods_done:
    "5b"                # 10008e  pop %ebx
    # no_mods:
    "be 0f 01 10 00"    # 10008f  mov $s_mods,%esi
    "e8 2f 00 00 00"    # 100094  call puts
    "89 d8"             # 100099  mov %ebx,%eax
    "e8 35 00 00 00"    # 10009b  call putdec
    "e8 0e 00 00 00"    # 1000a0  call newline
    "be 15 01 10 00"    # 1000a5  mov $s_end,%esi
    "e8 19 00 00 00"    # 1000aa  call puts
    # halt:
    "fa"                # 1000af  cli
    "f4"                # 1000b0  hlt
    "eb fc"             # 1000b1  jmp halt
    # newline:
    "b0 0a"             # 1000b3  mov $0xa,%al
    # putc:  (AL -> COM1; clobbers AH, DX)
    "88 c4"             # 1000b5  mov %al,%ah
    "66 ba fd 03"       # 1000b7  mov $0x3fd,%dx                ; line status register
    # wait_thre:
    "ec"                # 1000bb  in (%dx),%al
    "a8 20"             # 1000bc  test $0x20,%al                ; transmitter holding register empty?
    "74 fb"             # 1000be  je wait_thre
    "66 ba f8 03"       # 1000c0  mov $0x3f8,%dx                ; transmit register
    "88 e0"             # 1000c4  mov %ah,%al
    "ee"                # 1000c6  out %al,(%dx)
    "c3"                # 1000c7  ret
    # puts:  (ESI -> COM1 until NUL; clobbers AX, DX, ESI)
    "ac"                # 1000c8  lods %ds:(%esi),%al
    "84 c0"             # 1000c9  test %al,%al
    "74 07"             # 1000cb  je puts_done
    "e8 e3 ff ff ff"    # 1000cd  call putc
    "eb f4"             # 1000d2  jmp puts
    # puts_done:
    "c3"                # 1000d4  ret
    # putdec:  (EAX as decimal -> COM1; clobbers EAX, ECX, EDX)
    "53"                # 1000d5  push %ebx
    "b9 0a 00 00 00"    # 1000d6  mov $0xa,%ecx
    "31 db"             # 1000db  xor %ebx,%ebx                 ; EBX = digit count
    # digit:
    "31 d2"             # 1000dd  xor %edx,%edx
    "f7 f1"             # 1000df  div %ecx
    "80 c2 30"          # 1000e1  add $0x30,%dl
    "52"                # 1000e4  push %edx                     ; push digits, least significant first
    "43"                # 1000e5  inc %ebx
    "85 c0"             # 1000e6  test %eax,%eax
    "75 f3"             # 1000e8  jne digit
    # emit:
    "58"                # 1000ea  pop %eax
    "e8 c5 ff ff ff"    # 1000eb  call putc
    "4b"                # 1000f0  dec %ebx
    "75 f7"             # 1000f1  jne emit
    "5b"                # 1000f3  pop %ebx
    "c3"                # 1000f4  ret
)
# fmt: on

# Strings at 0x1000f5, NUL-terminated, as the code above addresses them.
_STRINGS = (
    b"CMDLINE \0"  # 1000f5  s_cmdline
    b"MODULE \0"  # 1000fe  s_module
    b"MODSIZE \0"  # 100106  s_modsize
    b"MODS \0"  # 10010f  s_mods
    b"END\n\0"  # 100115  s_end
)


def stub_kernel() -> bytes:
    """The kernel image, ready to write to a file for ``qemu-system-i386 -kernel``."""
    image = _HEADER + _CODE + _STRINGS
    # The code hard-codes the string addresses: a miscounted edit must not boot silently wrong.
    if len(_HEADER) + len(_CODE) != 0xF5 or LOAD_ADDR + len(image) != LOAD_END:
        raise AssertionError(f"multiboot stub layout is off: {len(image)} bytes")
    return image
