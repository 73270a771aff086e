#include "collector/analyzer.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace closeaudit {
namespace {

using wire::EventType;

std::string FormatEndpoint(uint8_t family, const uint8_t* addr,
                           uint16_t port) {
  if (family == 4) {
    return absl::StrFormat("%d.%d.%d.%d:%d", addr[0], addr[1], addr[2],
                           addr[3], port);
  }
  std::string out = "[";
  for (int i = 0; i < 16; i += 2) {
    if (i) out += ":";
    absl::StrAppend(&out, absl::Hex((addr[i] << 8) | addr[i + 1]));
  }
  return absl::StrCat(out, "]:", port);
}

int64_t Ms(uint64_t ns) { return static_cast<int64_t>(ns / 1000000); }

// The first frame that names a function, for one-line summaries.
const Frame* TopFrame(const std::vector<Frame>& frames) {
  for (const Frame& f : frames) {
    if (!f.function.empty()) return &f;
  }
  return frames.empty() ? nullptr : &frames.front();
}

std::string Where(const std::vector<Frame>& frames) {
  const Frame* f = TopFrame(frames);
  if (!f || f->function.empty()) return "unknown code";
  if (f->file.empty()) return f->function;
  std::string file = f->file.substr(f->file.rfind('/') + 1);
  return absl::StrFormat("%s (%s:%d)", f->function, file, f->line);
}

}  // namespace

Analyzer::Analyzer(AnalyzerOptions options) : options_(options) {
  stacks_.emplace_back();  // id 0 means "no stack"
}

void Analyzer::Add(const Record& record) {
  if (const auto* r = std::get_if<RunRecord>(&record)) {
    run_ = *r;
  } else if (const auto* p = std::get_if<ProcessRecord>(&record)) {
    if (!streams_.contains(p->stream)) stream_order_.push_back(p->stream);
    Stream& s = streams_[p->stream];
    s.process = *p;
    latest_ns_ = std::max(latest_ns_, p->start_mono_ns);
  } else if (const auto* m = std::get_if<ModuleRecord>(&record)) {
    auto it = streams_.find(m->stream);
    if (it != streams_.end()) it->second.modules.push_back(*m);
  } else if (const auto* st = std::get_if<StackRecord>(&record)) {
    auto it = streams_.find(st->stream);
    if (it != streams_.end()) {
      uint32_t id = InternFrames(it->second, st->frames);
      it->second.stacks[st->ref] = id;
    }
  } else if (const auto* e = std::get_if<EventRecord>(&record)) {
    ++events_;
    OnEvent(*e);
  } else if (const auto* x = std::get_if<ExitRecord>(&record)) {
    auto it = streams_.find(x->stream);
    if (it == streams_.end()) return;
    Stream& s = it->second;
    s.exited = true;
    s.exit_ns = x->mono_ns;
    s.exit_status = x->exit_status;
    dropped_ += static_cast<int64_t>(x->dropped_events + x->torn_events);
    latest_ns_ = std::max(latest_ns_, x->mono_ns);
    // The kernel closes whatever the process still held.
    std::vector<std::pair<int, uint64_t>> held(s.fds.begin(), s.fds.end());
    for (const auto& [fd, cookie] : held) {
      DropHolder(s, x->stream, fd, cookie, x->mono_ns, false, 0);
    }
  } else if (const auto* end = std::get_if<EndRecord>(&record)) {
    have_end_ = true;
    end_ns_ = end->mono_ns;
  }
}

