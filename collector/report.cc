#include "collector/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "collector/app_frames.h"

namespace closeaudit {

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += absl::StrFormat("\\u%04x", c);
        } else if (c >= 0x80) {
          // Paths and argv are bytes, not necessarily UTF-8: keep the JSON
          // valid by escaping every non-ASCII byte as its Latin-1 code point.
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += "\"";
  return out;
}

namespace {

std::string Quote(std::string_view s) { return JsonQuote(s); }

std::string Basename(const std::string& path) {
  return path.substr(path.rfind('/') + 1);
}

template <typename T>
std::string OptionalNumber(const std::optional<T>& v) {
  return v ? absl::StrCat(*v) : "null";
}

std::string FrameJson(const Frame& f) {
  return absl::StrFormat(
      "{\"function\":%s,\"file\":%s,\"line\":%d,\"module\":%s,"
      "\"address\":\"0x%x\",\"offset\":%s,\"inlined\":%s,\"in_app\":%s,"
      "\"language\":%s}",
      Quote(f.function), Quote(f.file), f.line, Quote(f.module), f.address,
      f.module.empty() ? "null" : absl::StrFormat("\"0x%x\"", f.offset),
      f.inlined ? "true" : "false", f.in_app ? "true" : "false",
      Quote(f.language.empty() ? "native" : f.language));
}

std::string ExampleJson(const Example& e) {
  return absl::StrFormat(
      "{\"pid\":%d,\"fd\":%d,\"exe\":%s,\"local\":%s,\"peer\":%s,"
      "\"age_ms\":%d,\"eof_to_end_ms\":%s,\"closed_after_ms\":%s,"
      "\"tcp_state\":%s,\"unsent_bytes\":%s%s}",
      e.pid, e.fd, e.exe.empty() ? "null" : Quote(e.exe),
      e.local.empty() ? "null" : Quote(e.local),
      e.peer.empty() ? "null" : Quote(e.peer), e.age_ms,
      OptionalNumber(e.eof_to_end_ms), OptionalNumber(e.closed_after_ms),
      e.tcp_state ? Quote(*e.tcp_state) : "null",
      OptionalNumber(e.unsent_bytes),
      e.host.empty() ? "" : absl::StrCat(",\"host\":", Quote(e.host)));
}

// Fields only some kinds have.
std::string KindExtras(const Finding& f) {
  std::string out;
  if (!f.holders.empty()) {
    std::vector<std::string> hs;
    for (const Holder& h : f.holders) {
      hs.push_back(absl::StrFormat(
          "{\"pid\":%d,\"fd\":%d,\"exe\":%s%s}", h.pid, h.fd, Quote(h.exe),
          h.host.empty() ? "" : absl::StrCat(",\"host\":", Quote(h.host))));
    }
    absl::StrAppend(&out, ",\"holders\":[", absl::StrJoin(hs, ","), "]");
  }
  if (!f.reason.empty()) absl::StrAppend(&out, ",\"reason\":", Quote(f.reason));
  if (!f.peers.empty()) {
    std::vector<std::string> ps;
    for (const PeerCount& p : f.peers) {
      ps.push_back(absl::StrFormat("{\"peer\":%s,\"count\":%d}", Quote(p.peer),
                                   p.count));
    }
    absl::StrAppend(&out, ",\"peers\":[", absl::StrJoin(ps, ","), "]");
  }
  return out;
}

std::string FindingJson(const Finding& f) {
  std::vector<std::string> stacks;
  for (const auto& [name, frames] : f.stacks) {
    std::vector<std::string> fs;
    for (const Frame& frame : frames) fs.push_back(FrameJson(frame));
    stacks.push_back(absl::StrCat(Quote(name), ":[", absl::StrJoin(fs, ","), "]"));
  }
  std::vector<std::string> examples;
  for (const Example& e : f.examples) examples.push_back(ExampleJson(e));
  return absl::StrFormat(
      "{\"kind\":%s,\"severity\":%s,\"count\":%d,\"confirmed_by_kernel\":%s,"
      "\"message\":%s,\"advice\":%s%s,\"began_ms\":%s,\"began_pid\":%s,"
      "\"stacks\":{%s},\"examples\":[%s]}",
      Quote(f.kind), Quote(f.severity), f.count,
      f.confirmed_by_kernel ? "true" : "false", Quote(f.message),
      Quote(f.advice), KindExtras(f), OptionalNumber(f.began_ms),
      f.began_ms ? absl::StrCat(f.began_pid) : "null",
      absl::StrJoin(stacks, ","),
      absl::StrJoin(examples, ",\n    "));
}

std::string ObservationJson(const KernelObservation& o) {
  std::vector<std::string> sockets;
  for (const ObservedSocket& s : o.sockets) {
    sockets.push_back(absl::StrFormat(
        "{\"fd\":%d,\"local\":%s,\"peer\":%s,\"seen_ms\":%d}", s.fd,
        s.local.empty() ? "null" : Quote(s.local),
        s.peer.empty() ? "null" : Quote(s.peer), s.seen_ms));
  }
  return absl::StrFormat(
      "{\"pid\":%d,\"exe\":%s,\"tcp_state\":%s,\"count\":%d,"
      "\"longest_ms\":%d,\"sockets\":[%s]%s}",
      o.pid, o.exe.empty() ? "null" : Quote(o.exe), Quote(o.tcp_state),
      o.count, o.longest_ms, absl::StrJoin(sockets, ","),
      o.host.empty() ? "" : absl::StrCat(",\"host\":", Quote(o.host)));
}

std::string Duration(int64_t ms) {
  if (ms < 1000) return absl::StrFormat("%d ms", ms);
  return absl::StrFormat("%.1f s", static_cast<double>(ms) / 1000.0);
}

// " 0.1.0 (library 0.1.0)": the versions that made the report and its data.
std::string VersionsText(const Report& r) {
  std::string out;
  if (!r.closeaudit_version.empty()) absl::StrAppend(&out, " ", r.closeaudit_version);
  if (!r.library_versions.empty()) {
    absl::StrAppend(&out, " (library ", absl::StrJoin(r.library_versions, ", "),
                    ")");
  }
  return out;
}

// What the kernel showed of an unaudited program's sockets, as what it is.
void AppendObservationsText(std::string* out, const Report& r) {
  if (r.kernel_observations.empty()) return;
  absl::StrAppendFormat(
      out,
      "\nWhat the kernel showed of its sockets (none of its calls were seen: "
      "no stacks):\n");
  for (const KernelObservation& o : r.kernel_observations) {
    absl::StrAppendFormat(
        out, "    pid %d%s%s: %d socket%s in %s for longer than the %d ms grace "
        "period (the longest for %s)\n",
        o.pid, o.exe.empty() ? "" : absl::StrCat(" (", o.exe, ")"),
        o.host.empty() ? "" : absl::StrCat(" on ", o.host), o.count,
        o.count == 1 ? "" : "s", o.tcp_state, r.grace_ms,
        Duration(o.longest_ms));
    for (const ObservedSocket& s : o.sockets) {
      absl::StrAppendFormat(out, "        fd %d %s <- %s  %s\n", s.fd,
                            s.local.empty() ? "?" : s.local,
                            s.peer.empty() ? "?" : s.peer,
                            Duration(s.seen_ms));
    }
    if (o.count > static_cast<int64_t>(o.sockets.size())) {
      absl::StrAppendFormat(out, "        and %d more\n",
                            o.count - static_cast<int64_t>(o.sockets.size()));
    }
  }
}

}  // namespace

