/* vfork() for libcloseaudit.so.

   vfork cannot be wrapped by a C function: the child runs on the parent's
   stack and returns through the wrapper's frame, which the parent needs
   intact when it resumes. This trampoline keeps nothing on the stack across
   the real vfork: the caller's return address is parked in thread-local
   storage (the child shares it, and the parent thread is suspended while the
   child runs), and both processes push it back just before returning.

   In the parent:  take the stack (closeaudit_vfork_prepare), vfork, clear the
                   child flag, record the fork (closeaudit_vfork_parent).
   In the child:   set closeaudit_vfork_child, so that every wrapper passes
                   straight through until exec, and return. */

    .text
    .globl vfork
    .type vfork, @function
    .p2align 4
    /* The trampoline keeps no frame pointer of its own: stack captures stop
       at it (see FindCallSite in stacks.cc), which needs its bounds. */
    .globl closeaudit_vfork_begin
    .hidden closeaudit_vfork_begin
closeaudit_vfork_begin:
vfork:
    .cfi_startproc
    /* At entry rsp+8 is 16-byte aligned; make the call below aligned. */
    subq $8, %rsp
    .cfi_adjust_cfa_offset 8
    call closeaudit_vfork_prepare      /* rax: the real vfork */
    addq $8, %rsp
    .cfi_adjust_cfa_offset -8
    movq %rax, %r11
    popq %rsi                          /* the caller's return address */
    .cfi_adjust_cfa_offset -8
    .cfi_undefined rip
    movq closeaudit_vfork_return@gottpoff(%rip), %rcx
    movq %rsi, %fs:(%rcx)
    call *%r11
    testl %eax, %eax
    jz 2f
    /* Parent (or failure): the child has exec'd or exited by now. */
    movq closeaudit_vfork_child@gottpoff(%rip), %rcx
    movl $0, %fs:(%rcx)
    pushq %rax
    pushq %rax                         /* keeps the call aligned */
    movl %eax, %edi
    call closeaudit_vfork_parent       /* saves and restores errno */
    popq %rax
    popq %rax
    jmp 3f
2:  /* Child. */
    movq closeaudit_vfork_child@gottpoff(%rip), %rcx
    movl $1, %fs:(%rcx)
3:  movq closeaudit_vfork_return@gottpoff(%rip), %rcx
    pushq %fs:(%rcx)
    ret
    .cfi_endproc
    .size vfork, .-vfork
    .globl closeaudit_vfork_end
    .hidden closeaudit_vfork_end
closeaudit_vfork_end:

    .section .note.GNU-stack,"",@progbits
