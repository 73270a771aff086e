// What a process closeaudit starts for itself gets of its signals: none
// blocked (the thread that starts it may block them all) and none ignored
// or caught (whatever the process it comes from chose), so that it stops on
// SIGTERM like any other.
#ifndef CLOSEAUDIT_COMMON_SPAWN_H_
#define CLOSEAUDIT_COMMON_SPAWN_H_

#include <signal.h>
#include <spawn.h>

namespace closeaudit {

// `attr` initialized; sets its signal mask and defaults.
inline void CleanSignalsOnSpawn(posix_spawnattr_t* attr) {
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setsigdefault(attr, &all);
  posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COMMON_SPAWN_H_
