// Deriving findings from the socket registry: Analyzer::Build().
//
// Each kind has its page in docs/findings/, which states the rule applied
// here in words. Findings group sockets by the stacks that explain them, so
// one bug is one finding however many connections it hit.
#include <algorithm>
#include <map>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collector/app_frames.h"
#include "collector/analyzer.h"
#include "collector/kernel.h"
#include "common/version.h"

namespace closeaudit {

class FindingBuilder {
 public:
  using Socket = Analyzer::Socket;
  using SocketDetail = Analyzer::SocketDetail;
  using Hold = Analyzer::Hold;
  using End = Analyzer::End;
  using Origin = Analyzer::Origin;
  using Stream = Analyzer::Stream;

  // Without a symbolizer, stacks come out empty: enough to count findings.
  FindingBuilder(const Analyzer& a, Symbolizer* symbolizer, uint64_t end_ns)
      : a_(a),
        symbolizer_(symbolizer),
        end_ns_(end_ns),
        grace_(a.options_.grace_ns.value_or(a.run_.grace_ns)) {
    rules_.app_paths = a.run_.app_paths;
    rules_.not_app = a.run_.not_app;
    for (const std::string& d : a.options_.app.app_paths) rules_.app_paths.push_back(d);
    for (const std::string& p : a.options_.app.not_app) rules_.not_app.push_back(p);
  }

  void Run(Report& report) {
    ForkHeld(report);
    CloseWaitLeaks(report);
    NeverRead(report);
    FinWait2Held(report);
    AbortiveCloses(report);
    ExecInherited(report);
    BadCloses(report);
    TimeWait(report);
  }

 private:
  static constexpr size_t kMaxExamples = 5;

  // The frames of `stack`, each marked in_app or not.
  std::vector<Frame> Resolve(uint32_t stack) const {
    std::vector<Frame> out;
    if (symbolizer_ == nullptr || stack == 0 || stack >= a_.stacks_.size()) {
      return out;
    }
    for (const Analyzer::NormFrame& f : a_.stacks_[stack]) {
      if (f.module == Analyzer::kNoModule) {
        Frame unknown;
        unknown.address = f.address;
        unknown.in_app = InApp(unknown, rules_);
        out.push_back(unknown);
        continue;
      }
      const ModuleRecord& m = a_.modules_[f.module];
      for (Frame& frame :
           symbolizer_->Resolve(ModuleRef{m.path, m.build_id, 0}, f.offset)) {
        frame.address = f.address;
        frame.offset = f.offset;
        frame.in_app = InApp(frame, rules_);
        out.push_back(std::move(frame));
      }
    }
    return out;
  }

  // The frames a finding shows for a group whose stacks Canon() made one:
  // of them, the stack with the most of the program's own frames.
  std::vector<Frame> Sym(uint32_t stack) const {
    auto it = shown_.find(stack);
    return Resolve(it == shown_.end() ? stack : it->second.first);
  }

  // The stack that stands for every stack that is the same place in the
  // program's code (GroupKey): findings group by it, so that one call site
  // is one finding across all the processes of a binary, whatever addresses
  // ASLR gave each, across binaries built from the same code, and however
  // a library reached it. Without a symbolizer (the live counts) a stack
  // stands for itself: stacks are already one when their frames are at the
  // same offsets of the same modules.
  uint32_t Canon(uint32_t stack) {
    if (symbolizer_ == nullptr || stack == 0) return stack;
    auto [it, inserted] = canon_.try_emplace(stack, stack);
    if (inserted) {
      std::vector<Frame> frames = Resolve(stack);
      it->second = canon_by_key_.try_emplace(GroupKey(frames), stack)
                       .first->second;
      int64_t own = std::count_if(frames.begin(), frames.end(),
                                  [](const Frame& f) { return f.in_app; });
      auto [best, first] = shown_.try_emplace(it->second, stack, own);
      if (!first && own > best->second.second) best->second = {stack, own};
    }
    return it->second;
  }

  // What makes stacks one place in the program's code: the program's own
  // frames from the outermost in, up to where they first call into a
  // library. What a library does below that, and the program's code it
  // calls back, depends on the library's timing (asio reads speculatively
  // in the call, or later from its reactor) and is the same bug either way;
  // event libraries' callbacks are told apart by their handler stacks. A
  // stack with none of the program's frames is keyed by all of its frames.
  static std::string GroupKey(const std::vector<Frame>& frames) {
    size_t end = frames.size();
    while (end > 0 && !frames[end - 1].in_app) --end;
    if (end == 0) return StackKey(frames);
    size_t begin = end - 1;
    while (begin > 0 && frames[begin - 1].in_app) --begin;
    return absl::StrCat(
        "app:", StackKey(std::vector<Frame>(frames.begin() + begin,
                                            frames.begin() + end)));
  }

