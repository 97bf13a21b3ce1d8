//! The Multiboot v1 header, the 32-bit entry stub, and the interrupt stubs.
//!
//! The stub needs from the machine (under the VID, what it must emulate):
//! port I/O to the UART; a usable GDT at entry (it reloads every segment
//! register through the boot loader's GDT before loading its own); one
//! `wrmsr` to IA32_EFER (value 0x100, LME; EDX 0), which is an MSR
//! intercept; and ordinary CR0/CR3/CR4 writes. It does not execute CPUID or
//! RDMSR: long mode is assumed, and NX is not used.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
    .long 0x1BADB002
    .long 0x00000003                    /* page-aligned modules, memory information */
    .long 0x100000000 - (0x1BADB002 + 0x00000003)

    .section .text.entry32, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl $tk_stack_top, %esp
    movl %eax, %edi                     /* Multiboot magic */
    movl %ebx, %esi                     /* Multiboot information */

    movl $tk_entry_message, %ebx
    call tk_puts32

    /* Reload every segment register through the boot loader's GDT, CS with a far return. */
    movw %ds, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ss, %ax
    movw %ax, %ss
    pushl %cs
    pushl $1f
    lret
1:
    movl $tk_reload_message, %ebx
    call tk_puts32

    /* 2048 x 2 MiB identity pages for 0..4 GiB; the top GiB uncached (devices). */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                     /* present, writable, 2 MiB */
    cmpl $1536, %ecx
    jb 3f
    orl $0x18, %eax                     /* PWT, PCD */
3:  movl %eax, tk_pd(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jne 2b

    xorl %ecx, %ecx
4:  movl %ecx, %eax
    shll $12, %eax
    addl $tk_pd, %eax
    orl $0x3, %eax
    movl %eax, tk_pdpt(, %ecx, 8)
    incl %ecx
    cmpl $4, %ecx
    jne 4b

    movl $tk_pdpt, %eax
    orl $0x3, %eax
    movl %eax, tk_pml4

    movl %cr4, %eax
    orl $(1 << 5), %eax                 /* PAE */
    movl %eax, %cr4
    movl $tk_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx              /* IA32_EFER := LME (no read first) */
    movl $(1 << 8), %eax
    xorl %edx, %edx
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax               /* PG, PE */
    movl %eax, %cr0

    lgdt tk_gdt_pointer
    ljmp $0x08, $tk_long_mode

/* Prints the NUL-terminated string at EBX, polling the line status register. */
tk_puts32:
    movb (%ebx), %cl
    testb %cl, %cl
    jz 6f
5:  movw $0x3fd, %dx
    inb %dx, %al
    testb $0x20, %al
    jz 5b
    movw $0x3f8, %dx
    movb %cl, %al
    outb %al, %dx
    incl %ebx
    jmp tk_puts32
6:  ret

    .code64
tk_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movl $tk_stack_top, %esp
    movl %edi, %edi
    movl %esi, %esi
    call testkernel_main
    ud2

/* One 16-byte stub per vector: push a zero error code where the CPU pushes
   none, push the vector, and go to the common path. */
    .balign 16
    .global tk_isr_stubs
tk_isr_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    pushq $0
    .endif
    pushq $vector
    jmp tk_isr_common
    .set vector, vector + 1
    .endr

tk_isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call testkernel_trap
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

    .section .rodata
    .balign 8
tk_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF            /* 0x08: 64-bit code, accessed */
    .quad 0x00CF93000000FFFF            /* 0x10: data, accessed */
tk_gdt_end:
tk_gdt_pointer:
    .short tk_gdt_end - tk_gdt - 1
    .quad tk_gdt
tk_entry_message:
    .asciz "testkernel: entered in 32-bit protected mode\n"
tk_reload_message:
    .asciz "testkernel: segment reload ok\n"

    .section .bss
    .balign 4096
    .global tk_pml4
tk_pml4:
    .skip 4096
tk_pdpt:
    .skip 4096
tk_pd:
    .skip 4 * 4096
tk_stack:
    .skip 64 * 1024
tk_stack_top:
"#,
    options(att_syntax)
);
