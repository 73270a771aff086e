// Keeping the shim's own file descriptors out of the program's way.
//
// Programs expect socket() or open() to return the lowest free number, and
// some close every fd at start-up. Whatever fd the shim (or a library it
// uses) must hold is therefore moved to a high number.
#ifndef CLOSEAUDIT_SHIM_HIGH_FD_H_
#define CLOSEAUDIT_SHIM_HIGH_FD_H_

namespace closeaudit::shim {

// Moves fd just above the RLIMIT_NOFILE soft limit when the hard limit
// allows (the program can never get such a number), else to the top of the
// soft range; sets CLOEXEC. Returns the new number, or fd unchanged if it
// cannot be moved. Not async-signal-safe with respect to other threads
// reading the limit: it raises the soft limit for two system calls.
int MoveFdHigh(int fd);

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_HIGH_FD_H_
