// Which frames of a stack are the program's own code, and which belong to
// the libraries, headers and runtimes it is built on.
//
// A report names the line its owner must change. The owner's code is
// everything but what the system supplies: objects under the system's
// library directories (libc, libstdc++, libevent, libuv, OpenSSL...), code
// from the system's headers inlined or instantiated into the program (the
// C++ standard library, boost.asio), and interpreters and runtimes (python3,
// libpython, node, libjvm). `--app-path DIR` and `--not-app PATTERN` correct
// that rule where it is wrong for a program: the model is Sentry's
// in_app_include and in_app_exclude.
#ifndef CLOSEAUDIT_COLLECTOR_APP_FRAMES_H_
#define CLOSEAUDIT_COLLECTOR_APP_FRAMES_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "collector/symbolizer.h"

namespace closeaudit {

// An --app-path of "java:com.example" names a Java package (and those in
// it): its classes are the program's own, and, once one is named, other
// classes than the JDK's are libraries.
inline constexpr std::string_view kJavaPackagePrefix = "java:";

struct AppRules {
  // --app-path: frames whose source file or module lies under one of these
  // directories are the program's own, whatever else says. Absolute, or a
  // Java package (kJavaPackagePrefix).
  std::vector<std::string> app_paths;
  // --not-app: frames whose source file, module or function contains one of
  // these strings are not, unless an app path claims them.
  std::vector<std::string> not_app;
};

// Whether the frame is the program's own code under `rules`.
bool InApp(const Frame& frame, const AppRules& rules);

// What a person calls the library a frame is in, for "... 11 frames in
// boost/asio": a header library by its include directory (boost/asio, c++),
// else the module's file name (libevent-2.1.so.7). "" when nothing is known.
std::string LibraryName(const Frame& frame);

// A function's name without its parameters and template arguments, as a
// sentence names it: "boost::asio::basic_socket::async_read_some".
std::string ShortFunction(std::string_view function);

// How a report names a frame's source file: its basename, but Node.js's own
// modules whole ("node:internal/process/task_queues").
std::string SourceName(const Frame& frame);

// A JavaScript function as V8 names it in a perf map ("JS:~onData
// /srv/app.js:10:17"; "LazyCompile:*f file:1:2" before V8 9): fills
// frame's function ("(anonymous)" for none), file (without "file://") and
// line (the function's first line), and language "js". False for any other
// name: the frame is left alone.
bool ParseJsPerfName(std::string_view name, Frame* frame);

// Checks --app-path values (each must be an absolute directory name; a
// relative one is made absolute against the working directory) and
// --not-app values (not empty). The error names the bad value.
absl::StatusOr<AppRules> ParseAppRules(const std::vector<std::string>& app_paths,
                            const std::vector<std::string>& not_app);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_APP_FRAMES_H_