  const Stream* StreamOf(uint32_t id) const {
    auto it = a_.streams_.find(id);
    return it == a_.streams_.end() ? nullptr : &it->second;
  }
  uint32_t Pid(uint32_t stream) const {
    const Stream* s = StreamOf(stream);
    return s ? s->process.pid : 0;
  }
  std::string Exe(uint32_t stream) const {
    const Stream* s = StreamOf(stream);
    return s ? s->process.exe : "";
  }

  static bool ConnectedStream(const Socket& s) {
    return (s.flags & wire::kFlagStream) &&
           (s.state & wire::kStateConnected) &&
           !(s.state & wire::kStateListening);
  }
  static bool AnyOpen(const Socket& s) {
    for (const Hold& h : s.holds) {
      if (h.end == End::kOpen) return true;
    }
    return false;
  }
  // When the last reference went (kOpen while one is still held).
  static uint64_t LastEnd(const Socket& s) {
    uint64_t last = 0;
    for (const Hold& h : s.holds) last = std::max(last, h.to);
    return last;
  }
  // The close by the program that let the last reference go, if it was one.
  static const Hold* FinalClose(const Socket& s) {
    if (s.holds.empty() || AnyOpen(s)) return nullptr;
    const Hold* last = &s.holds.front();
    for (const Hold& h : s.holds) {
      if (h.to > last->to) last = &h;
    }
    return last->end == End::kClose ? last : nullptr;
  }
  // Whether the socket was still open at `t` (the end of the run counts as
  // open only if `t` is before it).
  bool HeldAt(const Socket& s, uint64_t t) const {
    if (t > end_ns_) return false;
    for (const Hold& h : s.holds) {
      if (h.from <= t && h.to > t) return true;
    }
    return false;
  }
  // How long ago, at the end of observation, the socket's life ended.
  uint64_t Until(const Socket& s) const {
    uint64_t last = LastEnd(s);
    return last == Analyzer::kOpen || last == 0 ? end_ns_
                                                : std::min(last, end_ns_);
  }
  static int64_t Ms(uint64_t ns) { return static_cast<int64_t>(ns / 1000000); }

  // Marks when (the earliest `ns` given) and in which process the finding's
  // first socket went wrong.
  void Began(Finding& f, uint64_t ns, uint32_t pid) const {
    uint64_t base = a_.run_.start_mono_ns;
    int64_t ms = Ms(ns > base ? ns - base : 0);
    if (!f.began_ms || ms < *f.began_ms) {
      f.began_ms = ms;
      f.began_pid = pid;
    }
  }

  const SocketDetail& Detail(const Socket& s) const { return a_.DetailOf(s); }

  std::optional<std::string> KernelState(const Socket& s) const {
    int state = Detail(s).kernel_state;
    if (state == 0) return std::nullopt;
    return std::string(TcpStateName(state));
  }

  Example BaseExample(const Socket& s, uint32_t stream, int fd) const {
    Example ex;
    ex.pid = Pid(stream);
    ex.fd = fd;
    ex.local = Detail(s).local;
    ex.peer = Detail(s).peer;
    uint64_t until = Until(s);
    uint64_t born = s.created_ns ? s.created_ns : until;
    ex.age_ms = Ms(until - std::min(until, born));
    ex.tcp_state = KernelState(s);
    return ex;
  }

  // The fork that gave `stream`'s process its copy, if one did.
  uint32_t ForkStackFor(uint32_t stream) const {
    uint32_t pid = Pid(stream);
    uint32_t stack = 0;
    for (const Analyzer::ForkInfo& f : a_.forks_) {
      if (f.child_pid == pid && f.stack) stack = f.stack;
    }
    return stack;
  }

  // The place a message names: the program's own innermost frame, and the
  // library function it called where the EOF (or close...) happened inside
  // one: "on_read (server.cc:30), in its call to async_read_some()". Never
  // a library's or runtime's function: a stack with none of the program's
  // frames is named by the code it is in.
  static std::string Where(const std::vector<Frame>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      const Frame& f = frames[i];
      if (!f.in_app || IsStartupFrame(f)) continue;
      std::string place = Place(f);
      if (i > 0 && !frames[i - 1].in_app && !frames[i - 1].function.empty()) {
        absl::StrAppend(&place, ", in its call to ",
                        ShortFunction(frames[i - 1].function), "()");
      }
      return place;
    }
    for (const Frame& f : frames) {
      std::string lib = LibraryName(f);
      if (!lib.empty()) {
        return absl::StrCat("code in ", lib,
                            " (none of the program's own frames is on the "
                            "stack)");
      }
    }
    return "unknown code";
  }

