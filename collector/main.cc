// closeaudit: finds the code that leaves TCP connections stuck in CLOSE_WAIT.
//
//   closeaudit run [--grace 5s] [--json FILE] [--out DIR] [--error-exitcode N]
//                  -- ./server args...
//   closeaudit demo
//   closeaudit report [DIR] [--json FILE] [--grace D]
// Each takes --format text|json|html|folded, --min-severity and --kind.
//   closeaudit daemon [--socket PATH] [--out DIR] [--idle D]
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "collector/compact.h"
#include "collector/daemon.h"
#include "collector/demo.h"
#include "collector/merge.h"
#include "collector/session.h"
#include "collector/target_check.h"
#include "common/node_options.h"
#include "common/paths.h"
#include "common/version.h"

ABSL_FLAG(absl::Duration, grace, absl::Seconds(5),
          "how long a socket may stay open after the peer's EOF before it is "
          "reported");
ABSL_FLAG(std::string, json, "", "also write the JSON report to this file");
ABSL_FLAG(std::string, out, "",
          "directory for the trace and reports (default: a new directory "
          "under $XDG_STATE_HOME/closeaudit, linked as 'latest')");
ABSL_FLAG(std::string, socket, "",
          "daemon: the socket to listen on (default: the per-user socket the "
          "library looks for)");
ABSL_FLAG(absl::Duration, idle, absl::Seconds(60),
          "daemon: exit after this long with no traced process");
ABSL_FLAG(bool, foreground, false, "daemon: do not detach");
ABSL_FLAG(std::string, format, "text",
          "what to print: text, json, html or folded (the run's directory "
          "always gets report.txt, report.json, report.html and "
          "report.folded)");
ABSL_FLAG(std::string, min_severity, "",
          "only findings at least this severe: info, warning or error");
ABSL_FLAG(std::vector<std::string>, kind, {},
          "only findings of these kinds (comma-separated)");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9464) "
          "while the run lasts");
ABSL_FLAG(std::string, host, "",
          "the machine's name in the reports (default: its hostname)");
ABSL_FLAG(std::string, trace_limit, "1G",
          "run and daemon: compact the trace when it reaches this size "
          "(bytes, or with K, M, G or T; 0: never)");
ABSL_FLAG(int, error_exitcode, 0,
          "run: exit with this status (1-255) when the report has a finding "
          "that --min-severity and --kind keep; 0: always the command's own "
          "status");

extern char** environ;

