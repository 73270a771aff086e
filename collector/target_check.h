// Whether LD_PRELOAD can reach a program at all, decided before running it.
//
// Three kinds of program never load libcloseaudit.so, or load it but bypass
// libc: statically linked executables (no dynamic loader), setuid/setgid
// executables run by another user (the loader ignores LD_PRELOAD for them),
// and Go programs (their runtime makes system calls directly). `closeaudit
// run` says so up front and in the report, instead of reporting them clean.
#ifndef CLOSEAUDIT_COLLECTOR_TARGET_CHECK_H_
#define CLOSEAUDIT_COLLECTOR_TARGET_CHECK_H_

#include <optional>
#include <string>

namespace closeaudit {

// The file that would run for `command` (searched in $PATH like execvp),
// following one "#!" line to its interpreter. Empty if not found.
std::string ResolveProgram(const std::string& command);

// Why the program at `path` cannot be audited, or nullopt if it can (or if
// the file cannot be read: then the run itself will tell).
std::optional<std::string> WhyUnauditable(const std::string& path);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_TARGET_CHECK_H_