std::string VersionName(uint32_t packed) {
  if (packed == 0) return "unknown";
  return absl::StrFormat("%d.%d.%d", packed >> 16, (packed >> 8) & 0xff,
                         packed & 0xff);
}

std::string FrameName(const Frame& f) {
  if (!f.function.empty()) return f.function;
  if (f.module.empty()) return absl::StrFormat("0x%x", f.address);
  return absl::StrFormat("%s+0x%x", Basename(f.module), f.offset);
}

std::string FrameText(const Frame& f) {
  // C++ names without their parameters and template arguments (the JSON
  // keeps them whole).
  // A JIT's name (no module) is the runtime's own, not a C++ one.
  std::string name = f.function.empty() || f.module.empty()
                         ? FrameName(f)
                         : ShortFunction(f.function);
  if (f.inlined) name += " [inlined]";
  if (!f.file.empty()) {
    return absl::StrFormat("%s (%s:%d)", name, SourceName(f), f.line);
  }
  if (!f.module.empty() && !f.function.empty()) {
    return absl::StrFormat("%s (%s)", name, Basename(f.module));
  }
  if (f.module.empty() && !f.function.empty()) return name + " (JIT code)";
  return name;
}

std::string StackKey(const std::vector<Frame>& frames) {
  std::string key;
  for (const Frame& f : frames) {
    if (!f.file.empty() && f.line > 0) {
      absl::StrAppend(&key, f.function, "@", Basename(f.file), ":", f.line,
                      f.inlined ? "+inlined;" : ";");
    } else if (!f.module.empty()) {
      absl::StrAppendFormat(&key, "%s+0x%x;", Basename(f.module), f.offset);
    } else if (!f.function.empty()) {
      absl::StrAppend(&key, "jit:", f.function, ";");  // named by a perf map
    } else {
      absl::StrAppend(&key, "unknown;");
    }
  }
  return key;
}

