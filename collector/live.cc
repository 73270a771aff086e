#include "collector/live.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "collector/report.h"

namespace closeaudit {
namespace {

std::string Plural(int64_t n, const char* one, const char* many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

// A label value: backslash, double quote and newline escaped.
std::string Label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string StatusLine(const LiveStatus& s) {
  return absl::StrCat(Plural(static_cast<int64_t>(s.processes.size()),
                             "process", "processes"),
                      " · ", Plural(s.open_sockets, "open socket", "open sockets"),
                      " · ", s.close_wait, " in CLOSE_WAIT · ",
                      Plural(s.findings, "finding", "findings"), " · ",
                      s.dropped, " dropped");
}

std::string StatusTable(const LiveStatus& s) {
  std::string out = absl::StrFormat(
      "closeaudit: running for %.0f s; %s; %d events received, %d dropped\n",
      s.uptime_s, Plural(s.findings, "finding", "findings"), s.events,
      s.dropped);
  for (const auto& [key, n] : s.finding_sockets) {
    absl::StrAppendFormat(&out, "  %-16s %-8s %d sockets\n", key.first,
                          key.second, n);
  }
  absl::StrAppendFormat(&out, "\n%8s %6s %11s  %s\n", "pid", "open",
                        "CLOSE_WAIT", "exe");
  for (const LiveProcess& p : s.processes) {
    absl::StrAppendFormat(&out, "%8d %6d %11d  %s\n", p.pid, p.open,
                          p.close_wait, p.exe);
  }
  absl::StrAppendFormat(&out, "%8s %6d %11d\n", "total", s.open_sockets,
                        s.close_wait);
  return out;
}

std::string StatusJson(const LiveStatus& s) {
  std::vector<std::string> procs;
  for (const LiveProcess& p : s.processes) {
    procs.push_back(absl::StrFormat(
        "{\"pid\":%d,\"exe\":%s,\"open_sockets\":%d,\"close_wait\":%d}", p.pid,
        JsonQuote(p.exe), p.open, p.close_wait));
  }
  std::vector<std::string> findings;
  for (const auto& [key, n] : s.finding_sockets) {
    findings.push_back(absl::StrFormat(
        "{\"kind\":%s,\"severity\":%s,\"sockets\":%d}", JsonQuote(key.first),
        JsonQuote(key.second), n));
  }
  return absl::StrFormat(
      "{\"uptime_s\":%.3f,\"processes\":[%s],\"open_sockets\":%d,"
      "\"close_wait\":%d,\"findings\":%d,\"finding_sockets\":[%s],"
      "\"events\":%d,\"events_dropped\":%d,\"kernel_sweeps\":{\"count\":%d,"
      "\"dumps\":%d,\"cpu_ms\":%.3f,\"last_cpu_ms\":%.3f,\"max_cpu_ms\":%.3f,"
      "\"last_sockets\":%d},\"longest_turn_ms\":%.3f,"
      "\"drain_priority\":{\"lowered\":%s,\"raises\":%d}}\n",
      s.uptime_s, absl::StrJoin(procs, ","), s.open_sockets, s.close_wait,
      s.findings, absl::StrJoin(findings, ","), s.events, s.dropped,
      s.sweeps.sweeps, s.sweeps.dumps, s.sweeps.cpu_ns / 1e6, s.sweeps.last_cpu_ns / 1e6,
      s.sweeps.max_cpu_ns / 1e6, s.sweeps.last_sockets,
      s.longest_turn_ns / 1e6, s.drain_lowered ? "true" : "false",
      s.drain_raises);
}

std::string MetricsText(
    const LiveStatus& s,
    std::map<std::pair<std::string, std::string>, int64_t>* floor) {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                    type, "\n");
  };
  family("closeaudit_finding_sockets_total", "counter",
         "Sockets found in findings so far, by finding kind and severity.");
  for (const auto& [key, n] : s.finding_sockets) {
    int64_t& seen = (*floor)[key];
    seen = std::max(seen, n);
  }
  for (const auto& [key, n] : *floor) {
    absl::StrAppend(&out, "closeaudit_finding_sockets_total{kind=\"",
                    Label(key.first), "\",severity=\"", Label(key.second),
                    "\"} ", n, "\n");
  }
  family("closeaudit_open_sockets", "gauge",
         "Sockets each audited process holds now.");
  for (const LiveProcess& p : s.processes) {
    absl::StrAppend(&out, "closeaudit_open_sockets{pid=\"", p.pid,
                    "\",exe=\"", Label(p.exe), "\"} ", p.open, "\n");
  }
  family("closeaudit_close_wait_sockets", "gauge",
         "Sockets of each audited process whose peer closed and that it has "
         "not closed (CLOSE_WAIT).");
  for (const LiveProcess& p : s.processes) {
    absl::StrAppend(&out, "closeaudit_close_wait_sockets{pid=\"", p.pid,
                    "\",exe=\"", Label(p.exe), "\"} ", p.close_wait, "\n");
  }
  family("closeaudit_processes", "gauge", "Audited processes running now.");
  absl::StrAppend(&out, "closeaudit_processes ", s.processes.size(), "\n");
  family("closeaudit_events_received_total", "counter",
         "Events received from the audited processes.");
  absl::StrAppend(&out, "closeaudit_events_received_total ", s.events, "\n");
  family("closeaudit_events_dropped_total", "counter",
         "Events the audited processes could not hand over (ring full).");
  absl::StrAppend(&out, "closeaudit_events_dropped_total ", s.dropped, "\n");
  family("closeaudit_kernel_sweeps_total", "counter",
         "Sweeps of the kernel's socket table (sock_diag) so far.");
  absl::StrAppend(&out, "closeaudit_kernel_sweeps_total ", s.sweeps.sweeps,
                  "\n");
  family("closeaudit_kernel_dumps_total", "counter",
         "Of those, walks of the whole table; the rest asked about the "
         "audited processes' sockets one by one.");
  absl::StrAppend(&out, "closeaudit_kernel_dumps_total ", s.sweeps.dumps, "\n");
  family("closeaudit_kernel_sweep_cpu_seconds_total", "counter",
         "The CPU time of those sweeps, the kernel's share included.");
  absl::StrAppend(&out, "closeaudit_kernel_sweep_cpu_seconds_total ",
                  absl::StrFormat("%.6f", s.sweeps.cpu_ns / 1e9), "\n");
  family("closeaudit_drain_priority_raises_total", "counter",
         "Times the draining thread, which runs at the lowest priority while "
         "it keeps up, fell behind and was raised back to the process's.");
  absl::StrAppend(&out, "closeaudit_drain_priority_raises_total ",
                  s.drain_raises, "\n");
  return out;
}

}  // namespace closeaudit
