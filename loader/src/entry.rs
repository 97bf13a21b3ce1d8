//! Multiboot headers and the 32-bit entry stub that reaches long mode.
//!
//! The stub identity-maps the low 4 GiB with 2 MiB pages, enables PAE,
//! long mode and (when the CPU has it) NX, and calls `loader_main(magic,
//! info)` on the loader's own stack.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
mb1_header:
    .long 0x1BADB002
    .long 0x00000003                    /* page-aligned modules, memory map */
    .long 0x100000000 - (0x1BADB002 + 0x00000003)

    .balign 8
mb2_header:
    .long 0xE85250D6
    .long 0                             /* i386 protected mode */
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header))
    .short 6, 0                         /* module alignment tag */
    .long 8
    .short 0, 0                         /* end tag */
    .long 8
mb2_header_end:

    .section .text.entry32, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %eax, %edi                     /* Multiboot magic */
    movl %ebx, %esi                     /* Multiboot information */

    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    testl $(1 << 29), %edx
    jz no_long_mode
    movl %edx, %ebp                     /* bit 20: NX */

    /* PD entries: 2048 x 2 MiB, present, writable, large. */
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jne 1b

    /* PDPT entries 0..3 point at the four page directories. */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $12, %eax
    addl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt(, %ecx, 8)
    incl %ecx
    cmpl $4, %ecx
    jne 2b

    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4

    movl %cr4, %eax
    orl $(1 << 5), %eax                 /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx              /* IA32_EFER */
    rdmsr
    orl $(1 << 8), %eax                 /* LME */
    testl $(1 << 20), %ebp
    jz 3f
    orl $(1 << 11), %eax                /* NXE */
3:  wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax               /* PG, WP, PE */
    movl %eax, %cr0

    lgdt boot_gdt_pointer
    ljmp $0x08, $long_mode_entry

no_long_mode:
    movl $no_long_mode_message, %esi
    movw $0x3f8, %dx
4:  movb (%esi), %al
    testb %al, %al
    jz 5f
    outb %al, %dx
    incl %esi
    jmp 4b
5:  cli
    hlt
    jmp 5b

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movl $boot_stack_top, %esp
    /* Upper halves are undefined after the mode switch: zero-extend. */
    movl %edi, %edi
    movl %esi, %esi
    call loader_main
    ud2

    .section .rodata
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
boot_gdt_end:
boot_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
no_long_mode_message:
    .asciz "tessera-loader: this CPU has no long mode\r\ntessera: halted status=1\r\n"

    .section .bss
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
boot_stack:
    .skip 64 * 1024
boot_stack_top:
"#,
    options(att_syntax)
);