namespace closeaudit {
namespace {

constexpr char kUsage[] =
    "finds the code that leaves TCP connections stuck in CLOSE_WAIT.\n\n"
    "usage:\n"
    "  closeaudit run [--grace 5s] [--json FILE] [--out DIR] [--error-exitcode N]\n"
    "                 -- CMD [ARGS...]\n"
    "      run CMD under the audit and report when it exits; exit with CMD's\n"
    "      status, or with N if the report has findings (those that\n"
    "      --min-severity and --kind keep)\n"
    "  closeaudit demo\n"
    "      run the bundled leaky demo server and show its report\n"
    "  closeaudit report [DIR] [--json FILE] [--grace D]\n"
    "      regenerate the report of a finished run (default: the latest)\n"
    "  run, demo and report also take:\n"
    "      --format text|json|html|folded   what to print (default text)\n"
    "      --app-path DIR, --not-app PATTERN (each as often as needed): which\n"
    "      frames are the program's own (default: all but system libraries,\n"
    "      system headers and runtimes); --app-path java:PACKAGE for Java\n"
    "      --min-severity info|warning|error, --kind KIND[,KIND...]\n"
    "  closeaudit daemon [--socket PATH] [--out DIR] [--idle 60s]\n"
    "      the per-user collector that LD_PRELOAD=libcloseaudit.so starts\n"
    "  closeaudit merge DIR... --out DIR\n"
    "      one report from the runs of several hosts (culprits merged)\n"
    "  closeaudit status [DIR] [--json]\n"
    "      what a running collector sees now (default: the latest run)\n"
    "  closeaudit snapshot [DIR]\n"
    "      have a running collector write its reports now (or send it "
    "SIGUSR1)\n"
    "  run and daemon also take --metrics-listen HOST:PORT (Prometheus),\n"
    "      and --trace-limit SIZE (default 1G; 0: none): the trace is\n"
    "      compacted when it reaches it\n"
    "  closeaudit --version\n"
    "      print closeaudit's version (also: closeaudit version)\n";

// What --version prints.
std::string VersionLine() { return absl::StrCat("closeaudit ", kVersion, "\n"); }

// --app-path and --not-app, in the order given (see main()).
std::vector<std::string> g_app_paths;
std::vector<std::string> g_not_app;

std::atomic<int> g_signal{0};
std::atomic<bool> g_snapshot{false};

void OnSignal(int sig) { g_signal.store(sig); }
void OnSnapshotSignal(int) { g_snapshot.store(true); }

// This binary, even if the file has been replaced or removed since.
constexpr char kSelfExe[] = "/proc/self/exe";

std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  std::string path(buf);
  return path.substr(0, path.rfind('/'));
}

// The first of `candidates` (relative to this binary's directory) that
// exists, after an environment override.
std::string Locate(const char* env, const std::vector<std::string>& candidates) {
  if (const char* v = getenv(env); v && *v) return v;
  std::string dir = SelfDir();
  for (const std::string& c : candidates) {
    std::string path = dir + "/" + c;
    if (access(path.c_str(), R_OK) == 0) {
      char real[4096];
      return realpath(path.c_str(), real) ? std::string(real) : path;
    }
  }
  return "";
}

std::string ShimPath() {
  return Locate("CLOSEAUDIT_LIB", {"../shim/libcloseaudit.so",
                                   std::string("../") + CLOSEAUDIT_LIBDIR +
                                       "/libcloseaudit.so"});
}

// The directory of the Python-side helper (shim/python/sitecustomize.py),
// or "" if it is not installed.
std::string PythonHelperDir() {
  std::string path = Locate(
      "CLOSEAUDIT_PYTHON_HELPER",
      {"../shim/python/sitecustomize.py",
       std::string("../") + CLOSEAUDIT_LIBDIR + "/closeaudit/python/sitecustomize.py"});
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// The Node.js agent `closeaudit run` loads into Node.js programs through
// NODE_OPTIONS (common/node_options.h); "" if it is not installed.
std::string NodeAgent() {
  return Locate("CLOSEAUDIT_NODE_AGENT",
                {"../shim/node/closeaudit_agent.js",
                 std::string("../") + CLOSEAUDIT_LIBDIR +
                     "/closeaudit/node/closeaudit_agent.js"});
}

int Fail(const absl::Status& status) {
  fprintf(stderr, "closeaudit: %s\n", std::string(status.message()).c_str());
  return 2;
}

// The signals closeaudit handles itself, which the command must get back at
// their defaults. One that was ignored when closeaudit started (nohup, a
// background job) stays ignored, here and in the command.
sigset_t g_default_in_command;

void InstallSignalHandlers() {
  sigemptyset(&g_default_in_command);
  for (int sig : {SIGINT, SIGTERM, SIGUSR1, SIGPIPE}) {
    struct sigaction old {};
    sigaction(sig, nullptr, &old);
    if (old.sa_handler == SIG_IGN) continue;
    sigaddset(&g_default_in_command, sig);
    struct sigaction sa {};
    sa.sa_handler = sig == SIGPIPE    ? SIG_IGN
                    : sig == SIGUSR1 ? OnSnapshotSignal
                                     : OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
  }
}

// SIGUSR1: the reports as of now, the run going on.
void SnapshotIfAsked(Session& session) {
  if (!g_snapshot.exchange(false)) return;
  session.StartSnapshot([dir = session.options().out_dir](absl::Status s) {
    if (s.ok()) {
      fprintf(stderr, "\ncloseaudit: snapshot written to %s\n", dir.c_str());
    } else {
      fprintf(stderr, "\ncloseaudit: snapshot failed: %s\n",
              std::string(s.message()).c_str());
    }
  });
}

// The one status line `closeaudit run` keeps up to date on a terminal:
// every second, or less often when counting takes long (millions of
// sockets), so that it never costs the collector more than a few percent.
class LiveLine {
 public:
  LiveLine() : enabled_(isatty(STDERR_FILENO) == 1) {}
  void Update(Session& session) {
    if (!enabled_) return;
    uint64_t now = MonoNowNs();
    if (now < next_ns_) return;
    std::string line = StatusLine(session.Live());
    uint64_t took = MonoNowNs() - now;
    next_ns_ = now + std::max<uint64_t>(1'000'000'000, 30 * took);
    fprintf(stderr, "\r\033[Kcloseaudit: %s", line.c_str());
    shown_ = true;
  }
  void Clear() {
    if (shown_) fputs("\r\033[K", stderr);
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
  uint64_t next_ns_ = 0;
};

absl::StatusOr<std::string> PrivateSocketPath() {
  char tmpl[] = "/tmp/closeaudit-run-XXXXXX";
  if (!mkdtemp(tmpl)) return absl::ErrnoToStatus(errno, "mkdtemp");
  return std::string(tmpl) + "/" + paths::kSocketName;
}

void RemoveSocketDir(const std::string& socket_path) {
  ::unlink(socket_path.c_str());
  ::rmdir(socket_path.substr(0, socket_path.rfind('/')).c_str());
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            const std::string& shim,
                            const std::string& socket_path) {
  std::vector<std::string> env;
  std::string preload = "LD_PRELOAD=" + shim;
  // Python programs get the helper that names asyncio's handlers, first on
  // their path; their own PYTHONPATH follows.
  std::string helper = PythonHelperDir();
  std::string python_path = helper.empty() ? "" : "PYTHONPATH=" + helper;
  std::string agent = NodeAgent();
  const char* node_off = getenv("CLOSEAUDIT_NODE");
  if (node_off != nullptr && strcmp(node_off, "off") == 0) agent.clear();
  const char* node_existing = getenv("NODE_OPTIONS");
  std::string node_options;
  if (!agent.empty() && !node::LoadsAgent(node_existing)) {
    std::string buf(16384 + (node_existing ? strlen(node_existing) : 0), '\0');
    if (node::NodeOptionsWithAgent(node_existing, agent.c_str(), buf.data(),
                                   buf.size())) {
      node_options = "NODE_OPTIONS=" + std::string(buf.c_str());
    }
  }
  for (char** e = environ; *e; ++e) {
    if (strncmp(*e, "LD_PRELOAD=", 11) == 0) {
      preload += std::string(" ") + (*e + 11);
    } else if (!node_options.empty() && strncmp(*e, "NODE_OPTIONS=", 13) == 0) {
      continue;  // merged into node_options
    } else if (!helper.empty() && strncmp(*e, "PYTHONPATH=", 11) == 0) {
      if ((*e)[11] != '\0') python_path += std::string(":") + (*e + 11);
    } else if (strncmp(*e, "CLOSEAUDIT_SOCKET=", 18) != 0 &&
               strncmp(*e, "CLOSEAUDIT_RUN_PID=", 19) != 0) {
      env.push_back(*e);
    }
  }
  env.push_back(preload);
  if (!python_path.empty()) env.push_back(python_path);
  if (!node_options.empty()) env.push_back(node_options);
  env.push_back("CLOSEAUDIT_SOCKET=" + socket_path);
  // The command registers even if it never makes a socket (the shim's
  // images otherwise wait for their first): its parent is this process.
  env.push_back(absl::StrCat("CLOSEAUDIT_RUN_PID=", getpid()));
  std::vector<char*> envp, args;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> copy = argv;
  for (std::string& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  // An ignored SIGPIPE would survive the exec: give the command the
  // dispositions closeaudit itself was started with.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigdefault(&attr, &g_default_in_command);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int err = posix_spawnp(&pid, args[0], nullptr, &attr, args.data(),
                         envp.data());
  posix_spawnattr_destroy(&attr);
  if (err != 0) return absl::ErrnoToStatus(err, "cannot run " + argv[0]);
  return pid;
}

struct RunResult {
  int exit_code = 0;
  Report report;
};

// Runs argv under the audit until it exits. `driver`, if set, runs on its own
// thread once the command started (the demo's clients).
absl::StatusOr<RunResult> RunAudited(
    const std::vector<std::string>& argv, SessionOptions options,
    const std::function<void(pid_t)>& driver) {
  std::string shim = ShimPath();
  if (shim.empty()) {
    return absl::NotFoundError(
        "cannot find libcloseaudit.so next to this binary; set CLOSEAUDIT_LIB");
  }
  absl::StatusOr<std::string> socket_path = PrivateSocketPath();
  if (!socket_path.ok()) return socket_path.status();
  options.socket_path = *socket_path;
  Session session(options);
  if (absl::Status s = session.Start(); !s.ok()) {
    RemoveSocketDir(*socket_path);
    return s;
  }
  InstallSignalHandlers();
  std::optional<std::string> unauditable =
      WhyUnauditable(ResolveProgram(argv[0]));
  if (unauditable) {
    fprintf(stderr, "closeaudit: warning: %s. Running it anyway.\n",
            unauditable->c_str());
    // Said now, so that the live counts know it too: no findings.
    session.AddWarning(*unauditable, /*unaudited=*/true);
  }
  absl::StatusOr<pid_t> child = Spawn(argv, shim, *socket_path);
  if (!child.ok()) {
    session.StopServing();
    RemoveSocketDir(*socket_path);
    return child.status();
  }
  // Its sockets are sampled from the kernel even if it never reports.
  session.WatchPid(static_cast<uint32_t>(*child));
  std::thread driver_thread;
  if (driver) driver_thread = std::thread(driver, *child);
  // After the spawns: they keep this thread's priority as it was.
  session.LowerDrainPriority();

  int status = 0;
  bool exited = false;
  LiveLine status_line;
  while (!exited) {
    SnapshotIfAsked(session);
    status_line.Update(session);
    if (int sig = g_signal.exchange(0)) {
      // What the kernel says now, before the signal tears the sockets down.
      session.collector().DrainAll();
      session.SampleKernel();
      kill(*child, sig);
    }
    session.Poll(kDrainIntervalMs);
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(*child), &info,
               WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == *child) {
      // Once reaped, its pid may be another process's.
      session.WatchPid(0);
      // Let the collector see the exit (and the status) before reaping.
      session.Poll(0);
      while (waitpid(*child, &status, 0) < 0 && errno == EINTR) {
      }
      session.collector().NoteExit(
          *child, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      exited = true;
    }
  }
  status_line.Clear();
  if (driver_thread.joinable()) driver_thread.join();
  // Late hellos of short-lived descendants are still in the socket queue.
  for (int i = 0; i < 5; ++i) session.Poll(kDrainIntervalMs);
  bool registered = session.collector().streams_seen() > 0;
  if (!unauditable && !registered) {
    session.AddWarning(
        absl::StrFormat(
            "%s never reported to the collector: nothing was audited. "
            "Statically linked programs, setuid programs and programs that "
            "make raw system calls (Go) cannot be audited with LD_PRELOAD.",
            argv[0]),
        /*unaudited=*/true);
  }
  absl::StatusOr<Report> report = session.Finish();
  RemoveSocketDir(*socket_path);
  if (!report.ok()) return report.status();
  RunResult result;
  result.report = *std::move(report);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status)
                                       : 128 + WTERMSIG(status);
  return result;
}

// --min-severity and --kind.
absl::StatusOr<ReportFilter> FilterFromFlags() {
  return ParseReportFilter(absl::GetFlag(FLAGS_min_severity),
                           absl::GetFlag(FLAGS_kind));
}

// Prints the report in the --format asked for.
int PrintReport(const Report& report) {
  absl::StatusOr<std::string> out =
      RenderAs(report, absl::GetFlag(FLAGS_format));
  if (!out.ok()) return Fail(out.status());
  fputs(out->c_str(), stdout);
  fflush(stdout);
  return 0;
}

// For reports made again from traces (report, merge): an explicit --grace
// overrides the one each run used.
absl::StatusOr<AnalyzerOptions> ReanalysisOptions() {
  AnalyzerOptions options;
  absl::StatusOr<AppRules> app = ParseAppRules(g_app_paths, g_not_app);
  if (!app.ok()) return app.status();
  options.app = *std::move(app);
  absl::Duration grace = absl::GetFlag(FLAGS_grace);
  if (grace != absl::Seconds(5)) {
    options.grace_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(grace));
  }
  return options;
}

// --trace-limit: "0", a number of bytes, or one with K, M, G or T (KiB,
// MiB, ... ; "MiB", "MB" and "M" all mean 2^20).
absl::StatusOr<uint64_t> TraceLimitFromFlag() {
  std::string text = absl::AsciiStrToUpper(absl::GetFlag(FLAGS_trace_limit));
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "--trace-limit '", absl::GetFlag(FLAGS_trace_limit),
        "': give a size such as 512M or 2G, or 0 for no limit"));
  };
  for (absl::string_view unit : {"IB", "B"}) {
    if (text.size() > unit.size() && absl::EndsWith(text, unit) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(text[text.size() - unit.size() - 1]))) {
      text.resize(text.size() - unit.size());
      break;
    }
  }
  int shift = 0;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: break;
    }
    if (shift != 0) text.pop_back();
  }
  uint64_t n = 0;
  if (text.empty() || !absl::SimpleAtoi(text, &n) || (n >> (64 - shift - 1)) != 0) {
    return bad();
  }
  uint64_t limit = n << shift;
  // Below a few MiB every flush would start a compaction.
  constexpr uint64_t kMinimum = uint64_t{4} << 20;
  if (limit != 0 && limit < kMinimum) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--trace-limit ", absl::GetFlag(FLAGS_trace_limit),
        " is too small: 4M at least, or 0 for no limit"));
  }
  return limit;
}