uint32_t Analyzer::InternModule(const ModuleRecord& module) {
  auto key = std::make_pair(module.path, module.build_id);
  auto it = module_ids_.find(key);
  if (it != module_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(modules_.size());
  modules_.push_back(module);
  module_ids_.emplace(std::move(key), id);
  return id;
}

uint32_t Analyzer::InternFrames(const Stream& stream,
                                const std::vector<uint64_t>& frames) {
  std::vector<NormFrame> norm;
  std::string key;
  for (uint64_t ip : frames) {
    NormFrame f{kNoModule, ip, ip};
    for (const ModuleRecord& m : stream.modules) {
      if (ip >= m.start && ip < m.end) {
        f.module = InternModule(m);
        f.offset = ip - m.load_bias;
        break;
      }
    }
    norm.push_back(f);
    absl::StrAppend(&key, f.module, ":", f.offset, ";");
  }
  auto it = stack_ids_.find(key);
  if (it != stack_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(stacks_.size());
  stacks_.push_back(std::move(norm));
  stack_ids_.emplace(std::move(key), id);
  return id;
}

uint32_t Analyzer::StackFor(const Stream& stream, uint32_t ref) const {
  if (ref == 0) return 0;
  auto it = stream.stacks.find(ref);
  return it == stream.stacks.end() ? 0 : it->second;
}

void Analyzer::AddHolder(Stream& stream, uint32_t stream_id, int fd,
                         uint64_t cookie, uint64_t now) {
  auto it = stream.fds.find(fd);
  if (it != stream.fds.end() && it->second != cookie) {
    // The number was reused without a close we saw (a raw syscall, say):
    // the old socket is no longer held here.
    DropHolder(stream, stream_id, fd, it->second, now, false, 0);
  }
  stream.fds[fd] = cookie;
  sockets_[cookie].holders.insert({stream_id, fd});
}

void Analyzer::DropHolder(Stream& stream, uint32_t stream_id, int fd,
                          uint64_t cookie, uint64_t now,
                          bool closed_by_program, uint32_t stack) {
  auto fit = stream.fds.find(fd);
  if (fit != stream.fds.end() && fit->second == cookie) stream.fds.erase(fit);
  auto sit = sockets_.find(cookie);
  if (sit == sockets_.end()) return;
  Socket& sock = sit->second;
  sock.holders.erase({stream_id, fd});
  if (!sock.holders.empty() || sock.gone_ns != 0) return;
  // close() sends FIN only when the last reference to the socket goes.
  sock.gone_ns = now;
  if (closed_by_program) {
    sock.closed_ns = now;
    sock.close_stack = stack;
  }
}

void Analyzer::OnEvent(const EventRecord& record) {
  auto sit = streams_.find(record.stream);
  if (sit == streams_.end()) return;
  Stream& stream = sit->second;
  const wire::Event& e = record.event;
  latest_ns_ = std::max(latest_ns_, e.mono_ns);
  uint64_t cookie = e.ident.cookie;
  switch (e.type) {
    case EventType::kSocket:
    case EventType::kAccept:
    case EventType::kInherited: {
      if (cookie == 0) return;
      Socket& sock = sockets_[cookie];
      sock.flags |= e.flags;
      if (e.type != EventType::kInherited || sock.created_ns == 0) {
        sock.created_ns = e.mono_ns;
        sock.creator_stream = record.stream;
      }
      if (e.type != EventType::kInherited) {
        sock.created_stack = StackFor(stream, e.blob);
        // A fresh socket under a reused cookie is impossible; a fresh one
        // under a reused fd number is not, and AddHolder handles it.
        sock.gone_ns = 0;
      }
      AddHolder(stream, record.stream, e.fd, cookie, e.mono_ns);
      break;
    }
    case EventType::kDup:
      if (cookie == 0) return;
      AddHolder(stream, record.stream, e.fd, cookie, e.mono_ns);
      break;
    case EventType::kEofSeen: {
      if (cookie == 0) return;
      Socket& sock = sockets_[cookie];
      sock.flags |= e.flags;
      if (sock.eof_ns != 0) break;
      sock.eof_ns = e.mono_ns;
      sock.eof_stack = StackFor(stream, e.blob);
      sock.eof_stream = record.stream;
      sock.eof_fd = e.fd;
      if (e.arg != 0) sock.last_use_stack = InternFrames(stream, {e.arg});
      break;
    }
    case EventType::kAddress: {
      wire::AddressEvent a;
      static_assert(sizeof(a) == sizeof(e));
      std::memcpy(&a, &e, sizeof(a));
      if (a.family != 4 && a.family != 6) return;
      auto it = sockets_.find(a.cookie);
      if (it == sockets_.end()) return;
      it->second.local = FormatEndpoint(a.family, a.local_addr, a.local_port);
      it->second.peer = FormatEndpoint(a.family, a.peer_addr, a.peer_port);
      break;
    }
    case EventType::kClose:
      if (cookie == 0) return;
      sockets_.try_emplace(cookie);
      DropHolder(stream, record.stream, e.fd, cookie, e.mono_ns, true,
                 StackFor(stream, e.blob));
      break;
    default:
      break;  // recorded for later finding kinds
  }
}

uint64_t Analyzer::EndNs() const { return have_end_ ? end_ns_ : latest_ns_; }

std::vector<Frame> Analyzer::Symbolize(uint32_t stack,
                                       Symbolizer& symbolizer) const {
  std::vector<Frame> out;
  if (stack == 0 || stack >= stacks_.size()) return out;
  for (const NormFrame& f : stacks_[stack]) {
    if (f.module == kNoModule) {
      Frame unknown;
      unknown.address = f.address;
      out.push_back(unknown);
      continue;
    }
    const ModuleRecord& m = modules_[f.module];
    std::vector<Frame> frames =
        symbolizer.Resolve(ModuleRef{m.path, m.build_id, 0}, f.offset);
    for (Frame& frame : frames) {
      frame.address = f.address;
      out.push_back(std::move(frame));
    }
  }
  return out;
}

void Analyzer::BuildCloseWaitLeaks(Symbolizer& symbolizer, uint64_t end_ns,
                                   Report& report) const {
  uint64_t grace = options_.grace_ns.value_or(run_.grace_ns);
  struct Group {
    std::vector<const std::pair<const uint64_t, Socket>*> sockets;
  };
  std::map<std::pair<uint32_t, uint32_t>, Group> groups;
  for (const auto& entry : sockets_) {
    const Socket& s = entry.second;
    if (s.eof_ns == 0 || !(s.flags & wire::kFlagStream)) continue;
    uint64_t until = s.closed_ns ? s.closed_ns : (s.gone_ns ? s.gone_ns : end_ns);
    if (until < s.eof_ns || until - s.eof_ns <= grace) continue;
    groups[{s.created_stack, s.eof_stack}].sockets.push_back(
        &entry);
  }
  for (auto& [key, group] : groups) {
    std::sort(group.sockets.begin(), group.sockets.end(),
              [](auto* a, auto* b) { return a->second.eof_ns < b->second.eof_ns; });
    Finding f;
    f.kind = "close_wait_leak";
    f.severity = "error";
    f.count = static_cast<int64_t>(group.sockets.size());
    auto [created, eof] = key;
    // The last read before the EOF, from the earliest socket of the group.
    uint32_t last_use = group.sockets.front()->second.last_use_stack;
    std::vector<Frame> eof_frames = Symbolize(eof, symbolizer);
    f.stacks.emplace_back("eof_seen", eof_frames);
    f.stacks.emplace_back("created", Symbolize(created, symbolizer));
    f.stacks.emplace_back("last_use", Symbolize(last_use, symbolizer));
    int64_t closed_late = 0;
    for (const auto* entry : group.sockets) {
      const Socket& s = entry->second;
      if (s.closed_ns) ++closed_late;
      if (f.examples.size() >= 5) continue;
      Example ex;
      auto st = streams_.find(s.eof_stream);
      ex.pid = st == streams_.end() ? 0 : st->second.process.pid;
      ex.fd = s.eof_fd;
      ex.local = s.local;
      ex.peer = s.peer;
      uint64_t until = s.closed_ns ? s.closed_ns : (s.gone_ns ? s.gone_ns : end_ns);
      ex.age_ms = Ms(until - std::min(until, s.created_ns ? s.created_ns : s.eof_ns));
      ex.eof_to_end_ms = Ms(until - s.eof_ns);
      if (s.closed_ns) ex.closed_after_ms = Ms(s.closed_ns - s.eof_ns);
      if (s.flags & wire::kFlagInet) ex.tcp_state = "CLOSE_WAIT";
      f.examples.push_back(ex);
    }
    std::string where = Where(eof_frames);
    if (closed_late == f.count) {
      f.message = absl::StrFormat(
          "%d connection%s sat in CLOSE_WAIT for longer than the %d ms grace "
          "period: the peer closed, %s saw the EOF, and close() came late",
          f.count, f.count == 1 ? "" : "s", Ms(grace), where);
    } else {
      f.message = absl::StrFormat(
          "%d connection%s left in CLOSE_WAIT: the peer closed, %s saw the EOF "
          "(a read returned 0), and %s never closed",
          f.count, f.count == 1 ? "" : "s", where,
          closed_late ? "most were" : "the socket was");
    }
    f.advice =
        "close() the socket on the path where the read returns 0 (see "
        "eof_seen); every exit from the handler needs a close().";
    report.findings.push_back(std::move(f));
  }
}

Report Analyzer::Build(Symbolizer& symbolizer,
                       std::optional<uint64_t> as_of) const {
  Report report;
  uint64_t end_ns = as_of.value_or(EndNs());
  report.processes = static_cast<int64_t>(streams_.size());
  report.sockets_tracked = static_cast<int64_t>(sockets_.size());
  report.events = events_;
  report.events_dropped = dropped_;
  report.grace_ms = static_cast<uint64_t>(Ms(options_.grace_ns.value_or(run_.grace_ns)));
  if (run_.start_mono_ns && end_ns > run_.start_mono_ns) {
    report.duration_s = static_cast<double>(end_ns - run_.start_mono_ns) / 1e9;
  }
  for (uint32_t id : stream_order_) {
    const Stream& s = streams_.at(id);
    ProcessSummary p;
    p.pid = s.process.pid;
    p.ppid = s.process.ppid;
    p.exe = s.process.exe;
    p.argv = s.process.argv;
    if (s.exited && s.exit_status >= 0) p.exit_status = s.exit_status;
    report.process_list.push_back(std::move(p));
  }
  BuildCloseWaitLeaks(symbolizer, end_ns, report);
  std::stable_sort(report.findings.begin(), report.findings.end(),
                   [](const Finding& a, const Finding& b) {
                     return a.count > b.count;
                   });
  if (dropped_ > 0) {
    report.warnings.push_back(absl::StrFormat(
        "%d events were dropped (the collector fell behind); findings may be "
        "incomplete",
        dropped_));
  }
  for (const std::string& w : symbolizer.warnings()) report.warnings.push_back(w);
  return report;
}

}  // namespace closeaudit
