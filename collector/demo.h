// The clients of `closeaudit demo`: a few polite orders and a few callers that
// hang up without a request, which is what makes the demo server leak.
#ifndef CLOSEAUDIT_COLLECTOR_DEMO_H_
#define CLOSEAUDIT_COLLECTOR_DEMO_H_

#include <cstdint>
#include <string>

namespace closeaudit {

// Waits for the demo server to write its port to port_file, talks to it, and
// returns once the leaks are older than grace_ns (so the report shows them).
void DriveDemoClients(const std::string& port_file, uint64_t grace_ns);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_DEMO_H_
