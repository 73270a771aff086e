// Where the shim's large tables and its fork child's code live in its image.
//
// A process start writes a few dozen bytes of the shim's state (the hooks,
// the start and scan states, its pid). Each page it writes is a page fault,
// about a microsecond. The large zero-filled tables (the fd table's top
// level, the module list, the executable's path and arguments) would sit
// between those variables in .bss and spread them over five pages. Marked
// CA_BULK they go to .lbss, which the x86-64 linker places right after .bss
// in the same segment: the small state then shares one or two pages, and a
// table costs a fault only where it is used.
#ifndef CLOSEAUDIT_SHIM_LAYOUT_H_
#define CLOSEAUDIT_SHIM_LAYOUT_H_

#if defined(__x86_64__)
#define CA_BULK __attribute__((section(".lbss")))
#else
#define CA_BULK
#endif

// The code a fork child runs between fork and exec (the fork and execve
// wrappers and what they call), kept together at the start of .text. A
// fork child does not inherit the parent's mappings of file pages: it faults
// the shim's code in again, once for each 64 KiB window it runs code in, and
// spread over the library that code crossed two.
#define CA_CHILD_PATH __attribute__((section(".text.hot.closeaudit")))

#endif  // CLOSEAUDIT_SHIM_LAYOUT_H_
