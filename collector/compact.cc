#include "collector/compact.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "collector/records.h"
#include "collector/trace.h"
#include "common/spawn.h"
#include "common/wire.h"

namespace closeaudit {
namespace {

// The socket a record is about, by cookie; 0 for the rest.
uint64_t CookieOf(const Record& record) {
  if (const auto* e = std::get_if<EventRecord>(&record)) {
    switch (e->event.type) {
      case wire::EventType::kAddress: {
        wire::AddressEvent a;
        std::memcpy(&a, &e->event, sizeof(a));
        return a.cookie;
      }
      case wire::EventType::kCloseUntracked:
      case wire::EventType::kFork:
      case wire::EventType::kModule:
      case wire::EventType::kExec:
      case wire::EventType::kRuntime:
        return 0;
      default:
        return e->event.ident.cookie;
    }
  }
  if (const auto* k = std::get_if<KernelRecord>(&record)) return k->cookie;
  return 0;
}

struct Kept {
  uint64_t order;
  Record record;
};

// A socket's records while the analyzer holds it, kept small: a busy
// server's last second of connections is held at once.
struct SocketRecords {
  std::vector<std::pair<uint64_t, EventRecord>> events;
  // What its closes read of bad_close's state (FoldRecord::LastClose, its
  // `ref` a stack id until written).
  std::vector<std::pair<uint64_t, FoldRecord::LastClose>> reads;
  std::vector<Kept> other;  // kernel samples
};

}  // namespace

absl::StatusOr<CompactStats> CompactTrace(const std::string& in, uint64_t prefix,
                                          const std::string& out,
                                          const AnalyzerOptions& options) {
  CompactStats stats;
  Analyzer analyzer(options);
  // The records of the sockets the analyzer holds, until it lets go of
  // them; and the rest, which stay.
  absl::flat_hash_map<uint64_t, SocketRecords> by_socket;
  std::vector<Kept> rest;
  int64_t folded = 0;
  int64_t dropped_events = 0;
  auto let_go = [&] {
    for (auto it = by_socket.begin(); it != by_socket.end();) {
      if (analyzer.Tracks(it->first)) {
        ++it;
        continue;
      }
      dropped_events += static_cast<int64_t>(it->second.events.size());
      by_socket.erase(it++);
    }
  };
  auto read_as_record = [](const FoldRecord::LastClose& c) {
    FoldRecord f;
    f.last_closes.push_back(c);
    return Record(std::move(f));
  };
  uint64_t order = 0;
  absl::Status read = ReadTrace(
      in,
      [&](const Record& r) {
        // bad_close reads the fd's latest close at every close: that close
        // may be one of the records let go, so each close in the trace is
        // preceded by what it read (its `ref` a stack id until written).
        std::optional<FoldRecord::LastClose> read_before;
        if (const auto* e = std::get_if<EventRecord>(&r);
            e != nullptr && (e->event.type == wire::EventType::kClose ||
                             e->event.type == wire::EventType::kCloseUntracked)) {
          read_before = analyzer.LastCloseOf(e->stream, e->event.fd);
        }
        analyzer.Add(r);
        // An earlier compaction's: what it says is in the new ones.
        if (std::holds_alternative<FoldRecord>(r)) return;
        uint64_t cookie = CookieOf(r);
        if (cookie != 0 && analyzer.Tracks(cookie)) {
          SocketRecords& to = by_socket[cookie];
          if (read_before) to.reads.emplace_back(order++, *read_before);
          if (const auto* e = std::get_if<EventRecord>(&r)) {
            to.events.emplace_back(order++, *e);
          } else {
            to.other.push_back({order++, r});
          }
        } else {
          if (read_before) rest.push_back({order++, read_as_record(*read_before)});
          rest.push_back({order++, r});
        }
        if (analyzer.sockets_folded() != folded) {
          folded = analyzer.sockets_folded();
          let_go();
        }
      },
      &stats.warning, prefix);
  if (!read.ok()) return read;
  analyzer.Fold();
  let_go();
  stats.sockets_folded = analyzer.sockets_folded();

  for (auto& [cookie, records] : by_socket) {
    for (auto& [at, e] : records.events) rest.push_back({at, e});
    for (auto& [at, c] : records.reads) rest.push_back({at, read_as_record(c)});
    for (Kept& k : records.other) rest.push_back(std::move(k));
  }
  by_socket.clear();
  std::sort(rest.begin(), rest.end(),
            [](const Kept& a, const Kept& b) { return a.order < b.order; });
  const Analyzer::StackNames name = analyzer.NameStacks();
  TraceWriter writer;
  if (absl::Status s = writer.Open(out); !s.ok()) return s;
  for (Kept& k : rest) {
    if (auto* f = std::get_if<FoldRecord>(&k.record)) {
      for (FoldRecord::LastClose& c : f->last_closes) {
        c.ref = name(c.ref, c.stream).second;
      }
    }
    writer.Append(k.record);
  }
  for (const FoldRecord& f : analyzer.FoldRecords(dropped_events)) {
    writer.Append(Record(f));
  }
  if (absl::Status s = writer.Flush(); !s.ok()) return s;
  struct stat st;
  if (::stat(in.c_str(), &st) == 0) {
    stats.bytes_in = std::min<uint64_t>(prefix, static_cast<uint64_t>(st.st_size));
  }
  if (::stat(out.c_str(), &st) == 0) stats.bytes_out = static_cast<uint64_t>(st.st_size);
  return stats;
}

// The command line: internal-compact PARENT IN PREFIX OUT FOLD_AT [GRACE_NS].
// Its answer on stdout: "ok BYTES_IN BYTES_OUT FOLDED\n" and the warning,
// if any; or the error, with exit status 1.
absl::StatusOr<CompactStats> CompactTraceApart(const std::string& exe,
                                               const std::string& in, uint64_t prefix,
                                               const std::string& out,
                                               const AnalyzerOptions& options) {
  int answer[2];
  if (pipe2(answer, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe");
  std::vector<std::string> args = {exe,
                                   kCompactCommand,
                                   std::to_string(getpid()),
                                   in,
                                   std::to_string(prefix),
                                   out,
                                   std::to_string(options.fold_at)};
  if (options.grace_ns) args.push_back(std::to_string(*options.grace_ns));
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&files, answer[1], 1);
  // The calling thread blocks every signal (BackgroundJob), and the
  // collector's handlers are not the child's.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  CleanSignalsOnSpawn(&attr);
  pid_t pid = 0;
  int err = posix_spawn(&pid, exe.c_str(), &files, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  ::close(answer[1]);
  if (err != 0) {
    ::close(answer[0]);
    return absl::ErrnoToStatus(err, "start " + exe);
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(answer[0], buf, sizeof(buf));
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(answer[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::ErrnoToStatus(errno, "waitpid");
  }
  if (WIFSIGNALED(status)) {
    return absl::InternalError(absl::StrCat("the compacting process (", exe,
                                            ") was killed by signal ",
                                            WTERMSIG(status)));
  }
  size_t eol = text.find('\n');
  std::vector<absl::string_view> head =
      absl::StrSplit(absl::string_view(text).substr(0, eol), ' ');
  CompactStats stats;
  if (WEXITSTATUS(status) == 0 && eol != std::string::npos && head.size() == 4 &&
      head[0] == "ok" && absl::SimpleAtoi(head[1], &stats.bytes_in) &&
      absl::SimpleAtoi(head[2], &stats.bytes_out) &&
      absl::SimpleAtoi(head[3], &stats.sockets_folded)) {
    stats.warning = text.substr(eol + 1);
    return stats;
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.empty()) {
    text = absl::StrCat("the compacting process (", exe, ") exited with status ",
                        WEXITSTATUS(status), " and no answer");
  }
  return absl::InternalError(text);
}

int CompactTraceCommand(int argc, char** argv) {
  pid_t parent = 0;
  uint64_t prefix = 0;
  AnalyzerOptions options;
  uint64_t grace = 0;
  if ((argc != 7 && argc != 8) || std::string_view(argv[1]) != kCompactCommand ||
      !absl::SimpleAtoi(argv[2], &parent) || !absl::SimpleAtoi(argv[4], &prefix) ||
      !absl::SimpleAtoi(argv[6], &options.fold_at) ||
      (argc == 8 && !absl::SimpleAtoi(argv[7], &grace))) {
    fprintf(stderr,
            "closeaudit: %s is the collector's own: it compacts a trace for a "
            "running session\n",
            kCompactCommand);
    return 2;
  }
  if (argc == 8) options.grace_ns = grace;
  // Not a moment longer than the collector.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 1;
  // Nothing of the collector's but the answer.
  close_range(3, ~0U, 0);
  absl::StatusOr<CompactStats> stats = CompactTrace(argv[3], prefix, argv[5], options);
  std::string answer =
      stats.ok() ? absl::StrCat("ok ", stats->bytes_in, " ", stats->bytes_out, " ",
                                stats->sockets_folded, "\n", stats->warning)
                 : std::string(stats.status().message()) + "\n";
  for (size_t done = 0; done < answer.size();) {
    ssize_t n = ::write(1, answer.data() + done, answer.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 1;
    done += static_cast<size_t>(n);
  }
  return stats.ok() ? 0 : 1;
}

}  // namespace closeaudit