std::string GroupKey(const std::vector<Frame>& frames) {
  size_t first = 0;
  while (first < frames.size() && !frames[first].in_app) ++first;
  if (first == frames.size()) return StackKey(frames);
  if (first > 0) {
    // Inlined frames of the call share its address: all of them.
    size_t end = first + 1;
    while (end < frames.size() && frames[end - 1].inlined) ++end;
    return absl::StrCat("call:", StackKey(std::vector<Frame>(
                                     frames.begin() + first,
                                     frames.begin() + end)));
  }
  size_t end = 0;
  while (end < frames.size() && frames[end].in_app) ++end;
  return absl::StrCat("own:", StackKey(std::vector<Frame>(
                                  frames.begin(), frames.begin() + end)));
}

bool IsStartupFrame(const Frame& f) {
  return f.function == "__libc_start_call_main" ||
         f.function == "__libc_start_main" || f.function == "_start" ||
         f.function == "__libc_start_main_impl" || f.function == "start_thread" ||
         f.function == "clone3" || f.function == "clone";
}

std::string RenderJson(const Report& r) {
  std::vector<std::string> procs;
  for (const ProcessSummary& p : r.process_list) {
    std::vector<std::string> argv;
    for (const std::string& a : p.argv) argv.push_back(Quote(a));
    procs.push_back(absl::StrFormat(
        "{\"pid\":%d,\"ppid\":%d,\"exe\":%s,\"argv\":[%s],\"exit_status\":%s%s}",
        p.pid, p.ppid, Quote(p.exe), absl::StrJoin(argv, ","),
        OptionalNumber(p.exit_status),
        p.host.empty() ? "" : absl::StrCat(",\"host\":", Quote(p.host))));
  }
  std::vector<std::string> findings;
  for (const Finding& f : r.findings) findings.push_back(FindingJson(f));
  std::vector<std::string> observations;
  for (const KernelObservation& o : r.kernel_observations) {
    observations.push_back(ObservationJson(o));
  }
  std::vector<std::string> warnings;
  for (const std::string& w : r.warnings) warnings.push_back(Quote(w));
  std::vector<std::string> timelines;
  for (const ProcessTimeline& t : r.timelines) {
    std::vector<std::string> points;
    for (const TimelinePoint& p : t.points) {
      points.push_back(absl::StrFormat("[%d,%d,%d,%s]", p.t_ms, p.open,
                                       p.close_wait,
                                       OptionalNumber(p.kernel_close_wait)));
    }
    timelines.push_back(absl::StrFormat(
        "{\"pid\":%d,\"exe\":%s,\"start_ms\":%d,\"end_ms\":%d,"
        "\"points\":[%s]}",
        t.pid, Quote(t.exe), t.start_ms, t.end_ms, absl::StrJoin(points, ",")));
  }
  std::vector<std::string> library_versions;
  for (const std::string& v : r.library_versions) {
    library_versions.push_back(Quote(v));
  }
  return absl::StrFormat(
      "{\"tool\":\"closeaudit\",\"format_version\":%d,"
      "\"closeaudit_version\":%s,\"library_versions\":[%s],\"audited\":%s,"
      "\"host\":%s,\n"
      " \"summary\":{\"processes\":%d,\"processes_with_sockets\":%d,"
      "\"sockets_tracked\":%d,\"events\":%d,"
      "\"events_dropped\":%d,\"findings\":%d,\"grace_ms\":%d,"
      "\"duration_s\":%.3f},\n"
      " \"warnings\":[%s],\n"
      " \"processes\":[%s],\n"
      " \"findings\":[\n  %s],\n"
      " \"kernel_observations\":[%s],\n"
      " \"timelines\":[%s]}\n",
      kReportFormatVersion, Quote(r.closeaudit_version),
      absl::StrJoin(library_versions, ","), r.audited ? "true" : "false",
      r.host.empty() ? "null" : Quote(r.host), r.processes,
      r.processes_with_sockets, r.sockets_tracked,
      r.events,
      r.events_dropped, r.findings.size(), r.grace_ms, r.duration_s,
      absl::StrJoin(warnings, ","), absl::StrJoin(procs, ",\n   "),
      absl::StrJoin(findings, ",\n  "), absl::StrJoin(observations, ",\n  "),
      absl::StrJoin(timelines, ",\n  "));
}