  // "handle (server.c:42)", or without a line, the function or the module
  // and offset.
  static std::string Place(const Frame& f) {
    if (f.function.empty()) return FrameName(f);
    if (f.file.empty()) return ShortFunction(f.function);
    return absl::StrFormat("%s (%s:%d)", ShortFunction(f.function),
                           f.file.substr(f.file.rfind('/') + 1), f.line);
  }

  static std::string Plural(int64_t n, const char* one, const char* many) {
    return absl::StrFormat("%d %s", n, n == 1 ? one : many);
  }

  // --- the kinds -------------------------------------------------------

  void ForkHeld(Report& report) {
    struct Item {
      const Socket* socket;
      const Hold* close;
      std::vector<const Hold*> holders;
    };
    std::map<std::pair<uint32_t, uint32_t>, std::vector<Item>> groups;
    for (const Socket& s : a_.sockets_) {
      if (!ConnectedStream(s)) continue;
      for (const Hold& h : s.holds) {
        if (h.end != End::kClose) continue;
        uint64_t t = h.to;
        bool last_here = true;
        for (const Hold& o : s.holds) {
          if (&o != &h && o.stream == h.stream && o.from <= t && o.to > t) {
            last_here = false;
          }
        }
        bool used = (h.close_state & wire::kStateUsed) ||
                    s.eof_stream == h.stream || s.shutdown_stream == h.stream;
        // A process that closes a socket it never used is handing it over
        // (the parent after fork), not ending the connection.
        if (!last_here || !used || t + grace_ > end_ns_) continue;
        std::vector<const Hold*> still;
        for (const Hold& o : s.holds) {
          if (o.stream != h.stream && o.from <= t && o.to > t + grace_) {
            still.push_back(&o);
          }
        }
        if (still.empty()) continue;
        groups[{Canon(h.close_stack), Canon(s.created_stack)}].push_back({&s, &h, still});
        fork_held_.insert(&s);
        break;
      }
    }
    for (const auto& [key, items] : groups) {
      Finding f;
      f.kind = "fork_held";
      f.severity = "error";
      f.count = static_cast<int64_t>(items.size());
      std::vector<Frame> close = Sym(key.first);
      const Item& first = items.front();
      const Hold* holder = first.holders.front();
      uint32_t fork_stack = holder->origin == Origin::kFork
                                ? ForkStackFor(holder->stream)
                                : ForkStackFor(first.close->stream);
      f.stacks.emplace_back("close", close);
      f.stacks.emplace_back("created", Sym(key.second));
      f.stacks.emplace_back("fork", Sym(fork_stack));
      absl::flat_hash_set<std::pair<uint32_t, int>> seen;
      for (const Item& item : items) {
        for (const Hold* o : item.holders) {
          if (f.holders.size() < 10 && seen.insert({Pid(o->stream), o->fd}).second) {
            f.holders.push_back({Pid(o->stream), o->fd, Exe(o->stream), ""});
          }
        }
        Began(f, item.close->to, Pid(item.close->stream));
        if (f.examples.size() < kMaxExamples) {
          const Socket& s = *item.socket;
          Example ex = BaseExample(s, item.close->stream, item.close->fd);
          if (!ex.tcp_state && s.eof_ns) ex.tcp_state = "CLOSE_WAIT";
          f.examples.push_back(ex);
        }
      }
      f.message = absl::StrFormat(
          "%s stayed open after %s closed them: pid %d (%s) still held them, "
          "so close() sent no FIN and the peer was left waiting",
          Plural(f.count, "connection", "connections"), Where(close),
          f.holders.front().pid, f.holders.front().exe);
      f.advice =
          "close the socket in every process that does not serve it: in a "
          "forking server the parent closes its copy right after fork(); "
          "children and exec'd helpers must not inherit it (SOCK_CLOEXEC).";
      report.findings.push_back(std::move(f));
    }
  }