absl::StatusOr<SessionOptions> OptionsFromFlags() {
  // Bad --format, --min-severity or --kind fail before anything runs.
  if (absl::Status s = RenderAs(Report{}, absl::GetFlag(FLAGS_format)).status();
      !s.ok()) {
    return s;
  }
  absl::StatusOr<ReportFilter> filter = FilterFromFlags();
  if (!filter.ok()) return filter.status();
  absl::StatusOr<AppRules> app = ParseAppRules(g_app_paths, g_not_app);
  if (!app.ok()) return app.status();
  SessionOptions options;
  options.app = *std::move(app);
  options.filter = *filter;
  options.host = absl::GetFlag(FLAGS_host);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  absl::Duration grace = absl::GetFlag(FLAGS_grace);
  if (grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--grace must not be negative");
  }
  options.grace_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(grace));
  absl::StatusOr<uint64_t> limit = TraceLimitFromFlag();
  if (!limit.ok()) return limit.status();
  options.trace_limit = *limit;
  options.compactor_exe = kSelfExe;
  options.json_path = absl::GetFlag(FLAGS_json);
  options.out_dir = absl::GetFlag(FLAGS_out);
  if (options.out_dir.empty()) {
    absl::StatusOr<std::string> dir = NewRunDir();
    if (!dir.ok()) return dir.status();
    options.out_dir = *dir;
  }
  return options;
}