namespace {

// "... 11 frames in boost/asio, libstdc++": the libraries of frames a text
// stack leaves out.
std::string Summary(const std::vector<const Frame*>& frames, size_t begin,
                    size_t end) {
  std::vector<std::string> libs;
  bool more = false;
  for (size_t i = begin; i < end; ++i) {
    std::string lib = LibraryName(*frames[i]);
    if (lib.empty()) lib = "unknown code";
    if (std::find(libs.begin(), libs.end(), lib) != libs.end()) continue;
    if (libs.size() == 3) {
      more = true;
      break;
    }
    libs.push_back(std::move(lib));
  }
  return absl::StrFormat("... %d frame%s in %s%s", end - begin,
                         end - begin == 1 ? "" : "s", absl::StrJoin(libs, ", "),
                         more ? ", ..." : "");
}

// One stack as a person reads it: every frame of the program's own, the
// library frame each called (where control entered the library), and a line
// for each run of library frames left out. A stack with none of the
// program's frames shows its first six. The JSON keeps every frame.
void RenderStack(const std::string& label, const std::vector<Frame>& all,
                 std::string& out) {
  std::vector<const Frame*> frames;
  bool any_app = false;
  for (const Frame& f : all) {
    if (IsStartupFrame(f)) continue;
    frames.push_back(&f);
    any_app |= f.in_app;
  }
  bool first = true;
  auto line = [&](const std::string& text) {
    absl::StrAppendFormat(&out, "    %-13s %s\n", first ? label : "", text);
    first = false;
  };
  if (!any_app) {
    constexpr size_t kShown = 6;
    for (size_t i = 0; i < frames.size() && i < kShown; ++i) {
      line(FrameText(*frames[i]));
    }
    if (frames.size() > kShown) line(Summary(frames, kShown, frames.size()));
    return;
  }
  size_t i = 0;
  while (i < frames.size()) {
    if (frames[i]->in_app) {
      line(FrameText(*frames[i++]));
      continue;
    }
    size_t end = i;
    while (end < frames.size() && !frames[end]->in_app) ++end;
    bool entered = end < frames.size();  // the program called into it
    size_t run = end - i;
    // The interpreter's C code between two Python (or JavaScript) lines is
    // one line.
    bool under_script = entered && !frames[end]->language.empty() &&
                        frames[end - 1]->language.empty();
    if (run <= 2 && !under_script) {
      for (; i < end; ++i) line(FrameText(*frames[i]));
      continue;
    }
    // Where control entered the library, unless that is the interpreter's
    // C code under a Python line: the line says what it called.
    if (entered && frames[end - 1]->language == frames[end]->language) {
      line(Summary(frames, i, end - 1));
      line(FrameText(*frames[end - 1]));
    } else {
      line(Summary(frames, i, end));
    }
    i = end;
  }
}

}  // namespace