  void CloseWaitLeaks(Report& report) {
    std::map<std::pair<uint32_t, uint32_t>, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      if (s.eof_ns == 0 || !(s.flags & wire::kFlagStream)) continue;
      if (fork_held_.contains(&s)) continue;
      uint64_t until = Until(s);
      if (until < s.eof_ns || until - s.eof_ns <= grace_) continue;
      groups[{Canon(s.created_stack), Canon(s.eof_stack)}].push_back(&s);
    }
    for (auto& [key, sockets] : groups) {
      std::stable_sort(sockets.begin(), sockets.end(),
                       [](const Socket* x, const Socket* y) {
                         return x->eof_ns < y->eof_ns;
                       });
      Finding f;
      f.kind = "close_wait_leak";
      f.severity = "error";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> eof = Sym(key.second);
      f.stacks.emplace_back("eof_seen", eof);
      f.stacks.emplace_back("created", Sym(key.first));
      f.stacks.emplace_back("last_use", Sym(sockets.front()->last_use_stack));
      Began(f, sockets.front()->eof_ns, Pid(sockets.front()->eof_stream));
      int64_t closed_late = 0;
      for (const Socket* sp : sockets) {
        const Socket& s = *sp;
        const Hold* final_close = FinalClose(s);
        if (final_close) ++closed_late;
        if (Detail(s).kernel_close_wait_ns) f.confirmed_by_kernel = true;
        if (f.examples.size() >= kMaxExamples) continue;
        Example ex = BaseExample(s, s.eof_stream, s.eof_fd);
        uint64_t until = Until(s);
        ex.eof_to_end_ms = Ms(until - s.eof_ns);
        if (final_close) ex.closed_after_ms = Ms(final_close->to - s.eof_ns);
        if (s.flags & wire::kFlagInet) ex.tcp_state = "CLOSE_WAIT";
        f.examples.push_back(ex);
      }
      std::string where = Where(eof);
      if (closed_late == f.count) {
        f.message = absl::StrFormat(
            "%s sat in CLOSE_WAIT for longer than the %d ms grace period: the "
            "peer closed, %s saw the EOF, and close() came late",
            Plural(f.count, "connection", "connections"), Ms(grace_), where);
      } else {
        f.message = absl::StrFormat(
            "%s left in CLOSE_WAIT: the peer closed, %s saw the EOF (a read "
            "returned 0), and %s never closed",
            Plural(f.count, "connection", "connections"), where,
            closed_late ? "most were" : "the socket was");
      }
      f.advice =
          "close() the socket on the path where the read returns 0 (see "
          "eof_seen); every exit from the handler needs a close().";
      report.findings.push_back(std::move(f));
    }
  }

  // The peer's FIN arrived (the kernel says CLOSE_WAIT) but no read ever
  // returned 0: the program is not reading the socket at all.
  void NeverRead(Report& report) {
    std::map<uint32_t, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      const SocketDetail& d = Detail(s);
      if (s.eof_ns != 0 || d.kernel_close_wait_ns == 0) continue;
      if (fork_held_.contains(&s)) continue;
      if (!HeldAt(s, d.kernel_close_wait_ns + grace_) &&
          d.kernel_close_wait_last_ns - d.kernel_close_wait_ns <= grace_) {
        continue;
      }
      groups[Canon(s.created_stack)].push_back(&s);
    }
    for (const auto& [inode, s] : a_.untracked_) {
      const SocketDetail& d = Detail(s);
      if (d.kernel_close_wait_ns == 0 ||
          d.kernel_close_wait_last_ns - d.kernel_close_wait_ns <= grace_) {
        continue;
      }
      groups[0].push_back(&s);
    }
    for (const auto& [created, sockets] : groups) {
      Finding f;
      f.kind = "close_wait_leak";
      f.severity = "error";
      f.confirmed_by_kernel = true;
      f.count = static_cast<int64_t>(sockets.size());
      f.stacks.emplace_back("eof_seen", std::vector<Frame>{});
      std::vector<Frame> created_frames = Sym(created);
      f.stacks.emplace_back("created", created_frames);
      f.stacks.emplace_back("last_use", std::vector<Frame>{});
      for (const Socket* s : sockets) {
        const SocketDetail& d = Detail(*s);
        uint32_t owner = d.kernel_owners.empty()
                             ? (s->holds.empty() ? 0 : Pid(s->holds.front().stream))
                             : d.kernel_owners.front().first;
        Began(f, d.kernel_close_wait_ns, owner);
      }
      for (const Socket* s : sockets) {
        if (f.examples.size() >= kMaxExamples) break;
        const SocketDetail& d = Detail(*s);
        Example ex;
        if (!d.kernel_owners.empty()) {
          ex.pid = d.kernel_owners.front().first;
          ex.fd = d.kernel_owners.front().second;
        } else {
          for (const Hold& h : s->holds) {
            ex.pid = Pid(h.stream);
            ex.fd = h.fd;
            if (h.end == End::kOpen) break;
          }
        }
        ex.local = d.local;
        ex.peer = d.peer;
        uint64_t until = s->holds.empty() ? end_ns_ : Until(*s);
        ex.age_ms = s->created_ns ? Ms(until - std::min(until, s->created_ns)) : 0;
        ex.eof_to_end_ms = Ms(until - std::min(until, d.kernel_close_wait_ns));
        ex.tcp_state = "CLOSE_WAIT";
        f.examples.push_back(ex);
      }
      f.message = absl::StrFormat(
          "%s in CLOSE_WAIT that the program never read: the peer closed, but "
          "no read returned 0 and nothing closed the socket%s",
          Plural(f.count, "connection", "connections"),
          created ? absl::StrFormat(" (accepted or created at %s)",
                                    Where(created_frames))
                  : std::string(" (opened before the audit started)"));
      f.advice =
          "read from every connection you accept (or close it): a socket "
          "nobody reads never learns that the peer left, and only close() "
          "ends CLOSE_WAIT.";
      report.findings.push_back(std::move(f));
    }
  }

  void FinWait2Held(Report& report) {
    std::map<std::pair<uint32_t, uint32_t>, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      if (s.shutdown_ns == 0 || !ConnectedStream(s)) continue;
      uint64_t deadline = s.shutdown_ns + grace_;
      if (s.eof_ns != 0 && s.eof_ns <= deadline) continue;  // the peer answered
      if (!HeldAt(s, deadline)) continue;
      groups[{Canon(s.shutdown_stack), Canon(s.created_stack)}].push_back(&s);
      fin_wait2_.insert(&s);
    }
    for (const auto& [key, sockets] : groups) {
      Finding f;
      f.kind = "fin_wait2_held";
      f.severity = "warning";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> shut = Sym(key.first);
      f.stacks.emplace_back("shutdown", shut);
      f.stacks.emplace_back("created", Sym(key.second));
      for (const Socket* sp : sockets) {
        const Socket& s = *sp;
        Began(f, s.shutdown_ns, Pid(s.shutdown_stream));
        if (Detail(s).kernel_fin_wait2_ns) f.confirmed_by_kernel = true;
        if (f.examples.size() >= kMaxExamples) continue;
        Example ex = BaseExample(s, s.shutdown_stream, -1);
        for (const Hold& h : s.holds) {
          if (h.stream == s.shutdown_stream) ex.fd = h.fd;
        }
        ex.eof_to_end_ms = Ms(Until(s) - std::min(Until(s), s.shutdown_ns));
        f.examples.push_back(ex);
      }
      f.message = absl::StrFormat(
          "%s half-closed with shutdown() at %s and then kept open for more "
          "than %d ms: this side waits in FIN_WAIT2, which tcp_fin_timeout "
          "does not end while the fd is open",
          Plural(f.count, "connection was", "connections were"), Where(shut),
          Ms(grace_));
      f.advice =
          "after shutdown(SHUT_WR), read until EOF (with a timeout) and then "
          "close(); shutdown() never replaces close().";
      report.findings.push_back(std::move(f));
    }
  }

  void AbortiveCloses(Report& report) {
    std::map<std::pair<uint32_t, uint32_t>, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      const Hold* h = FinalClose(s);
      if (h == nullptr || !(h->close_state & wire::kStateLinger0)) continue;
      groups[{Canon(s.linger_stack), Canon(h->close_stack)}].push_back(&s);
      abortive_.insert(&s);
    }
    for (const auto& [key, sockets] : groups) {
      Finding f;
      f.kind = "abortive_close";
      f.severity = "warning";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> close = Sym(key.second);
      f.stacks.emplace_back("setsockopt", Sym(key.first));
      f.stacks.emplace_back("close", close);
      f.stacks.emplace_back("created", Sym(sockets.front()->created_stack));
      for (const Socket* sp : sockets) {
        const Hold* h = FinalClose(*sp);
        Began(f, h->to, Pid(h->stream));
      }
      for (const Socket* sp : sockets) {
        if (f.examples.size() >= kMaxExamples) break;
        const Socket& s = *sp;
        const Hold* h = FinalClose(s);
        Example ex = BaseExample(s, h->stream, h->fd);
        if (h->unsent) ex.unsent_bytes = static_cast<int64_t>(h->unsent - 1);
        f.examples.push_back(ex);
      }
      f.message = absl::StrFormat(
          "%s closed with SO_LINGER {1, 0} at %s: the kernel sent RST instead "
          "of FIN and threw away whatever was still queued",
          Plural(f.count, "connection was", "connections were"), Where(close));
      f.advice =
          "drop SO_LINGER {1, 0} unless losing in-flight data is acceptable; "
          "to avoid TIME_WAIT, let the peer close first or reuse connections.";
      report.findings.push_back(std::move(f));
    }
  }

  // An image entered by exec from audited code (not a fork child).
  bool ExecdFromAudited(const Stream& n) const {
    if (n.process.flags & wire::kHelloForked) return false;
    if (n.exec_from != 0) return true;
    for (const Analyzer::ForkInfo& f : a_.forks_) {
      if (f.child_pid == n.process.pid) return true;
    }
    for (const auto& [id, s] : a_.streams_) {
      if (s.process.pid == n.process.ppid &&
          s.process.start_mono_ns <= n.process.start_mono_ns) {
        return true;
      }
    }
    return false;
  }

  void ExecInherited(Report& report) {
    struct Item {
      const Socket* socket;
      uint32_t stream;
      int fd;
    };
    std::map<std::pair<uint32_t, uint32_t>, std::vector<Item>> groups;
    for (uint32_t id : a_.stream_order_) {
      const Stream& n = a_.streams_.at(id);
      if (!ExecdFromAudited(n)) continue;
      uint32_t exec_stack = 0;
      if (const Stream* old = StreamOf(n.exec_from)) exec_stack = old->exec_stack;
      if (exec_stack == 0) exec_stack = ForkStackFor(id);
      for (const Socket& s : a_.sockets_) {
        if (!ConnectedStream(s) || s.eof_stream == id || s.shutdown_stream == id) {
          continue;
        }
        for (const Hold& h : s.holds) {
          if (h.stream != id || h.origin != Origin::kStart) continue;
          // Closing it unused is the new image cleaning up after its parent.
          if (h.end == End::kClose) continue;
          // A socket on stdin, stdout or stderr was handed over on purpose
          // (inetd style): the new program's input and output. So is one a
          // service manager passed (LISTEN_FDS), whose holds are kListenFd.
          if (h.fd >= 0 && h.fd <= 2) continue;
          groups[{Canon(s.created_stack), Canon(exec_stack)}].push_back({&s, id, h.fd});
          break;
        }
      }
    }
    for (const auto& [key, items] : groups) {
      Finding f;
      f.kind = "exec_inherited";
      f.severity = "warning";
      f.count = static_cast<int64_t>(items.size());
      std::vector<Frame> created = Sym(key.first);
      f.stacks.emplace_back("created", created);
      f.stacks.emplace_back("exec", Sym(key.second));
      for (const Item& item : items) {
        const Stream* image = StreamOf(item.stream);
        if (image) Began(f, image->process.start_mono_ns, image->process.pid);
      }
      for (const Item& item : items) {
        if (f.examples.size() >= kMaxExamples) break;
        Example ex = BaseExample(*item.socket, item.stream, item.fd);
        ex.exe = Exe(item.stream);
        f.examples.push_back(ex);
      }
      f.message = absl::StrFormat(
          "%s created at %s without CLOEXEC survived an exec into %s, which "
          "never used %s but kept %s open",
          Plural(f.count, "connection", "connections"), Where(created),
          f.examples.front().exe, f.count == 1 ? "it" : "them",
          f.count == 1 ? "it" : "them");
      f.advice =
          "create sockets with SOCK_CLOEXEC (accept4(..., SOCK_CLOEXEC)), or "
          "close them in the child before exec (posix_spawn file actions, "
          "close_range with CLOSE_RANGE_CLOEXEC).";
      report.findings.push_back(std::move(f));
    }
  }

  void BadCloses(Report& report) {
    // reused_fd: the dangerous one.
    std::map<std::pair<uint32_t, uint32_t>, std::vector<const Analyzer::ReusedClose*>>
        reused;
    for (const Analyzer::ReusedClose& r : a_.reused_closes_) {
      reused[{Canon(r.stack), Canon(r.previous.stack)}].push_back(&r);
    }
    for (const auto& [key, items] : reused) {
      Finding f = BadCloseFinding("reused_fd", key.first, key.second);
      f.count = static_cast<int64_t>(items.size());
      const Socket* victim = a_.sockets_.Find(items.front()->victim);
      f.stacks.emplace_back("victim_created",
                            Sym(victim ? victim->created_stack : 0));
      CloseExamples(f, items);
      f.message = absl::StrFormat(
          "%s closed fd numbers a second time after another thread had "
          "reused them for new sockets: the second close() at %s closed "
          "somebody else's connection",
          Plural(f.count, "thread", "threads"), Where(f.stacks[0].second));
      report.findings.push_back(std::move(f));
    }

    // Double closes. A close of a number that was never open is no
    // finding at all (see Analyzer::OnClose), and neither is a double close
    // from a sweep: one place that failed with EBADF on many numbers is
    // closing everything on purpose.
    std::map<std::pair<uint32_t, uint32_t>,
             std::vector<const Analyzer::DoubleClose*>>
        doubles;
    for (const Analyzer::DoubleClose& d : a_.double_closes_) {
      auto site = a_.ebadf_per_site_.find({d.stream, d.stack});
      if (site != a_.ebadf_per_site_.end() && site->second >= kSweepFds) {
        continue;
      }
      doubles[{Canon(d.stack), Canon(d.previous.stack)}].push_back(&d);
    }
    for (const auto& [key, items] : doubles) {
      Finding f = BadCloseFinding("double_close", key.first, key.second);
      f.count = static_cast<int64_t>(items.size());
      CloseExamples(f, items);
      f.message = absl::StrFormat(
          "%s: a socket's fd was closed twice, the second time at %s (it "
          "failed with EBADF; had anything been opened on that number in "
          "between, it would have closed that instead)",
          Plural(f.count, "double close", "double closes"),
          Where(f.stacks[0].second));
      report.findings.push_back(std::move(f));
    }
  }

  // When a bad_close finding began, and its examples: the process and fd of
  // each bad close (`Close` is one of Analyzer's records of them).
  template <typename Close>
  void CloseExamples(Finding& f, const std::vector<const Close*>& items) const {
    for (const Close* c : items) Began(f, c->ns, Pid(c->stream));
    for (const Close* c : items) {
      if (f.examples.size() >= kMaxExamples) break;
      Example ex;
      ex.pid = Pid(c->stream);
      ex.fd = c->fd;
      f.examples.push_back(ex);
    }
  }

  Finding BadCloseFinding(const char* reason, uint32_t close,
                          uint32_t previous) const {
    Finding f;
    f.kind = "bad_close";
    f.severity = "error";
    f.reason = reason;
    f.stacks.emplace_back("close", Sym(close));
    f.stacks.emplace_back("previous_close", Sym(previous));
    f.advice =
        "give every fd exactly one owner that closes it once; set the "
        "variable to -1 after close(), and never close on two paths.";
    return f;
  }

  void TimeWait(Report& report) {
    std::map<uint32_t, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      if (!ConnectedStream(s) || !(s.flags & wire::kFlagInet)) continue;
      if (fork_held_.contains(&s) || fin_wait2_.contains(&s) ||
          abortive_.contains(&s) || Detail(s).kernel_close_wait_ns != 0) {
        continue;
      }
      // This side's FIN: a shutdown, or the close of the last reference.
      const Hold* close = FinalClose(s);
      uint64_t fin = 0;
      uint32_t stack = 0;
      if (s.shutdown_ns) {
        fin = s.shutdown_ns;
        stack = s.shutdown_stack;
      } else if (close) {
        fin = close->to;
        stack = close->close_stack;
      }
      if (fin == 0 || (s.eof_ns != 0 && s.eof_ns <= fin)) continue;
      groups[Canon(stack)].push_back(&s);
    }
    for (const auto& [stack, sockets] : groups) {
      Finding f;
      f.kind = "time_wait";
      f.severity = "info";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> close = Sym(stack);
      f.stacks.emplace_back("close", close);
      f.stacks.emplace_back("created", Sym(sockets.front()->created_stack));
      // Views into the sockets' details: no string is made per socket.
      std::map<std::string_view, int64_t> peers;
      for (const Socket* sp : sockets) {
        const Socket& s = *sp;
        std::string_view peer = Detail(s).peer;
        ++peers[peer.empty() ? "unknown" : peer.substr(0, peer.rfind(':'))];
        const Hold* closed = FinalClose(s);
        if (s.shutdown_ns) {
          Began(f, s.shutdown_ns, Pid(s.shutdown_stream));
        } else if (closed) {
          Began(f, closed->to, Pid(closed->stream));
        }
        if (f.examples.size() < kMaxExamples) {
          f.examples.push_back(BaseExample(
              s, closed ? closed->stream : s.creator_stream,
              closed ? closed->fd : -1));
        }
      }
      for (const auto& [peer, n] : peers) {
        std::string ip(peer);
        if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') {
          ip = ip.substr(1, ip.size() - 2);
        }
        f.peers.push_back({ip, n});
      }
      std::sort(f.peers.begin(), f.peers.end(),
                [](const PeerCount& x, const PeerCount& y) { return x.count > y.count; });
      f.message = absl::StrFormat(
          "%s closed by this side first at %s, before the peer's FIN: each "
          "waits in TIME_WAIT here for 60 s, which is normal unless they pile "
          "up",
          Plural(f.count, "connection was", "connections were"), Where(close));
      f.advice =
          "if TIME_WAIT piles up: reuse connections (keep-alive), or let the "
          "peer close first; never use SO_LINGER {1, 0} to avoid it.";
      report.findings.push_back(std::move(f));
    }
  }

  static constexpr int kSweepFds = 8;

  const Analyzer& a_;
  Symbolizer* symbolizer_;
  uint64_t end_ns_;
  uint64_t grace_;
  absl::flat_hash_map<uint32_t, uint32_t> canon_;  // stack -> Canon(stack)
  absl::flat_hash_map<std::string, uint32_t> canon_by_key_;
  // Canon(stack) -> the stack shown for it, and its count of own frames.
  absl::flat_hash_map<uint32_t, std::pair<uint32_t, int64_t>> shown_;
  AppRules rules_;
  absl::flat_hash_set<const Socket*> fork_held_;
  absl::flat_hash_set<const Socket*> fin_wait2_;
  absl::flat_hash_set<const Socket*> abortive_;
};

