// `closeaudit daemon`: the per-user collector behind the plain
// `LD_PRELOAD=libcloseaudit.so ./server` form. The library starts it on first
// use. It collects from every process that connects, rewrites report.json and
// report.txt in its output directory whenever the last traced process exits,
// and exits itself after `idle` with nothing to trace.
#ifndef CLOSEAUDIT_COLLECTOR_DAEMON_H_
#define CLOSEAUDIT_COLLECTOR_DAEMON_H_

#include "absl/time/time.h"
#include "collector/session.h"

namespace closeaudit {

// Returns the exit code for main(). With detach, the calling process returns
// as soon as the daemon listens (or failed to).
int RunDaemon(const SessionOptions& options, absl::Duration idle, bool detach);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_DAEMON_H_