std::string RenderText(const Report& r) {
  std::string out;
  int errors = 0;
  for (const Finding& f : r.findings) errors += f.severity == "error";
  // "in 1 process with sockets (6 others without)": the wrappers a command
  // runs through (a shell, env, pyenv's shims) are counted, not listed.
  std::string procs = absl::StrFormat("%d process%s", r.processes,
                                      r.processes == 1 ? "" : "es");
  int64_t without = r.processes - r.processes_with_sockets;
  if (without > 0 && r.processes_with_sockets > 0) {
    procs = absl::StrFormat("%d process%s with sockets (%d other%s without)",
                            r.processes_with_sockets,
                            r.processes_with_sockets == 1 ? "" : "es", without,
                            without == 1 ? "" : "s");
  }
  absl::StrAppendFormat(
      &out,
      "closeaudit%s: %d finding%s (%d error%s) in %s; %d sockets tracked, %d "
      "events, %d dropped\n",
      VersionsText(r), r.findings.size(), r.findings.size() == 1 ? "" : "s", errors,
      errors == 1 ? "" : "s", procs, r.sockets_tracked, r.events,
      r.events_dropped);
  for (const std::string& w : r.warnings) {
    absl::StrAppend(&out, "warning: ", w, "\n");
  }
  if (!r.audited) {
    absl::StrAppend(&out,
                    "NOTHING WAS AUDITED: this report cannot show problems "
                    "(see the warning above).\n");
  } else if (r.findings.empty()) {
    absl::StrAppendFormat(&out,
                          "No socket problems found (grace period %d ms).\n",
                          r.grace_ms);
  }
  int n = 0;
  for (const Finding& f : r.findings) {
    absl::StrAppendFormat(&out, "\n[%d] %s x%d (%s%s)\n    %s\n", ++n, f.kind,
                          f.count, f.severity,
                          f.confirmed_by_kernel ? ", confirmed by the kernel" : "",
                          f.message);
    for (const auto& [name, frames] : f.stacks) {
      RenderStack(absl::StrCat(name, ":"), frames, out);
    }
    if (!f.reason.empty()) {
      absl::StrAppendFormat(&out, "    %-13s %s\n", "reason:", f.reason);
    }
    for (const Holder& h : f.holders) {
      absl::StrAppendFormat(&out, "    %-13s pid %d fd %d  %s\n",
                            &h == &f.holders.front() ? "held by:" : "", h.pid,
                            h.fd, h.exe);
    }
    for (const PeerCount& p : f.peers) {
      absl::StrAppendFormat(&out, "    %-13s %s x%d\n",
                            &p == &f.peers.front() ? "peers:" : "", p.peer,
                            p.count);
    }
    for (const Example& e : f.examples) {
      std::vector<std::string> notes;
      if (e.tcp_state) notes.push_back(*e.tcp_state);
      if (!e.exe.empty()) notes.push_back(e.exe);
      if (e.unsent_bytes) {
        notes.push_back(absl::StrCat(*e.unsent_bytes, " bytes unsent"));
      }
      if (e.closed_after_ms) {
        notes.push_back(absl::StrCat("closed ", Duration(*e.closed_after_ms),
                                     " after the EOF"));
      } else if (e.eof_to_end_ms) {
        notes.push_back(absl::StrCat("never closed; ",
                                     Duration(*e.eof_to_end_ms),
                                     " after the EOF"));
      }
      std::string conn =
          e.local.empty() && e.peer.empty()
              ? std::string()
              : absl::StrCat(" ", e.local.empty() ? "?" : e.local, " <- ",
                             e.peer.empty() ? "?" : e.peer);
      absl::StrAppendFormat(
          &out, "    %-13s pid %d fd %d%s%s\n",
          &e == &f.examples.front() ? "examples:" : "", e.pid, e.fd, conn,
          notes.empty() ? "" : "  " + absl::StrJoin(notes, ", "));
    }
    absl::StrAppendFormat(&out, "    %-13s %s\n", "fix:", f.advice);
  }
  AppendObservationsText(&out, r);
  return out;
}