int CmdRun(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    fprintf(stderr, "closeaudit run: no command given\n\n%s", kUsage);
    return 2;
  }
  int error_exitcode = absl::GetFlag(FLAGS_error_exitcode);
  if (error_exitcode < 0 || error_exitcode > 255) {
    return Fail(absl::InvalidArgumentError(
        "--error-exitcode must be 1-255 (or 0: the command's own status)"));
  }
  absl::StatusOr<SessionOptions> options = OptionsFromFlags();
  if (!options.ok()) return Fail(options.status());
  absl::StatusOr<RunResult> result = RunAudited(argv, *options, nullptr);
  if (!result.ok()) return Fail(result.status());
  if (int rc = PrintReport(result->report); rc != 0) return rc;
  fprintf(stderr, "closeaudit: trace and reports in %s\n",
          options->out_dir.c_str());
  // The report's findings are already the ones --min-severity and --kind
  // keep (Session::Finish).
  size_t findings = result->report.findings.size();
  if (error_exitcode != 0 && findings > 0) {
    fprintf(stderr,
            "closeaudit: exit status %d (--error-exitcode): %zu finding%s; "
            "the command exited with %d\n",
            error_exitcode, findings, findings == 1 ? "" : "s",
            result->exit_code);
    return error_exitcode;
  }
  return result->exit_code;
}