Report Analyzer::Build(Symbolizer& symbolizer,
                       std::optional<uint64_t> as_of) const {
  Report report;
  uint64_t end_ns = as_of.value_or(EndNs());
  uint64_t grace = options_.grace_ns.value_or(run_.grace_ns);
  report.processes = static_cast<int64_t>(streams_.size());
  report.sockets_tracked = static_cast<int64_t>(sockets_.size());
  report.events = events_;
  report.events_dropped = dropped_;
  report.grace_ms = grace / 1000000;
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
  report.audited = !unaudited_;
  report.host = run_.host;
  report.closeaudit_version = kVersion;
  for (uint32_t id : stream_order_) {
    std::string v = VersionName(streams_.at(id).process.lib_version);
    if (std::find(report.library_versions.begin(),
                  report.library_versions.end(),
                  v) == report.library_versions.end()) {
      report.library_versions.push_back(std::move(v));
    }
  }
  report.warnings = notes_;
  if (unaudited_) {
    // No finding can stand on the few calls, if any, seen of a program that
    // could not be audited; what the kernel showed of its sockets can.
    BuildKernelObservations(report, grace);
  } else {
    FindingBuilder(*this, &symbolizer, end_ns).Run(report);
  }
  // Worst first: errors, then warnings, then information; larger counts
  // first within a severity.
  SortFindings(report.findings);
  if (dropped_ > 0) {
    report.warnings.push_back(absl::StrFormat(
        "%d events were dropped (the collector fell behind); findings may be "
        "incomplete",
        dropped_));
  }
  for (const std::string& w : symbolizer.warnings()) report.warnings.push_back(w);
  BuildTimelines(report, end_ns);
  return report;
}

