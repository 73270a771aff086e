// `closeaudit merge`: one report from the reports of several hosts or runs.
//
// Findings are the same culprit when their kind, reason and symbolized
// stacks match (function, source file name and line, or for frames without
// a line the module's file name and offset: addresses and install paths
// differ from host to host). Their counts add up; examples stay tagged
// with the host they came from, and every host keeps at least one.
#include "collector/merge.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/version.h"

namespace closeaudit {
namespace {

constexpr size_t kMaxExamples = 5;
constexpr size_t kMaxHolders = 10;

// What makes two findings the same culprit: the same kind and reason, and
// stacks that are the same places in the program's code (GroupKey).
std::string CulpritKey(const Finding& f) {
  std::string key = absl::StrCat(f.kind, "|", f.reason);
  for (const auto& [name, frames] : f.stacks) {
    absl::StrAppend(&key, "|", name, ":", GroupKey(frames));
  }
  return key;
}

struct Culprit {
  Finding merged;
  std::vector<std::pair<std::string, int64_t>> per_host;  // in input order
  std::vector<std::vector<Example>> examples;             // per host
};

}  // namespace

Report MergeReports(std::vector<HostReport> inputs) {
  Report out;
  std::vector<std::string> hosts;
  std::map<std::string, size_t> index;  // culprit key -> culprits
  std::vector<Culprit> culprits;
  bool audited_any = false;
  for (HostReport& in : inputs) {
    Report& r = in.report;
    const std::string& host = in.host;
    hosts.push_back(host);
    audited_any = audited_any || r.audited;
    out.processes += r.processes;
    out.processes_with_sockets += r.processes_with_sockets;
    out.sockets_tracked += r.sockets_tracked;
    out.events += r.events;
    out.events_dropped += r.events_dropped;
    out.duration_s = std::max(out.duration_s, r.duration_s);
    if (out.grace_ms != 0 && r.grace_ms != out.grace_ms) {
      out.warnings.push_back(absl::StrFormat(
          "%s was judged with a grace period of %d ms, not %d ms", host,
          r.grace_ms, out.grace_ms));
    }
    if (out.grace_ms == 0) out.grace_ms = r.grace_ms;
    for (const std::string& w : r.warnings) {
      out.warnings.push_back(absl::StrCat(host, ": ", w));
    }
    for (std::string& v : r.library_versions) {
      if (std::find(out.library_versions.begin(), out.library_versions.end(),
                    v) == out.library_versions.end()) {
        out.library_versions.push_back(std::move(v));
      }
    }
    for (KernelObservation& o : r.kernel_observations) {
      o.host = host;
      out.kernel_observations.push_back(std::move(o));
    }
    for (ProcessSummary& p : r.process_list) {
      p.host = host;
      out.process_list.push_back(std::move(p));
    }
    for (Finding& f : r.findings) {
      std::string key = CulpritKey(f);
      auto [it, inserted] = index.try_emplace(key, culprits.size());
      if (inserted) {
        Culprit c;
        c.merged = f;
        c.merged.count = 0;
        c.merged.examples.clear();
        c.merged.holders.clear();
        c.merged.peers.clear();
        c.merged.confirmed_by_kernel = false;
        // Times are relative to each run's own start: not comparable.
        c.merged.began_ms.reset();
        c.merged.began_pid = 0;
        culprits.push_back(std::move(c));
      }
      Culprit& c = culprits[it->second];
      c.merged.count += f.count;
      c.merged.confirmed_by_kernel |= f.confirmed_by_kernel;
      c.per_host.emplace_back(host, f.count);
      for (Example& e : f.examples) e.host = host;
      c.examples.push_back(std::move(f.examples));
      for (Holder& h : f.holders) {
        if (c.merged.holders.size() < kMaxHolders) {
          h.host = host;
          c.merged.holders.push_back(std::move(h));
        }
      }
      for (const PeerCount& p : f.peers) {
        auto peer = std::find_if(
            c.merged.peers.begin(), c.merged.peers.end(),
            [&](const PeerCount& q) { return q.peer == p.peer; });
        if (peer == c.merged.peers.end()) {
          c.merged.peers.push_back(p);
        } else {
          peer->count += p.count;
        }
      }
    }
  }
  for (Culprit& c : culprits) {
    Finding& f = c.merged;
    // Examples round-robin over the hosts, so that each shows up.
    for (size_t round = 0; f.examples.size() < kMaxExamples; ++round) {
      bool any = false;
      for (std::vector<Example>& list : c.examples) {
        if (round < list.size() && f.examples.size() < kMaxExamples) {
          f.examples.push_back(list[round]);
          any = true;
        }
      }
      if (!any) break;
    }
    std::sort(f.peers.begin(), f.peers.end(),
              [](const PeerCount& x, const PeerCount& y) {
                return x.count > y.count;
              });
    // The message counts one host's sockets; say whose, and the others.
    std::vector<std::string> parts;
    for (const auto& [host, n] : c.per_host) {
      parts.push_back(absl::StrCat(host, " ", n));
    }
    f.message = absl::StrCat(c.per_host.front().first, ": ", f.message,
                             " [all hosts: ", absl::StrJoin(parts, ", "), "]");
    out.findings.push_back(std::move(f));
  }
  // Something was audited if any run was; the others' warnings say which
  // were not.
  out.audited = audited_any;
  out.closeaudit_version = kVersion;
  SortFindings(out.findings);
  out.host = absl::StrJoin(hosts, ", ");
  return out;
}

}  // namespace closeaudit