int CmdDemo() {
  std::string server = Locate("CLOSEAUDIT_DEMO_SERVER",
                              {"../demo/leaky_server",
                               "../libexec/closeaudit/leaky_server"});
  if (server.empty()) {
    return Fail(absl::NotFoundError("cannot find the demo server leaky_server"));
  }
  absl::StatusOr<SessionOptions> options = OptionsFromFlags();
  if (!options.ok()) return Fail(options.status());
  if (absl::GetFlag(FLAGS_grace) == absl::Seconds(5)) {
    options->grace_ns = 1'000'000'000;  // the demo need not wait 5 s
  }
  std::string port_file = options->out_dir + "/demo.port";
  fprintf(stderr,
          "closeaudit demo: starting %s under the audit and sending it a few "
          "clients...\n",
          server.c_str());
  uint64_t grace_ns = options->grace_ns;
  absl::StatusOr<RunResult> result = RunAudited(
      {server, port_file}, *options,
      [port_file, grace_ns](pid_t child) {
        DriveDemoClients(port_file, grace_ns);
        kill(child, SIGTERM);
      });
  if (!result.ok()) return Fail(result.status());
  if (int rc = PrintReport(result->report); rc != 0) return rc;
  fprintf(stderr,
          "\ncloseaudit demo: reports in %s (report.html for a browser); "
          "regenerate with `closeaudit report %s`.\n",
          options->out_dir.c_str(), options->out_dir.c_str());
  return result->report.findings.empty() ? 1 : 0;
}