LiveStatus Analyzer::Live(uint64_t now) const {
  LiveStatus live;
  if (run_.start_mono_ns && now > run_.start_mono_ns) {
    live.uptime_s = static_cast<double>(now - run_.start_mono_ns) / 1e9;
  }
  Report report;
  // A program that could not be audited has no findings (see Build()).
  if (!unaudited_) FindingBuilder(*this, nullptr, now).Run(report);
  live.findings = static_cast<int64_t>(report.findings.size());
  for (const Finding& f : report.findings) {
    live.finding_sockets[{f.kind, f.severity}] += f.count;
  }
  absl::flat_hash_map<uint32_t, size_t> index;  // stream -> processes[i]
  for (uint32_t id : stream_order_) {
    const Stream& s = streams_.at(id);
    if (s.exited || s.replaced) continue;
    index[id] = live.processes.size();
    live.processes.push_back({s.process.pid, s.process.exe, 0, 0});
  }
  for (const Socket& s : sockets_) {
    bool close_wait = s.eof_ns != 0 && (s.flags & wire::kFlagStream) &&
                      (s.flags & wire::kFlagInet);
    for (const Hold& h : s.holds) {
      auto it = index.find(h.stream);
      if (h.end != End::kOpen || it == index.end()) continue;
      LiveProcess& p = live.processes[it->second];
      ++p.open;
      ++live.open_sockets;
      if (close_wait) {
        ++p.close_wait;
        ++live.close_wait;
      }
    }
  }
  live.events = events_;
  live.dropped = dropped_;
  return live;
}

}  // namespace closeaudit
