// Keeping the shim's own file descriptors out of the program's way.
//
// Programs expect socket() or open() to return the lowest free number, and
// some close every fd at start-up. Whatever fd the shim (or a library it
// uses) must hold is therefore moved to a high number.
#ifndef CLOSEAUDIT_SHIM_HIGH_FD_H_
#define CLOSEAUDIT_SHIM_HIGH_FD_H_

namespace closeaudit::shim {

// Moves fd to a number at or above min(1024, RLIMIT_NOFILE / 2), keeping
// CLOEXEC, and returns the new number; returns fd unchanged if that fails.
int MoveFdHigh(int fd);

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_HIGH_FD_H_