int CmdReport(const std::vector<std::string>& args) {
  std::string dir = args.empty() ? StateDir() + "/latest" : args[0];
  if (args.size() > 1) {
    fprintf(stderr, "closeaudit report: one directory at most\n");
    return 2;
  }
  absl::StatusOr<AnalyzerOptions> options = ReanalysisOptions();
  if (!options.ok()) return Fail(options.status());
  absl::StatusOr<ReportFilter> filter = FilterFromFlags();
  if (!filter.ok()) return Fail(filter.status());
  absl::StatusOr<Report> report = ReportFromTrace(dir, *options);
  if (!report.ok()) return Fail(report.status());
  ApplyFilter(*filter, *report);
  if (int rc = PrintReport(*report); rc != 0) return rc;
  std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    if (absl::Status s = WriteFileAtomically(json, RenderJson(*report)); !s.ok()) {
      return Fail(s);
    }
  }
  return 0;
}

int CmdDaemon() {
  SessionOptions options;
  options.grace_ns =
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(absl::GetFlag(FLAGS_grace)));
  options.socket_path = absl::GetFlag(FLAGS_socket);
  if (options.socket_path.empty()) {
    char dir[256];
    paths::DefaultRuntimeDir(dir, sizeof(dir));
    options.socket_path = absl::StrCat(dir, "/", paths::kSocketName);
  }
  options.out_dir = absl::GetFlag(FLAGS_out);
  if (options.out_dir.empty()) {
    absl::StatusOr<std::string> dir = NewRunDir();
    if (!dir.ok()) return Fail(dir.status());
    options.out_dir = *dir;
  }
  options.host = absl::GetFlag(FLAGS_host);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  absl::StatusOr<uint64_t> limit = TraceLimitFromFlag();
  if (!limit.ok()) return Fail(limit.status());
  options.trace_limit = *limit;
  options.compactor_exe = kSelfExe;
  return RunDaemon(options, absl::GetFlag(FLAGS_idle),
                   !absl::GetFlag(FLAGS_foreground));
}

int CmdMerge(const std::vector<std::string>& dirs) {
  std::string out = absl::GetFlag(FLAGS_out);
  if (dirs.empty() || out.empty()) {
    fprintf(stderr, "closeaudit merge: usage: closeaudit merge DIR... --out DIR\n");
    return 2;
  }
  absl::StatusOr<ReportFilter> filter = FilterFromFlags();
  if (!filter.ok()) return Fail(filter.status());
  absl::StatusOr<AnalyzerOptions> options = ReanalysisOptions();
  if (!options.ok()) return Fail(options.status());
  std::vector<HostReport> inputs;
  for (const std::string& dir : dirs) {
    absl::StatusOr<Report> report = ReportFromTrace(dir, *options);
    if (!report.ok()) {
      return Fail(absl::Status(report.status().code(),
                               absl::StrCat(dir, ": ", report.status().message())));
    }
    // Traces from before hosts were recorded have none.
    std::string host = report->host.empty() ? "unknown host" : report->host;
    inputs.push_back({host, *std::move(report)});
  }
  // Two runs of one host stay apart too: name them by their directories,
  // and number what is still the same.
  std::map<std::string, int> seen;
  for (const HostReport& in : inputs) ++seen[in.host];
  std::map<std::string, int> used;
  for (size_t i = 0; i < inputs.size(); ++i) {
    HostReport& in = inputs[i];
    if (seen[in.host] < 2) continue;
    std::string dir = dirs[i];
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    in.host = absl::StrCat(in.host, " (", dir.substr(dir.rfind('/') + 1), ")");
  }
  for (const HostReport& in : inputs) ++used[in.host];
  std::map<std::string, int> nth;
  for (HostReport& in : inputs) {
    if (used[in.host] > 1) in.host = absl::StrCat(in.host, " #", ++nth[in.host]);
  }
  Report merged = MergeReports(std::move(inputs));
  ApplyFilter(*filter, merged);
  if (absl::Status s = MakeDirs(out); !s.ok()) return Fail(s);
  if (absl::Status s = WriteReports(merged, out, absl::GetFlag(FLAGS_json));
      !s.ok()) {
    return Fail(s);
  }
  if (int rc = PrintReport(merged); rc != 0) return rc;
  fprintf(stderr, "closeaudit: merged reports in %s\n", out.c_str());
  return 0;
}

