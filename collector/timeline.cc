// Per-process timelines for the HTML report: how many sockets each process
// held over the run, how many of those had seen the peer's EOF without being
// closed (CLOSE_WAIT, as inferred from the program's calls), and how many the
// kernel showed in CLOSE_WAIT at each sample.
#include <algorithm>
#include <map>

#include "collector/analyzer.h"

namespace closeaudit {
namespace {

// Points drawn per process at most; longer runs keep each span's peak.
constexpr size_t kMaxPoints = 400;
// Processes drawn at most: the busiest, and every one where a finding began.
constexpr size_t kMaxTimelines = 24;

// Spans of a FoldedLoad: 10 ms at first, twice as long whenever a run
// outgrows kMaxSpans of them.
constexpr uint64_t kFoldedSpanNs = 10'000'000;
constexpr size_t kMaxSpans = 8192;

struct Delta {
  uint64_t ns;
  int32_t open;
  int32_t close_wait;
};

int64_t MsSince(uint64_t ns, uint64_t base) {
  return ns > base ? static_cast<int64_t>((ns - base) / 1000000) : 0;
}

// Folds points that fall in the same span of the run into one, keeping the
// span's highest values, so that a spike is never lost.
std::vector<TimelinePoint> Thin(std::vector<TimelinePoint> points,
                                int64_t span_ms) {
  if (points.size() <= kMaxPoints) return points;
  int64_t width = std::max<int64_t>(1, span_ms / static_cast<int64_t>(kMaxPoints) + 1);
  std::vector<TimelinePoint> out;
  for (const TimelinePoint& p : points) {
    int64_t bucket = p.t_ms / width * width;
    if (out.empty() || out.back().t_ms != bucket) {
      TimelinePoint first = p;
      first.t_ms = bucket;
      out.push_back(first);
      continue;
    }
    TimelinePoint& b = out.back();
    b.open = std::max(b.open, p.open);
    b.close_wait = std::max(b.close_wait, p.close_wait);
    if (p.kernel_close_wait) {
      b.kernel_close_wait =
          std::max(b.kernel_close_wait.value_or(0), *p.kernel_close_wait);
    }
  }
  return out;
}

}  // namespace

void Analyzer::NoteKernelSample(const KernelRecord& k, const Socket* tracked) {
  // A sweep's records share its time; sweeps come in time order.
  if (sweeps_.empty() || sweeps_.back() < k.mono_ns) {
    sweeps_.push_back(k.mono_ns);
  } else if (auto at = std::lower_bound(sweeps_.begin(), sweeps_.end(),
                                        k.mono_ns);
             *at != k.mono_ns) {
    sweeps_.insert(at, k.mono_ns);
  }
  if (k.state != 8) return;  // only CLOSE_WAIT is drawn
  if (tracked != nullptr) {
    for (const Hold& h : tracked->holds) {
      if (h.from <= k.mono_ns && h.to > k.mono_ns) {
        ++kernel_close_wait_[{k.mono_ns, h.stream}];
      }
    }
    return;
  }
  for (const auto& [pid, fd] : k.owners) {
    // The pid's current image, if it had started by then.
    auto it = live_stream_by_pid_.find(pid);
    if (it == live_stream_by_pid_.end()) continue;
    auto s = streams_.find(it->second);
    if (s != streams_.end() && s->second.process.start_mono_ns <= k.mono_ns) {
      ++kernel_close_wait_[{k.mono_ns, it->second}];
    }
  }
}

// Spans twice as long until `to` falls in one of kMaxSpans: each span adds
// up the two it replaces.
void Analyzer::WidenLoad(FoldedLoad& load, uint64_t to) {
  while (to > load.origin && (to - load.origin) / load.width >= kMaxSpans) {
    size_t n = (load.open.size() + 1) / 2;
    for (size_t i = 0; i < n; ++i) {
      load.open[i] = load.open[2 * i] +
                     (2 * i + 1 < load.open.size() ? load.open[2 * i + 1] : 0);
      load.close_wait[i] =
          load.close_wait[2 * i] +
          (2 * i + 1 < load.close_wait.size() ? load.close_wait[2 * i + 1] : 0);
    }
    load.open.resize(n);
    load.close_wait.resize(n);
    load.width *= 2;
  }
}

// Adds `from` to `into`: each of from's spans spread evenly over the spans
// of `into` it overlaps (the same spans, when both start together and one's
// width is a multiple of the other's, as they are within a run).
void Analyzer::MergeLoad(FoldedLoad& into, const FoldedLoad& from) {
  if (from.width == 0 || from.open.empty()) return;
  if (into.width == 0) {
    into = from;
    return;
  }
  const uint64_t end = from.origin + from.width * from.open.size();
  if (end <= into.origin) return;
  WidenLoad(into, end);
  size_t last = (end - 1 - into.origin) / into.width;
  if (into.open.size() <= last) {
    into.open.resize(last + 1);
    into.close_wait.resize(last + 1);
  }
  for (size_t i = 0; i < from.open.size(); ++i) {
    uint64_t a = from.origin + i * from.width;
    uint64_t b = a + from.width;
    uint64_t lo = std::max(a, into.origin);
    if (b <= lo) continue;
    for (size_t j = (lo - into.origin) / into.width;
         j < into.open.size() && into.origin + j * into.width < b; ++j) {
      uint64_t start = into.origin + j * into.width;
      double share = static_cast<double>(std::min(b, start + into.width) -
                                         std::max(lo, start)) /
                     static_cast<double>(from.width);
      into.open[j] += static_cast<uint64_t>(share * static_cast<double>(from.open[i]));
      if (i < from.close_wait.size()) {
        into.close_wait[j] +=
            static_cast<uint64_t>(share * static_cast<double>(from.close_wait[i]));
      }
    }
  }
}

void Analyzer::FoldIntoTimeline(const Socket& s) {
  const Hold& h = s.holds.front();
  FoldedLoad& load = folded_load_[h.stream];
  if (load.width == 0) {
    load.width = kFoldedSpanNs;
    auto stream = streams_.find(h.stream);
    load.origin = stream != streams_.end() ? stream->second.process.start_mono_ns
                                           : h.from;
    load.origin = std::min(load.origin, h.from);
  }
  uint64_t from = std::max(h.from, load.origin);
  uint64_t to = std::max(h.to, from);
  WidenLoad(load, to);
  auto add = [&load](std::vector<uint64_t>& spans, uint64_t a, uint64_t b) {
    if (b <= a) return;
    size_t last = (b - 1 - load.origin) / load.width;
    if (load.open.size() <= last) {
      load.open.resize(last + 1);
      load.close_wait.resize(last + 1);
    }
    for (size_t i = (a - load.origin) / load.width; i <= last; ++i) {
      uint64_t start = load.origin + i * load.width;
      spans[i] += std::min(b, start + load.width) - std::max(a, start);
    }
  };
  add(load.open, from, to);
  bool can_close_wait = s.eof_ns != 0 && (s.flags & wire::kFlagStream) &&
                        (s.flags & wire::kFlagInet);
  if (can_close_wait) add(load.close_wait, std::max(s.eof_ns, from), to);
}

void Analyzer::BuildTimelines(Report& report, uint64_t end_ns) const {
  uint64_t base = run_.start_mono_ns;
  std::map<uint32_t, std::vector<Delta>> deltas;
  // The folded sockets: how many were open on average over each span.
  for (const auto& [stream, load] : folded_load_) {
    std::vector<Delta>& d = deltas[stream];
    int64_t open = 0, close_wait = 0;
    for (size_t i = 0; i <= load.open.size(); ++i) {
      uint64_t start = load.origin + i * load.width;
      if (start > end_ns) break;
      bool in = i < load.open.size();
      auto mean = [width = load.width](uint64_t held) {
        return static_cast<int64_t>((held + width / 2) / width);
      };
      int64_t o = in ? mean(load.open[i]) : 0;
      int64_t c = in ? mean(load.close_wait[i]) : 0;
      if (o != open || c != close_wait) {
        d.push_back({start, static_cast<int32_t>(o - open),
                     static_cast<int32_t>(c - close_wait)});
      }
      open = o;
      close_wait = c;
    }
  }
  for (const Socket& s : sockets_) {
    bool can_close_wait = s.eof_ns != 0 && (s.flags & wire::kFlagStream) &&
                          (s.flags & wire::kFlagInet);
    for (const Hold& h : s.holds) {
      if (h.from > end_ns) continue;
      std::vector<Delta>& d = deltas[h.stream];
      bool ended = h.to <= end_ns;
      d.push_back({h.from, 1, 0});
      if (ended) d.push_back({h.to, -1, 0});
      uint64_t cw_from = std::max(s.eof_ns, h.from);
      if (can_close_wait && cw_from < h.to && cw_from <= end_ns) {
        d.push_back({cw_from, 0, 1});
        if (ended) d.push_back({h.to, 0, -1});
      }
    }
  }

  struct Candidate {
    ProcessTimeline timeline;
    int64_t peak = 0;
    bool began_here = false;
  };
  std::vector<Candidate> candidates;
  for (uint32_t id : stream_order_) {
    auto it = deltas.find(id);
    if (it == deltas.end()) continue;
    const Stream& stream = streams_.at(id);
    std::vector<Delta>& d = it->second;
    std::stable_sort(d.begin(), d.end(), [](const Delta& a, const Delta& b) {
      return a.ns < b.ns;
    });
    Candidate c;
    ProcessTimeline& t = c.timeline;
    t.pid = stream.process.pid;
    t.exe = stream.process.exe;
    t.start_ms = MsSince(stream.process.start_mono_ns, base);
    uint64_t stop = end_ns;
    if (stream.exited && stream.exit_ns) stop = std::min(stop, stream.exit_ns);
    t.end_ms = MsSince(stop, base);
    // The kernel's samples of this process, in time order.
    auto sweep = std::lower_bound(sweeps_.begin(), sweeps_.end(),
                                  stream.process.start_mono_ns);
    int64_t open = 0, close_wait = 0;
    auto add_samples_until = [&](uint64_t ns) {
      for (; sweep != sweeps_.end() && *sweep < ns && *sweep <= stop; ++sweep) {
        auto k = kernel_close_wait_.find({*sweep, id});
        t.points.push_back({MsSince(*sweep, base), open, close_wait,
                            k == kernel_close_wait_.end() ? 0 : k->second});
      }
    };
    for (size_t i = 0; i < d.size();) {
      add_samples_until(d[i].ns);
      uint64_t ns = d[i].ns;
      for (; i < d.size() && d[i].ns == ns; ++i) {
        open += d[i].open;
        close_wait += d[i].close_wait;
      }
      t.points.push_back({MsSince(ns, base), open, close_wait, std::nullopt});
      c.peak = std::max(c.peak, open);
    }
    add_samples_until(stop + 1);
    t.points = Thin(std::move(t.points), t.end_ms);
    for (const Finding& f : report.findings) {
      if (f.began_ms && f.began_pid == t.pid) c.began_here = true;
    }
    candidates.push_back(std::move(c));
  }

  // Which to draw: processes where a finding began, then the busiest.
  std::vector<size_t> order(candidates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (candidates[a].began_here != candidates[b].began_here) {
      return candidates[a].began_here;
    }
    return candidates[a].peak > candidates[b].peak;
  });
  if (order.size() > kMaxTimelines) {
    report.timelines_omitted = static_cast<int64_t>(order.size() - kMaxTimelines);
    order.resize(kMaxTimelines);
  }
  std::sort(order.begin(), order.end());  // back to the order they reported
  for (size_t i : order) {
    report.timelines.push_back(std::move(candidates[i].timeline));
  }
}

}  // namespace closeaudit
