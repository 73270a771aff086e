// libunwind, loaded by the first stack walk rather than with the library.
//
// Loading libunwind and the liblzma it needs costs a process image about
// 100 us, a fifth of what a bare /bin/true takes from exec to exit, and most
// of the images a shell script or a build starts never make a socket. So
// libcloseaudit.so does not link libunwind: the first walk in a process
// dlopen()s libunwind.so.8 and resolves the calls the shim makes, with every
// signal blocked. A fork child inherits the loaded library. Later walks only
// read an atomic.
//
// dlopen() is not async-signal-safe: a first walk made from a signal handler
// that interrupted malloc in the same thread could deadlock. The shim never
// walks the stack of a call it makes itself (t_busy > 1), and a program's
// first socket call is, in every program we know of, not made from a signal
// handler; that one case stays a documented limit (README, "Limits").
#ifndef CLOSEAUDIT_SHIM_UNWINDER_H_
#define CLOSEAUDIT_SHIM_UNWINDER_H_

#include <cstdint>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

namespace closeaudit::shim {

struct Unwinder {
  decltype(&unw_tdep_getcontext) getcontext;
  decltype(&unw_init_local) init_local;
  decltype(&unw_get_reg) get_reg;
  decltype(&unw_is_signal_frame) is_signal_frame;
  decltype(&unw_step) step;
  decltype(&unw_get_proc_info) get_proc_info;
  // The loaded object, all of its segments: calls made from there (its
  // validation pipe, see stacks.h) are libunwind's own.
  uintptr_t start = 0;
  uintptr_t end = 0;
};

// The unwinder, loading it on first use; null if libunwind.so.8 cannot be
// loaded (said once on stderr; events then carry no stacks). Thread-safe: a
// thread that finds another loading it waits for that one.
const Unwinder* LoadUnwinder();

// In a fork child: a load that another thread of the parent had under way
// can never finish here; it counts as failed.
void UnwinderForkChild();

// Whether ip lies in libunwind, once it is loaded (or being loaded).
bool InLoadedUnwinder(uintptr_t ip);

// The unwinder if it is loaded already, else null. Never loads.
const Unwinder* LoadedUnwinder();

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_UNWINDER_H_