namespace {

constexpr const char* kKinds[] = {"close_wait_leak", "fork_held",
                                  "bad_close",       "exec_inherited",
                                  "fin_wait2_held",  "abortive_close",
                                  "time_wait",       "pool_idle"};

}  // namespace

int SeverityRank(std::string_view severity) {
  if (severity == "error") return 3;
  if (severity == "warning") return 2;
  if (severity == "info") return 1;
  return 0;
}

void SortFindings(std::vector<Finding>& findings) {
  std::stable_sort(findings.begin(), findings.end(),
                   [](const Finding& a, const Finding& b) {
                     int ra = SeverityRank(a.severity);
                     int rb = SeverityRank(b.severity);
                     if (ra != rb) return ra > rb;
                     return a.count > b.count;
                   });
}

absl::StatusOr<std::string> RenderAs(const Report& report,
                                     std::string_view format) {
  if (format == "text") return RenderText(report);
  if (format == "json") return RenderJson(report);
  if (format == "html") return RenderHtml(report);
  if (format == "folded") return RenderFolded(report);
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown --format '", std::string(format),
      "': use text, json, html or folded"));
}

absl::StatusOr<ReportFilter> ParseReportFilter(
    std::string_view min_severity, const std::vector<std::string>& kinds) {
  ReportFilter filter;
  if (!min_severity.empty()) {
    filter.min_rank = SeverityRank(min_severity);
    if (filter.min_rank == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown --min-severity '", std::string(min_severity),
                       "': use info, warning or error"));
    }
  }
  for (const std::string& kind : kinds) {
    if (kind.empty()) continue;
    if (std::find(std::begin(kKinds), std::end(kKinds), kind) ==
        std::end(kKinds)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown --kind '", kind,
                       "': use one or more of ", absl::StrJoin(kKinds, ", ")));
    }
    filter.kinds.push_back(kind);
  }
  return filter;
}

void ApplyFilter(const ReportFilter& filter, Report& report) {
  if (!filter.active()) return;
  size_t before = report.findings.size();
  std::erase_if(report.findings, [&](const Finding& f) {
    if (SeverityRank(f.severity) < filter.min_rank) return true;
    return !filter.kinds.empty() &&
           std::find(filter.kinds.begin(), filter.kinds.end(), f.kind) ==
               filter.kinds.end();
  });
  size_t hidden = before - report.findings.size();
  if (hidden > 0) {
    report.warnings.push_back(absl::StrFormat(
        "%d finding%s hidden by --min-severity/--kind; the trace has them all",
        hidden, hidden == 1 ? " is" : "s are"));
  }
}

absl::Status WriteFileAtomically(const std::string& path,
                                 const std::string& contents) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, "create " + tmp);
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::ErrnoToStatus(saved, "write " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    return absl::ErrnoToStatus(saved, "flush " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    return absl::ErrnoToStatus(saved, "rename to " + path);
  }
  return absl::OkStatus();
}

}  // namespace closeaudit
