// Building the socket registry from records. The findings themselves are
// derived in findings.cc.
#include "collector/analyzer.h"

#include <algorithm>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collector/kernel.h"

namespace closeaudit {
namespace {

using wire::EventType;

}  // namespace

Analyzer::Analyzer(AnalyzerOptions options) : options_(options) {
  stacks_.emplace_back();   // id 0 means "no stack"
  details_.emplace_back();  // detail 0 means "none"
}

std::optional<uint32_t> Analyzer::SocketTable::IndexOf(uint64_t cookie) const {
  if (!ordered_.empty() && cookie <= ordered_.back().cookie) {
    // Galloping from the end: steps of 1, 2, 4, ... back until an entry is
    // not above the cookie, then a binary search in the last step.
    size_t n = ordered_.size();
    size_t hi = n;
    size_t step = 1;
    while (step < n && ordered_[n - step].cookie > cookie) {
      hi = n - step;
      step *= 2;
    }
    size_t lo = step < n ? n - step : 0;
    auto it = std::lower_bound(
        ordered_.begin() + lo, ordered_.begin() + hi, cookie,
        [](const Entry& e, uint64_t c) { return e.cookie < c; });
    if (it != ordered_.begin() + hi && it->cookie == cookie) return it->index;
  }
  auto it = others_.find(cookie);
  if (it == others_.end()) return std::nullopt;
  return it->second;
}

Analyzer::Socket& Analyzer::SocketTable::Get(uint64_t cookie) {
  if (ordered_.empty() || cookie > ordered_.back().cookie) return Add(cookie);
  if (std::optional<uint32_t> i = IndexOf(cookie)) return At(*i);
  return Add(cookie);
}

Analyzer::Socket& Analyzer::SocketTable::Add(uint64_t cookie) {
  if (ordered_.empty() || cookie > ordered_.back().cookie) {
    ordered_.push_back({cookie, size_});
  } else {
    others_.emplace(cookie, size_);
  }
  if (size_ % kChunk == 0) chunks_.push_back(std::make_unique<Socket[]>(kChunk));
  return At(size_++);
}

std::vector<uint64_t> Analyzer::SocketTable::Cookies() const {
  std::vector<uint64_t> cookies(size_);
  for (const Entry& e : ordered_) cookies[e.index] = e.cookie;
  for (const auto& [cookie, index] : others_) cookies[index] = cookie;
  return cookies;
}

bool Analyzer::OpenSocketKeys(size_t limit, std::vector<SocketKey>* out) const {
  // A stream's fds are its open holds (OpenHold, EndHold): walking them costs
  // what is open, where the registry also keeps the closed sockets that have
  // not folded yet, tens of thousands at a server's full rate, and walking
  // those took milliseconds of the draining thread's turn at every sweep.
  absl::flat_hash_set<uint64_t> seen;
  for (const auto& [id, stream] : streams_) {
    for (const auto& [fd, cookie] : stream.fds) {
      if (!seen.insert(cookie).second) continue;  // held twice
      const Socket* s = sockets_.Find(cookie);
      if (s == nullptr) continue;
      constexpr uint8_t kTcp = wire::kFlagStream | wire::kFlagInet;
      if ((s->flags & kTcp) != kTcp || (s->state & wire::kStateListening)) {
        continue;
      }
      if (s->detail == 0 || out->size() >= limit) return false;
      const SocketDetail& d = details_[s->detail];
      std::optional<SocketKey> key = KeyFromEndpoints(cookie, d.local, d.peer);
      if (!key) return false;
      out->push_back(*key);
    }
  }
  return true;
}

Analyzer::SocketDetail& Analyzer::DetailOf(Socket& socket) {
  if (socket.detail == 0) {
    socket.detail = static_cast<uint32_t>(details_.size());
    details_.emplace_back();
  }
  return details_[socket.detail];
}

void Analyzer::Add(const Record& record) {
  if (const auto* r = std::get_if<RunRecord>(&record)) {
    run_ = *r;
  } else if (const auto* p = std::get_if<ProcessRecord>(&record)) {
    OnProcess(*p);
  } else if (const auto* m = std::get_if<ModuleRecord>(&record)) {
    auto it = streams_.find(m->stream);
    if (it != streams_.end()) {
      Stream& s = it->second;
      if (m->path.starts_with(kJitModulePrefix)) {
        for (const ModuleRecord& old : s.modules) {
          if (old.start < m->end && m->start < old.end &&
              old.path.starts_with(kJitModulePrefix)) {
            ++s.jit_generation;  // code replaced: later events name it anew
            break;
          }
        }
      }
      s.modules.push_back(*m);
    }
  } else if (const auto* st = std::get_if<StackRecord>(&record)) {
    auto it = streams_.find(st->stream);
    if (it != streams_.end()) {
      Stream& s = it->second;
      uint32_t id = InternFrames(s, st->frames, st->py_frames);
      s.stacks[st->ref] = id;
      bool jit = false;
      for (const NormFrame& f : stacks_[id]) {
        if (f.module != kNoModule && f.module != kPythonFrame &&
            modules_[f.module].path.starts_with(kJitModulePrefix)) {
          jit = true;
          break;
        }
      }
      if (jit) {
        s.jit_stacks[st->ref] = {s.jit_generation, st->frames, st->py_frames};
      } else {
        s.jit_stacks.erase(st->ref);
      }
    }
  } else if (const auto* code = std::get_if<PyCodeRecord>(&record)) {
    auto it = streams_.find(code->stream);
    if (it != streams_.end()) {
      std::string key = absl::StrCat(code->minor, ":", code->firstlineno, ":",
                                     code->name.size(), ":", code->name,
                                     code->file.size(), ":", code->file,
                                     code->table);
      auto [known, fresh] = py_code_ids_.try_emplace(
          std::move(key), static_cast<uint32_t>(py_codes_.size()));
      if (fresh) py_codes_.push_back(*code);
      it->second.py_codes[code->ref] = known->second;
    }
  } else if (const auto* e = std::get_if<EventRecord>(&record)) {
    Add(*e);
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
    EndAllHolds(s, x->stream, x->mono_ns, End::kExit);
    auto live = live_stream_by_pid_.find(s.process.pid);
    if (live != live_stream_by_pid_.end() && live->second == x->stream) {
      live_stream_by_pid_.erase(live);
    }
  } else if (const auto* k = std::get_if<KernelRecord>(&record)) {
    OnKernel(*k);
  } else if (const auto* note = std::get_if<NoteRecord>(&record)) {
    notes_.push_back(note->text);
    unaudited_ = unaudited_ || note->unaudited;
  } else if (const auto* end = std::get_if<EndRecord>(&record)) {
    have_end_ = true;
    end_ns_ = end->mono_ns;
  } else if (const auto* fold = std::get_if<FoldRecord>(&record)) {
    OnFold(*fold);
  }
}

void Analyzer::OnProcess(const ProcessRecord& p) {
  if (streams_.contains(p.stream)) return;  // a repeated id: keep the first
  stream_order_.push_back(p.stream);
  Stream& s = streams_[p.stream];
  s.process = p;
  latest_ns_ = std::max(latest_ns_, p.start_mono_ns);
  // A new image under a pid we follow: that process exec'd. Its old image's
  // fds went away at the exec; the ones without CLOEXEC come back as the new
  // image announces what it found open.
  auto live = live_stream_by_pid_.find(p.pid);
  if (live != live_stream_by_pid_.end() && live->second != p.stream) {
    auto old = streams_.find(live->second);
    if (old != streams_.end() && !old->second.exited) {
      Stream& o = old->second;
      uint64_t when = o.exec_ns ? o.exec_ns : p.start_mono_ns;
      EndAllHolds(o, live->second, when, End::kExec);
      o.replaced = true;
      s.exec_from = live->second;
    }
  }
  live_stream_by_pid_[p.pid] = p.stream;
}

uint32_t Analyzer::InternModule(const ModuleRecord& module) {
  // One file is one module under whichever path a process loaded it (/lib
  // and /usr/lib are one directory on merged-/usr systems): by its build-id
  // when it has one.
  auto key = module.build_id.empty()
                 ? std::make_pair(module.path, std::string())
                 : std::make_pair(std::string(), module.build_id);
  auto it = module_ids_.find(key);
  if (it != module_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(modules_.size());
  modules_.push_back(module);
  module_ids_.emplace(std::move(key), id);
  return id;
}

uint32_t Analyzer::InternFrames(const Stream& stream,
                                const std::vector<uint64_t>& frames,
                                const std::vector<wire::PyFrame>& py_frames) {
  std::vector<NormFrame> norm;
  std::string key;
  for (uint64_t ip : frames) {
    NormFrame f{kNoModule, ip, ip};
    // The latest module over the address: a runtime's JIT function that
    // replaced an earlier one there (module_finder.h), or an object loaded
    // where one was unloaded.
    for (auto m = stream.modules.rbegin(); m != stream.modules.rend(); ++m) {
      if (ip >= m->start && ip < m->end) {
        f.module = InternModule(*m);
        f.offset = ip - m->load_bias;
        break;
      }
    }
    norm.push_back(f);
    absl::StrAppend(&key, f.module, ":", f.offset, ";");
  }
  // Python frames follow the native ones (findings.cc puts them in place).
  for (const wire::PyFrame& py : py_frames) {
    auto code = stream.py_codes.find(py.code);
    if (code == stream.py_codes.end()) continue;
    norm.push_back({kPythonFrame, py.where, code->second});
    absl::StrAppend(&key, "py", code->second, ":", py.where, ";");
  }
  auto it = stack_ids_.find(key);
  if (it != stack_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(stacks_.size());
  stacks_.push_back(std::move(norm));
  stack_ids_.emplace(std::move(key), id);
  return id;
}

uint32_t Analyzer::StackFor(Stream& stream, uint32_t ref) {
  if (ref == 0) return 0;
  auto it = stream.stacks.find(ref);
  if (it == stream.stacks.end()) return 0;
  // The library writes a stack once: the same addresses, after the runtime
  // put other code there, are named by the JIT modules known now.
  auto jit = stream.jit_stacks.find(ref);
  if (jit != stream.jit_stacks.end() &&
      jit->second.generation != stream.jit_generation) {
    it->second = InternFrames(stream, jit->second.frames, jit->second.py_frames);
    jit->second.generation = stream.jit_generation;
  }
  return it->second;
}

void Analyzer::OnRuntime(Stream& stream, const wire::Event& e) {
  using wire::PyStatus;
  if ((e.aux & wire::kRuntimeKindMask) == wire::kRuntimeNodeAgent) {
    stream.node_agent = true;
    stream.own_perf_map = (e.aux & wire::kRuntimeNodeOwnPerfMap) != 0;
    return;
  }
  auto status = static_cast<PyStatus>(e.aux);
  if (status == PyStatus::kWalked) return;
  std::string version = absl::StrFormat("%d.%d", (e.arg >> 16) & 0xff,
                                        (e.arg >> 8) & 0xff);
  const char* why;
  switch (status) {
    case PyStatus::kUnknownVersion:
      why = ": no layout for this version; native frames only";
      break;
    case PyStatus::kDebugBuild:
      why = " debug build: native frames only";
      break;
    case PyStatus::kFreeThreaded:
      why = " free-threaded build: native frames only";
      break;
    case PyStatus::kLayoutMismatch:
      why = ": the interpreter's own offsets (_Py_DebugOffsets) disagree "
            "with its headers'; native frames only";
      break;
    case PyStatus::kInvalid:
      why = ": the interpreter's memory did not look as its layout says, "
            "and the library stopped reading it; native frames only";
      break;
    default:
      return;  // a newer library's word for something: nothing to say
  }
  std::string note = absl::StrCat("Python frames unavailable for ", version, why);
  if (std::find(runtime_notes_.begin(), runtime_notes_.end(), note) ==
      runtime_notes_.end()) {
    runtime_notes_.push_back(std::move(note));
  }
}

Analyzer::Socket& Analyzer::OpenHold(Stream& stream, uint32_t stream_id, int fd,
                                     uint64_t cookie, uint64_t ns,
                                     Origin origin) {
  Socket& sock = sockets_.Get(cookie);
  auto it = stream.fds.find(fd);
  if (it != stream.fds.end() && it->second != cookie) {
    // The number was reused without a close we saw (a raw syscall, say):
    // the old socket is no longer held here.
    EndHold(stream, stream_id, fd, it->second, ns, End::kReuse);
    sock.took_a_held_number = true;
  } else if (it != stream.fds.end()) {
    return sock;  // already held under this fd
  }
  stream.fds[fd] = cookie;
  auto lc = stream.last_close.find(fd);
  if (lc != stream.last_close.end()) lc->second.reopened = true;
  Hold h;
  h.stream = stream_id;
  h.fd = fd;
  h.origin = origin;
  h.from = ns;
  sock.holds.push_back(h);
  return sock;
}

Analyzer::Hold* Analyzer::EndHold(Stream& stream, uint32_t stream_id, int fd,
                                  uint64_t cookie, uint64_t ns, End end) {
  auto fit = stream.fds.find(fd);
  if (fit == stream.fds.end() || fit->second != cookie) return nullptr;
  stream.fds.erase(fit);
  Socket* sock = sockets_.Find(cookie);
  if (sock == nullptr) return nullptr;
  for (Hold& h : sock->holds) {
    if (h.fd == fd && h.end == End::kOpen && h.stream == stream_id) {
      h.end = end;
      h.to = std::max(ns, h.from);
      return &h;
    }
  }
  return nullptr;
}

void Analyzer::EndAllHolds(Stream& stream, uint32_t stream_id, uint64_t ns,
                           End end) {
  std::vector<std::pair<int, uint64_t>> held(stream.fds.begin(),
                                             stream.fds.end());
  for (const auto& [fd, cookie] : held) {
    EndHold(stream, stream_id, fd, cookie, ns, end);
  }
}

// A resync snapshot is read while the program's other threads go on: one
// may close a socket the snapshot still listed, or put a new one on its
// number, and send that to the old ring, which is read first. Whatever this
// stream saw happen on the number at or after the snapshot's read is newer
// than the snapshot's line.
bool Analyzer::StaleResync(const Stream& stream, uint32_t stream_id, int fd,
                           uint64_t ns) {
  if (auto it = stream.fds.find(fd); it != stream.fds.end()) {
    const Socket* sock = sockets_.Find(it->second);
    if (sock == nullptr) return false;
    for (const Hold& h : sock->holds) {
      if (h.stream == stream_id && h.fd == fd && h.end == End::kOpen) {
        return h.from >= ns;
      }
    }
    return false;
  }
  auto lc = stream.last_close.find(fd);
  return lc != stream.last_close.end() && lc->second.ns >= ns;
}

void Analyzer::OnClose(Stream& stream, uint32_t stream_id,
                       const wire::Event& e) {
  uint64_t cookie = e.ident.cookie;
  uint32_t stack = StackFor(stream, e.blob);
  Stream::LastClose previous;
  bool had_previous = false;
  if (auto lc = stream.last_close.find(e.fd); lc != stream.last_close.end()) {
    previous = lc->second;
    had_previous = true;
  }
  if (e.type == EventType::kCloseUntracked) {
    // EBADF on a number the process held no tracked socket on. Programs do
    // that on purpose (bash closes pipe ends it may have closed already,
    // daemons close every number at start-up), and it harms nothing: only
    // the second close of a socket this process closed on that number, with
    // nothing opened there since, is a bug (a double close).
    ++ebadf_per_site_[{stream_id, stack}];
    if (!had_previous || previous.reopened) return;
    double_closes_.push_back(
        {stream_id, e.fd, e.mono_ns, stack, e.tid, previous});
    return;
  }
  if (cookie == 0) return;
  Socket& sock = sockets_.Get(cookie);
  sock.state |= e.state;
  // The same thread closing this number again, now that another thread put
  // a new socket on it that this thread never touched: the second close hit
  // the wrong socket.
  if (had_previous && previous.cookie != cookie && previous.tid == e.tid &&
      sock.created_here && sock.creator_tid != e.tid &&
      sock.created_ns > previous.ns && sock.eof_ns == 0 &&
      sock.shutdown_ns == 0 && !(e.state & wire::kStateUsed)) {
    reused_closes_.push_back(
        {stream_id, e.fd, cookie, stack, previous, e.mono_ns});
    reuse_victims_.insert(cookie);
  }
  Hold* h = EndHold(stream, stream_id, e.fd, cookie, e.mono_ns, End::kClose);
  if (h == nullptr) {
    // Another thread may have reused the number and had its event
    // committed first: that ended our hold as a reuse; it was this close.
    for (Hold& r : sock.holds) {
      if (r.stream == stream_id && r.fd == e.fd && r.end == End::kReuse) {
        r.end = End::kClose;
        r.to = std::max(r.from, std::min(r.to, e.mono_ns));
        h = &r;
      }
    }
  }
  if (h == nullptr) {
    // A close of a socket we never saw opened here (it predates what we
    // received): record it as a hold that ends now.
    Hold closed;
    closed.stream = stream_id;
    closed.fd = e.fd;
    closed.origin = Origin::kStart;
    closed.from = e.mono_ns;
    sock.holds.push_back(closed);
    h = &sock.holds.back();
    h->end = End::kClose;
    h->to = e.mono_ns;
  }
  h->close_stack = stack;
  // A runtime's shutdown on its way to this close came without a stack.
  if (sock.shutdown_before_close && sock.shutdown_stack == 0 &&
      sock.shutdown_stream == stream_id) {
    sock.shutdown_stack = stack;
  }
  h->close_state = e.state;
  h->close_tid = e.tid;
  h->unsent = e.arg;
  stream.last_close[e.fd] = {cookie, e.mono_ns, stack, e.tid, false};
}

void Analyzer::OnEvent(const EventRecord& record) {
  auto sit = streams_.find(record.stream);
  if (sit == streams_.end()) return;
  Stream& stream = sit->second;
  const wire::Event& e = record.event;
  latest_ns_ = std::max(latest_ns_, e.mono_ns);
  uint64_t cookie = e.ident.cookie;
  switch (e.type) {
    case EventType::kRuntime:
      OnRuntime(stream, e);
      return;
    case EventType::kSocket:
    case EventType::kAccept: {
      if (cookie == 0) return;
      Socket& sock = OpenHold(stream, record.stream, e.fd, cookie, e.mono_ns,
                              Origin::kCreated);
      sock.flags |= e.flags;
      sock.state |= e.state;
      sock.created_ns = e.mono_ns;
      sock.creator_stream = record.stream;
      sock.creator_tid = e.tid;
      sock.created_here = true;
      sock.accepted = e.type == EventType::kAccept;
      sock.created_stack = StackFor(stream, e.blob);
      if (sock.accepted) {
        auto l = stream.fds.find(static_cast<int>(e.arg));
        if (l != stream.fds.end()) {
          if (std::optional<uint32_t> i = sockets_.IndexOf(l->second)) {
            sock.listener = *i + 1;
          }
        }
      }
      break;
    }
    case EventType::kInherited: {
      if (cookie == 0) return;
      // aux: 0 open at start, 1 over a fork, 2 received, 3 resync snapshot
      // after the process moved to a new ring; and whether a service
      // manager handed it over (LISTEN_FDS).
      uint32_t from = e.aux & wire::kInheritedFromMask;
      if (from == 3 && StaleResync(stream, record.stream, e.fd, e.mono_ns)) {
        break;
      }
      Origin origin = from == 1   ? Origin::kFork
                      : from == 2 ? Origin::kReceived
                      : (e.aux & wire::kInheritedListenFd) ? Origin::kListenFd
                                                           : Origin::kStart;
      Socket& sock =
          OpenHold(stream, record.stream, e.fd, cookie, e.mono_ns, origin);
      sock.flags |= e.flags;
      sock.state |= e.state & ~wire::kStateUsed;
      if (sock.created_ns == 0) {
        sock.created_ns = e.mono_ns;
        sock.creator_stream = record.stream;
      }
      break;
    }
    case EventType::kDup:
      if (cookie == 0) return;
      OpenHold(stream, record.stream, e.fd, cookie, e.mono_ns, Origin::kDup);
      break;
    case EventType::kConnect:
    case EventType::kListen:
      if (cookie != 0) sockets_.Get(cookie).state |= e.state;
      break;
    case EventType::kEofSeen: {
      if (cookie == 0) return;
      Socket& sock = sockets_.Get(cookie);
      sock.flags |= e.flags;
      if (sock.eof_ns != 0) break;
      sock.eof_ns = e.mono_ns;
      sock.eof_stack = StackFor(stream, e.blob);
      sock.eof_stream = record.stream;
      sock.eof_fd = e.fd;
      if (e.arg != 0) sock.last_use_stack = InternFrames(stream, {e.arg});
      break;
    }
    case EventType::kShutdown: {
      if (cookie == 0 || e.err != 0) return;
      Socket& sock = sockets_.Get(cookie);
      uint32_t how = e.aux & ~wire::kShutdownBeforeClose;
      if (sock.shutdown_ns == 0 && (how == 1 || how == 2)) {  // WR, RDWR
        sock.shutdown_ns = e.mono_ns;
        sock.shutdown_stack = StackFor(stream, e.blob);
        sock.shutdown_stream = record.stream;
        sock.shutdown_before_close = (e.aux & wire::kShutdownBeforeClose) != 0;
      }
      break;
    }
    case EventType::kLinger: {
      if (cookie == 0) return;
      bool abortive = (e.aux >> 16) != 0 && (e.aux & 0xffff) == 0;
      sockets_.Get(cookie).linger_stack =
          abortive ? StackFor(stream, e.blob) : 0;
      break;
    }
    case EventType::kHandler: {
      Socket* sock = cookie ? sockets_.Find(cookie) : nullptr;
      if (sock == nullptr) return;
      SocketDetail& d = DetailOf(*sock);
      auto kind = static_cast<wire::HandlerKind>(e.aux & wire::kHandlerKindMask);
      uint32_t stack = StackFor(stream, e.blob);
      switch (kind) {
        case wire::HandlerKind::kBufferevent:
          d.bufferevent_stack = stack;
          d.close_on_free = (e.aux & wire::kHandlerCloseOnFree) != 0;
          break;
        case wire::HandlerKind::kBuffereventFree:
          if (d.freed_ns == 0) {
            d.freed_ns = e.mono_ns;
            d.freed_stack = stack;
          }
          break;
        case wire::HandlerKind::kPython:
        case wire::HandlerKind::kBuffereventCb:
        case wire::HandlerKind::kEvent:
        case wire::HandlerKind::kUvRead: {
          // A Python handler's stack is its definition; the others' is
          // where the program registered the callback at arg.
          bool python = kind == wire::HandlerKind::kPython;
          if (python ? stack == 0 : e.arg == 0) return;
          Handler h{kind, python ? stack : InternFrames(stream, {e.arg}),
                    python ? 0 : stack, e.aux & ~wire::kHandlerKindMask};
          // Libraries register callbacks of their own (filters, wakeups):
          // a few are kept, and the report names the program's own.
          constexpr size_t kMaxHandlers = 4;
          std::erase_if(d.handlers, [&](const Handler& o) {
            return o.callback == h.callback;
          });
          if (d.handlers.size() == kMaxHandlers) d.handlers.erase(d.handlers.begin());
          d.handlers.push_back(h);
          break;
        }
        case wire::HandlerKind::kNode: {
          uint32_t role = wire::NodeRoleOf(e.aux);
          if (role == 0 || role >= d.node_stacks.size() || stack == 0) return;
          d.node_stacks[role] = stack;
          // The JavaScript that opened the socket, or the listeners of the
          // server that accepted it, are where it came from: uv__accept and
          // uv__socket under the event loop say nothing of the program. Told
          // of a listening socket, the roles are its accepted sockets'
          // (Findings looks them up through Socket::listener).
          if (!((sock->state | e.state) & wire::kStateListening) &&
              (role == static_cast<uint32_t>(wire::NodeRole::kServer) ||
               role == static_cast<uint32_t>(wire::NodeRole::kUpgrade) ||
               role == static_cast<uint32_t>(wire::NodeRole::kClient))) {
            sock->created_stack = stack;
          }
          d.node_flags |= e.aux & wire::kHandlerNodeFlags & ~wire::kHandlerNodeRoleMask;
          break;
        }
        default:
          return;  // a kind this collector does not know
      }
      break;
    }
    case EventType::kAddress: {
      wire::AddressEvent a;
      static_assert(sizeof(a) == sizeof(e));
      std::memcpy(&a, &e, sizeof(a));
      if (a.family != 4 && a.family != 6) return;
      Socket* sock = sockets_.Find(a.cookie);
      if (sock == nullptr) return;
      int family = a.family == 4 ? AF_INET : AF_INET6;
      SocketDetail& d = DetailOf(*sock);
      d.local = FormatEndpoint(family, a.local_addr, a.local_port);
      d.peer = FormatEndpoint(family, a.peer_addr, a.peer_port);
      break;
    }
    case EventType::kClose:
    case EventType::kCloseUntracked:
      OnClose(stream, record.stream, e);
      break;
    case EventType::kFork: {
      ForkInfo f;
      f.stack = StackFor(stream, e.blob);
      f.kind = e.aux;
      f.ns = e.mono_ns;
      if (e.aux == static_cast<uint32_t>(wire::ForkKind::kDaemon)) {
        f.child_pid = stream.process.pid;  // told by the child itself
      } else {
        f.parent_stream = record.stream;
        f.child_pid = static_cast<uint32_t>(e.arg);
      }
      forks_.push_back(f);
      break;
    }
    case EventType::kExec:
      stream.exec_ns = e.mono_ns;
      stream.exec_stack = StackFor(stream, e.blob);
      break;
    default:
      break;
  }
}

void Analyzer::OnKernel(const KernelRecord& k) {
  latest_ns_ = std::max(latest_ns_, k.mono_ns);
  Socket* sock = sockets_.Find(k.cookie);
  NoteKernelSample(k, sock);
  bool untracked = sock == nullptr;
  if (untracked) {
    if (k.inode == 0 || k.owners.empty()) return;
    sock = &untracked_[k.inode];
    sock->flags |= wire::kFlagStream | wire::kFlagInet;
  }
  SocketDetail& d = DetailOf(*sock);
  if (untracked) d.kernel_owners = k.owners;
  d.kernel_state = k.state;
  if (k.state == 8) {  // CLOSE_WAIT
    if (d.kernel_close_wait_ns == 0) d.kernel_close_wait_ns = k.mono_ns;
    d.kernel_close_wait_last_ns = k.mono_ns;
    if (k.recv_queue != KernelRecord::kNoRecvQueue) {
      d.kernel_close_wait_unread = std::max(d.kernel_close_wait_unread, k.recv_queue);
    }
  }
  if (k.state == 5) {  // FIN_WAIT2
    if (d.kernel_fin_wait2_ns == 0) d.kernel_fin_wait2_ns = k.mono_ns;
    d.kernel_fin_wait2_last_ns = k.mono_ns;
  }
  if (d.local.empty()) d.local = k.local;
  if (d.peer.empty()) d.peer = k.peer;
}

uint64_t Analyzer::EndNs() const { return have_end_ ? end_ns_ : latest_ns_; }

}  // namespace closeaudit