// Sends one request to the collector of the run in DIR and prints the answer.
int AskCollector(const std::vector<std::string>& args, const char* command,
                 const std::string& request) {
  if (args.size() > 1) {
    fprintf(stderr, "closeaudit %s: one directory at most\n", command);
    return 2;
  }
  std::string dir = args.empty() ? StateDir() + "/latest" : args[0];
  absl::StatusOr<std::string> answer = AskControl(dir, request);
  if (!answer.ok()) return Fail(answer.status());
  fputs(answer->c_str(), stdout);
  return answer->rfind("error: ", 0) == 0 ? 1 : 0;
}

}  // namespace
}  // namespace closeaudit

int main(int argc, char** argv) {
  using namespace closeaudit;
  // libdwfl asks the debuginfod servers in DEBUGINFOD_URLS for debug files
  // it cannot find here, when the user set it; a server that does not
  // answer must not hold a report up for libdebuginfod's default 90 s.
  if (const char* urls = getenv("DEBUGINFOD_URLS"); urls && *urls) {
    setenv("DEBUGINFOD_TIMEOUT", "10", /*overwrite=*/0);
  }
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return VersionLine(); };
  absl::SetFlagsUsageConfig(usage);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    fputs(VersionLine().c_str(), stdout);
    return 0;
  }
  std::string command = argv[1];
  if (command == kCompactCommand) return CompactTraceCommand(argc, argv);
  // Flags follow the command: hand absl everything but the command itself
  // (and `status --json`, which is not the --json FILE of the others).
  // Flags are spelled with dashes (--min-severity); absl names them with
  // underscores. Nothing after "--" is ours.
  std::vector<std::string> spelled;
  spelled.reserve(static_cast<size_t>(argc));
  std::vector<char*> rest = {argv[0]};
  bool status_json = false;
  bool ours = true;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") ours = false;
    if (ours && command == "status" && arg == "--json") {
      status_json = true;
      continue;
    }
    // --app-path and --not-app may be given many times, which absl's flags
    // do not allow: they are taken here.
    if (ours && (arg == "--app-path" || arg == "--not-app") && i + 1 < argc) {
      (arg == "--app-path" ? g_app_paths : g_not_app).push_back(argv[++i]);
      continue;
    }
    if (ours && (arg.rfind("--app-path=", 0) == 0 || arg.rfind("--not-app=", 0) == 0)) {
      size_t eq = arg.find('=');
      (arg[2] == 'a' ? g_app_paths : g_not_app).push_back(arg.substr(eq + 1));
      continue;
    }
    if (ours && (arg == "--app-path" || arg == "--not-app")) {
      fprintf(stderr, "closeaudit: %s needs a value\n", arg.c_str());
      return 2;
    }
    if (ours && arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + static_cast<long>(end), '-',
                   '_');
    }
    spelled.push_back(std::move(arg));
    rest.push_back(spelled.back().data());
  }
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  if (command == "run") return CmdRun(args);
  if (command == "demo") return CmdDemo();
  if (command == "report") return CmdReport(args);
  if (command == "daemon") return CmdDaemon();
  if (command == "merge") return CmdMerge(args);
  if (command == "status") {
    return AskCollector(args, "status", status_json ? "status json" : "status");
  }
  if (command == "snapshot") return AskCollector(args, "snapshot", "snapshot");
  fprintf(stderr, "closeaudit: unknown command '%s'\n\n%s", command.c_str(),
          kUsage);
  return 2;
}
