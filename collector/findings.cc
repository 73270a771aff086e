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
#include "collector/python_lines.h"
#include "collector/analyzer.h"
#include "collector/kernel.h"
#include "common/node_options.h"
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
  static constexpr size_t kMaxExamples = Analyzer::kMaxExamples;

  // The frames of `stack`, each marked in_app or not. In a CPython process
  // the Python frames go where the interpreter ran them (memray's "hybrid
  // stacks"): each native frame of its evaluation loop is replaced by the
  // Python frames that call of the loop was running.
  std::vector<Frame> Resolve(uint32_t stack) const {
    std::vector<Frame> out;
    if (symbolizer_ == nullptr || stack == 0 || stack >= a_.stacks_.size()) {
      return out;
    }
    std::vector<std::vector<Frame>> python;  // per loop call, innermost first
    bool call_ended = true;
    for (const Analyzer::NormFrame& f : a_.stacks_[stack]) {
      if (f.module != Analyzer::kPythonFrame) continue;
      if (call_ended) python.emplace_back();
      python.back().push_back(PythonFrame(f));
      call_ended = (f.offset & wire::kPyFrameCallEnd) != 0;
    }
    size_t next_python = 0;
    size_t runtime_at = std::string::npos;  // the first frame in the runtime
    // A JVM's Java frames stand for the frames of its interpreted and
    // compiled code, which are in no module: the first of those becomes
    // them, and the rest go.
    bool java = !python.empty() && !python[0].empty() &&
                python[0][0].language == "java";
    for (const Analyzer::NormFrame& f : a_.stacks_[stack]) {
      if (f.module == Analyzer::kPythonFrame) continue;
      if (java && f.module == Analyzer::kNoModule) {
        if (next_python < python.size()) {
          for (Frame& j : python[next_python++]) {
            // A lambda's hidden class: the JVM's glue, no source of its own.
            if (j.function.find("$$Lambda") != std::string::npos) continue;
            out.push_back(std::move(j));
          }
        }
        continue;
      }
      if (f.module == Analyzer::kNoModule) {
        Frame unknown;
        unknown.address = f.address;
        unknown.in_app = InApp(unknown, rules_);
        out.push_back(unknown);
        continue;
      }
      const ModuleRecord& m = a_.modules_[f.module];
      if (m.path.starts_with(kJitModulePrefix)) {
        // JIT code: its perf map named the function; there is no file,
        // but a JavaScript function's name says where it is defined.
        Frame jit;
        std::string_view name =
            std::string_view(m.path).substr(sizeof(kJitModulePrefix) - 1);
        if (!ParseJsPerfName(name, &jit)) jit.function = std::string(name);
        if (IsAgentFrame(jit)) continue;
        jit.address = f.address;
        jit.in_app = InApp(jit, rules_);
        out.push_back(std::move(jit));
        continue;
      }
      std::vector<Frame> resolved =
          symbolizer_->Resolve(ModuleRef{m.path, m.build_id, 0}, f.offset);
      if (!python.empty() && !resolved.empty() &&
          IsEvalLoop(resolved.back().function)) {
        if (next_python < python.size()) {
          for (Frame& py : python[next_python++]) out.push_back(std::move(py));
          continue;
        }
      }
      if (!python.empty() && runtime_at == std::string::npos &&
          IsLanguageRuntime(m.path)) {
        runtime_at = out.size();
      }
      for (Frame& frame : resolved) {
        frame.address = f.address;
        frame.offset = f.offset;
        frame.in_app = InApp(frame, rules_);
        out.push_back(std::move(frame));
      }
    }
    if (next_python < python.size()) {
      // Loop calls the native stack does not show: beyond its depth, or in
      // an interpreter without symbols, where the Python frames go in at
      // the first frame of the runtime.
      size_t at = next_python == 0 && runtime_at != std::string::npos
                      ? runtime_at
                      : out.size();
      std::vector<Frame> rest;
      for (size_t g = next_python; g < python.size(); ++g) {
        for (Frame& py : python[g]) rest.push_back(std::move(py));
      }
      out.insert(out.begin() + static_cast<std::ptrdiff_t>(at),
                 std::make_move_iterator(rest.begin()),
                 std::make_move_iterator(rest.end()));
    }
    return out;
  }

  // closeaudit's own Node.js agent, which wraps emit() and the listener
  // adders of sockets and servers: never part of the program's story.
  static bool IsAgentFrame(const Frame& f) {
    return f.language == "js" && f.file.ends_with("/closeaudit_agent.js");
  }

  Frame PythonFrame(const Analyzer::NormFrame& f) const {
    const PyCodeRecord& code = a_.py_codes_[f.address];
    Frame frame;
    switch (static_cast<wire::CodeLanguage>(code.language)) {
      case wire::CodeLanguage::kJavaScript: frame.language = "js"; break;
      case wire::CodeLanguage::kJava: frame.language = "java"; break;
      default: frame.language = "python"; break;
    }
    frame.function = code.name;
    frame.file = code.file;
    // minor 0: a handler's definition, named by the Python-side helper.
    frame.line = code.minor == 0
                     ? code.firstlineno
                     : PythonLine(code.minor, code.firstlineno, code.table,
                                  static_cast<uint32_t>(
                                      f.offset & wire::kPyFrameOffsetMask));
    frame.in_app = InApp(frame, rules_);
    return frame;
  }

  static bool IsEvalLoop(std::string_view function) {
    return function == "_PyEval_EvalFrameDefault";
  }
  // An interpreter's or JVM's own binary or library: where its frames go
  // in when the native stack shows none of its loop.
  static bool IsLanguageRuntime(std::string_view path) {
    std::string_view name = path.substr(path.rfind('/') + 1);
    return name.starts_with("python") || name.starts_with("libpython") ||
           name == "libjvm.so";
  }

  // The frames of a group's stack, as Canon(stack, role) gave it: of the
  // stacks Canon made one, the one with the most of the program's frames.
  std::vector<Frame> Sym(uint32_t canon, char role) const {
    auto it = shown_.find({role, canon});
    return Resolve(it == shown_.end() ? canon : it->second.first);
  }
  // The frames of one stack.
  std::vector<Frame> Sym(uint32_t stack) const { return Resolve(stack); }

  // The stack that stands for every stack in the same role (created, eof,
  // close...) that is the same place in the program's code (GroupKey):
  // findings group by it, so that one call site is one finding across all
  // the processes of a binary, whatever addresses ASLR gave each, across
  // binaries built from the same code, and however a library reached it.
  // Without a symbolizer (the live counts) a stack stands for itself:
  // stacks are already one when their frames are at the same offsets of
  // the same modules.
  uint32_t Canon(uint32_t stack, char role) {
    if (symbolizer_ == nullptr || stack == 0) return stack;
    auto [it, inserted] = canon_.try_emplace({role, stack}, stack);
    if (inserted) {
      std::vector<Frame> frames = Resolve(stack);
      std::string key = GroupKey(frames);
      key.insert(key.begin(), role);
      it->second = canon_by_key_.try_emplace(std::move(key), stack).first->second;
      members_[{role, it->second}].push_back(stack);
      int64_t own = OwnFrames(stack, &frames);
      auto [best, first] = shown_.try_emplace({role, it->second}, stack, own);
      if (!first && own > best->second.second) best->second = {stack, own};
    }
    return it->second;
  }

  // How many of the stack's frames are the program's own; `resolved`, its
  // frames where the caller has them already.
  int64_t OwnFrames(uint32_t stack, const std::vector<Frame>* resolved = nullptr) {
    auto [it, inserted] = own_frames_.try_emplace(stack, 0);
    if (inserted) {
      std::vector<Frame> frames = resolved ? std::vector<Frame>() : Resolve(stack);
      const std::vector<Frame>& fs = resolved ? *resolved : frames;
      it->second = std::count_if(fs.begin(), fs.end(),
                                 [](const Frame& f) { return f.in_app; });
    }
    return it->second;
  }

  // Of the group's sockets' stacks in one field, the one with the most of
  // the program's frames: what the finding shows.
  uint32_t MostOwn(const std::vector<const Socket*>& sockets,
                   uint32_t Socket::*field) {
    return MostOwn(sockets, [field](const Socket& s) { return s.*field; });
  }
  template <typename StackOf>
  uint32_t MostOwn(const std::vector<const Socket*>& sockets, StackOf stack_of) {
    uint32_t best = 0;
    int64_t most = -1;
    for (const Socket* s : sockets) {
      uint32_t stack = stack_of(*s);
      if (stack == 0 || symbolizer_ == nullptr) continue;
      if (int64_t own = OwnFrames(stack); own > most) {
        best = stack;
        most = own;
      }
    }
    return best;
  }

  // The program's frames of a stack, outermost first, as StackKey names
  // them.
  const std::vector<std::string>& OwnPath(uint32_t stack) {
    auto [it, inserted] = own_paths_.try_emplace(stack);
    if (inserted) {
      std::vector<Frame> frames = Resolve(stack);
      for (auto f = frames.rbegin(); f != frames.rend(); ++f) {
        if (f->in_app) it->second.push_back(StackKey({*f}));
      }
    }
    return it->second;
  }

  // Whether the class of stacks `outer` (in `role`) shows only a loop the
  // program runs, under which some stack of the class `inner` shows the
  // program's code: asio's reactor read seen from io_context::run() in
  // main(), and the same read made speculatively inside the program's
  // async_read_some() under that run().
  bool Within(uint32_t outer, uint32_t inner, char role) {
    if (outer == inner) return true;
    const std::vector<std::string>& loop = OwnPath(outer);
    if (loop.empty()) return false;
    auto members = members_.find({role, inner});
    if (members == members_.end()) return false;
    for (uint32_t m : members->second) {
      const std::vector<std::string>& path = OwnPath(m);
      if (path.size() > loop.size() &&
          std::equal(loop.begin(), loop.end(), path.begin())) {
        return true;
      }
    }
    return false;
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

  // When the last reference went (kOpen while one is still held).
  static uint64_t LastEnd(const Socket& s) {
    uint64_t last = 0;
    for (const Hold& h : s.holds) last = std::max(last, h.to);
    return last;
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
  // "5.2 s"
  static std::string Seconds(uint64_t ns) {
    return absl::StrFormat("%.1f s", static_cast<double>(ns) / 1e9);
  }

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

  // The listening socket an accepted one came from, if the process held it
  // as tracked.
  const Socket* Listener(const Socket& s) const {
    if (!s.accepted || s.listener == 0 || s.listener > a_.sockets_.size()) {
      return nullptr;
    }
    return &a_.sockets_[s.listener - 1];
  }

  // What the Node.js agent said of a socket in `role`: of the socket itself,
  // else of the listening socket it was accepted from (the agent tells a
  // server's listening socket once, not each connection).
  uint32_t NodeStack(const Socket& s, wire::NodeRole role) const {
    if (uint32_t own = Detail(s).node_stacks[Role(role)]; own != 0) return own;
    const Socket* l = Listener(s);
    return l ? Detail(*l).node_stacks[Role(role)] : 0;
  }

  // Where a socket came from. An accepted socket the agent told nothing of
  // itself came from its server's listeners when the agent named those on
  // the listening socket: uv__accept under the event loop says nothing of
  // the program.
  uint32_t Created(const Socket& s) const {
    const SocketDetail& d = Detail(s);
    if (d.node_stacks[Role(wire::NodeRole::kServer)] == 0 &&
        d.node_stacks[Role(wire::NodeRole::kUpgrade)] == 0) {
      if (uint32_t server = NodeStack(s, wire::NodeRole::kServer)) return server;
    }
    return s.created_stack;
  }

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
      // A Python line's call into the interpreter's C code is the line
      // itself ("conn.recv(4096)"), not the C function that ran it.
      if (i > 0 && !frames[i - 1].in_app && !frames[i - 1].function.empty() &&
          frames[i - 1].language == f.language) {
        absl::StrAppend(&place, ", in its call to ",
                        ShortFunction(frames[i - 1].function), "()");
      }
      return place;
    }
    // Python or JavaScript frames, none of them the program's: the innermost
    // names the library code the program called into.
    for (const Frame& f : frames) {
      if (f.language.empty()) continue;
      return absl::StrCat(Place(f), " in ", LibraryName(f),
                          " (none of the program's own frames is on the "
                          "stack)");
    }
    // Node.js's event loop, running no JavaScript: a read or an accept of
    // libuv's, or a write it finished.
    for (const Frame& f : frames) {
      if (f.language.empty() && LibraryName(f).find("node") != std::string::npos &&
          f.function.starts_with("uv_run")) {
        return "Node.js's event loop (no JavaScript was running)";
      }
    }
    // An interpreter ran the program's code, whose frames (Python's,
    // JavaScript's, Java's) are its own and not recorded here.
    for (const Frame& f : frames) {
      std::string lib = LibraryName(f);
      for (std::string_view runtime : {"python", "node", "java", "jvm"}) {
        if (f.language.empty() && lib.find(runtime) != std::string::npos) {
          return absl::StrCat("code in ", lib,
                              " (the program's frames in that runtime are "
                              "not recorded)");
        }
      }
    }
    for (const Frame& f : frames) {
      std::string lib = LibraryName(f);
      if (lib.empty()) continue;
      return absl::StrCat("code in ", lib,
                          " (none of the program's own frames is on the "
                          "stack)");
    }
    return "unknown code";
  }

  // Whether a close came from Python freeing the socket object (its
  // refcount or the cycle collector), not from a close() the program made:
  // the socket's finalizer, or a __del__ method, is on the stack.
  static bool ClosedByCollector(const std::vector<Frame>& frames) {
    for (const Frame& f : frames) {
      if (f.language == "java") {
        // The JDK closes an unreachable socket's fd from a Cleaner (its
        // FileDescriptor's closer) or, in older releases, a finalizer.
        if (f.function.starts_with("jdk.internal.ref.CleanerImpl") ||
            f.function.starts_with("java.lang.ref.Finalizer") ||
            f.function.find("FileDescriptorCloser") != std::string::npos ||
            f.function.find("CleanerFactory") != std::string::npos) {
          return true;
        }
        if (f.in_app) return false;  // the program's own call
        continue;
      }
      if (f.language == "python") {
        if (f.function.ends_with("__del__")) return true;
        if (f.in_app) return false;  // the program's own call
        continue;
      }
      for (std::string_view finalizer :
           {"sock_finalize", "sock_dealloc", "subtype_dealloc",
            "slot_tp_finalize", "PyObject_CallFinalizerFromDealloc",
            "finalize_garbage", "gc_collect_main"}) {
        if (f.function == finalizer) return true;
      }
    }
    return false;
  }

  // For a client socket a Python HTTP library opened: what its owner must
  // do, in that library's terms; "" if none made it.
  static std::string PythonClientAdvice(const std::vector<Frame>& frames) {
    for (const Frame& f : frames) {
      if (f.language != "python") continue;
      if (f.file.find("/urllib3/") != std::string::npos ||
          f.file.find("/requests/") != std::string::npos) {
        return "read or close every response (response.close(), or `with "
               "session.get(...) as response:`), and close the Session (or "
               "PoolManager) once it is no longer used (session.close(), or "
               "`with requests.Session() as session:`): an idle pooled "
               "connection the server closed stays in CLOSE_WAIT until then.";
      }
      if (f.file.ends_with("/http/client.py")) {
        return "close the HTTPConnection once its response is read "
               "(conn.close()), or before reusing it after an idle wait; a "
               "connection kept open after the server closed it stays in "
               "CLOSE_WAIT until then.";
      }
    }
    return "";
  }

  // "handle (server.c:42)", or without a line, the function or the module
  // and offset.
  static std::string Place(const Frame& f) {
    if (f.language == "python" || f.language == "js" || f.language == "java") {
      return absl::StrFormat("%s (%s:%d)", f.function, SourceName(f), f.line);
    }
    if (f.function.empty() || f.module.empty()) return FrameName(f);
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
      if (!Analyzer::ConnectedStream(s)) continue;
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
        groups[{Canon(h.close_stack, 'c'), Canon(Created(s), 'n')}].push_back({&s, &h, still});
        fork_held_.insert(&s);
        break;
      }
    }
    for (const auto& [key, items] : groups) {
      Finding f;
      f.kind = "fork_held";
      f.severity = "error";
      f.count = static_cast<int64_t>(items.size());
      std::vector<Frame> close = Sym(key.first, 'c');
      const Item& first = items.front();
      const Hold* holder = first.holders.front();
      uint32_t fork_stack = holder->origin == Origin::kFork
                                ? ForkStackFor(holder->stream)
                                : ForkStackFor(first.close->stream);
      f.stacks.emplace_back("close", close);
      f.stacks.emplace_back("created", Sym(key.second, 'n'));
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

  // The callback an event library delivered the socket's events to: the
  // newest registered one in the program's own code (libraries register
  // callbacks of their own, which tell the owner nothing). Without a
  // symbolizer (the live counts), the newest.
  const Analyzer::Handler* HandlerOf(const Socket& s) {
    const SocketDetail& d = Detail(s);
    for (auto it = d.handlers.rbegin(); it != d.handlers.rend(); ++it) {
      if (symbolizer_ == nullptr) return &*it;
      auto [own, inserted] = own_callback_.try_emplace(it->callback, false);
      if (inserted) {
        std::vector<Frame> frames = Resolve(it->callback);
        own->second = !frames.empty() && frames.back().in_app;
      }
      if (own->second) return &*it;
    }
    return nullptr;
  }

  // A bufferevent freed without BEV_OPT_CLOSE_ON_FREE: libevent let the
  // bufferevent go and left the socket open.
  bool FreedWithoutClose(const Socket& s) const {
    const SocketDetail& d = Detail(s);
    return d.freed_ns != 0 && d.bufferevent_stack != 0 && !d.close_on_free &&
           Analyzer::FinalClose(s) == nullptr;
  }

  // Whether any frame of the stack is in `language` ("java").
  static bool HasLanguage(const std::vector<Frame>& frames,
                          std::string_view language) {
    for (const Frame& f : frames) {
      if (f.language == language) return true;
    }
    return false;
  }

  // Whether any frame of the stack is `function` (its full name).
  static bool HasFunction(const std::vector<Frame>& frames,
                          std::string_view function) {
    for (const Frame& f : frames) {
      if (f.function == function) return true;
    }
    return false;
  }

  // Which library the frames of a stack read through, for the advice.
  static bool ReadsThrough(const std::vector<Frame>& frames,
                           std::string_view library) {
    for (const Frame& f : frames) {
      if (!f.in_app && LibraryName(f).find(library) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  struct LeakKey {
    uint32_t created, eof, handler;
    bool freed_without_close;
    auto operator<=>(const LeakKey&) const = default;
  };

  void CloseWaitLeaks(Report& report) {
    std::map<LeakKey, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      if (s.eof_ns == 0 || !(s.flags & wire::kFlagStream)) continue;
      if (fork_held_.contains(&s)) continue;
      uint64_t until = Until(s);
      if (until < s.eof_ns || until - s.eof_ns <= grace_) continue;
      const Analyzer::Handler* h = HandlerOf(s);
      uint32_t end_listener = NodeStack(s, wire::NodeRole::kEnd);
      groups[{Canon(Created(s), 'n'), Canon(s.eof_stack, 'e'),
              h ? Canon(h->callback, 'h') : Canon(end_listener, 'j'),
              FreedWithoutClose(s)}]
          .push_back(&s);
    }
    MergeLoopOnly(groups);
    for (auto& [key, sockets] : groups) {
      std::stable_sort(sockets.begin(), sockets.end(),
                       [](const Socket* x, const Socket* y) {
                         return x->eof_ns < y->eof_ns;
                       });
      const Socket& first = *sockets.front();
      const Analyzer::Handler* handler = HandlerOf(first);
      const SocketDetail& detail = Detail(first);
      Finding f;
      f.kind = "close_wait_leak";
      f.severity = "error";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> eof = Sym(MostOwn(sockets, &Socket::eof_stack));
      std::vector<Frame> callback = Sym(key.handler, 'h');
      f.stacks.emplace_back("eof_seen", eof);
      if (handler) {
        f.stacks.emplace_back("handler", callback);
        if (handler->registered) {
          f.stacks.emplace_back("registered", Sym(handler->registered));
        }
      }
      std::vector<Frame> freed;
      if (key.freed_without_close) {
        freed = Sym(detail.freed_stack);
        f.stacks.emplace_back("freed", freed);
        f.stacks.emplace_back("bufferevent", Sym(detail.bufferevent_stack));
      }
      f.stacks.emplace_back("created", Sym(MostOwn(sockets, [this](const Socket& s) {
                              return Created(s);
                            })));
      f.stacks.emplace_back("last_use", Sym(first.last_use_stack));
      Began(f, first.eof_ns, Pid(first.eof_stream));
      int64_t closed_late = 0;
      for (const Socket* sp : sockets) {
        const Socket& s = *sp;
        const Hold* final_close = Analyzer::FinalClose(s);
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
      std::string conns = Plural(f.count, "connection", "connections");
      std::string where = Where(eof);
      std::string library;  // who read the EOF and passed it on
      std::string passed;   // how the handler was told
      if (handler) {
        switch (handler->kind) {
          case wire::HandlerKind::kUvRead:
            library = "libuv";
            passed = " as UV_EOF";
            break;
          case wire::HandlerKind::kBuffereventCb:
            library = "libevent";
            passed = " as BEV_EVENT_EOF";
            break;
          default:
            library = "libevent";
        }
      }
      bool asyncio = handler && handler->kind == wire::HandlerKind::kPython;
      bool streams = asyncio && (handler->flags & wire::kHandlerPyStreams);
      std::string told;
      if (asyncio) {
        told = absl::StrFormat("asyncio's loop read the EOF and passed it to "
                               "the %s %s",
                               streams ? "handler" : "protocol",
                               Where(callback));
      } else if (handler && handler->kind == wire::HandlerKind::kEvent) {
        // libevent only said the socket was readable; the callback it ran
        // made the read itself.
        told = absl::StrFormat("%s saw the EOF in the callback libevent ran "
                               "for the socket, %s",
                               where, Where(callback));
      } else if (handler) {
        told = absl::StrFormat("%s read the EOF (under %s) and passed it%s "
                               "to %s",
                               library, where, passed, Where(callback));
      } else {
        told = absl::StrFormat("%s saw the EOF", where);
      }
      NodeSide node = handler ? NodeSide{} : NodeOf(first);
      if (node.known) {
        told = NodeTold(f, node);
      }
      if (key.freed_without_close) {
        f.message = absl::StrFormat(
            "%s left in CLOSE_WAIT: the peer closed, %s, which freed the "
            "bufferevent at %s; but it was created without "
            "BEV_OPT_CLOSE_ON_FREE, so freeing it left the socket open",
            conns, told, Where(freed));
      } else if (closed_late == f.count) {
        const Hold* last = Analyzer::FinalClose(first);
        std::vector<Frame> closed = last ? Sym(last->close_stack) : std::vector<Frame>();
        if (!closed.empty()) f.stacks.emplace_back("closed", closed);
        bool collected = ClosedByCollector(closed);
        f.message = absl::StrFormat(
            "%s sat in CLOSE_WAIT for longer than the %d ms grace period: the "
            "peer closed, %s, and close() came late%s",
            conns, Ms(grace_), told,
            !collected ? ""
            : HasLanguage(closed, "java")
                ? ": closed late by garbage collection, when the JVM's "
                  "collector found the socket unreachable and its Cleaner "
                  "closed the fd; close it explicitly"
                : ": closed by the garbage collector, when Python freed the "
                  "socket object; close it explicitly");
      } else if (node.known) {
        f.message = absl::StrFormat(
            "%s left in CLOSE_WAIT: the peer closed, %s; %s never closed",
            conns, told, closed_late ? "most were" : "the socket was");
      } else if (handler) {
        const char* missed =
            streams ? "which returned without writer.close()"
            : asyncio
                ? "which never closed the transport (transport.close())"
            : handler->kind == wire::HandlerKind::kUvRead
                ? "which never called uv_close() on the handle"
            : handler->kind == wire::HandlerKind::kBuffereventCb
                ? "which never freed the bufferevent"
                : "which never closed the socket";
        f.message = absl::StrFormat(
            "%s left in CLOSE_WAIT: the peer closed, %s, %s; %s never closed",
            conns, told, missed, closed_late ? "most were" : "the socket was");
      } else {
        f.message = absl::StrFormat(
            "%s left in CLOSE_WAIT: the peer closed, %s (%s), and %s never "
            "closed",
            conns, told,
            HasLanguage(eof, "java") ? "read() returned -1" : "a read returned 0",
            closed_late ? "most were" : "the socket was");
      }
      f.advice = node.known ? NodeLeakAdvice(node)
                            : LeakAdvice(first, handler, key.freed_without_close, eof);
      report.findings.push_back(std::move(f));
    }
  }

  static constexpr size_t Role(wire::NodeRole role) {
    return static_cast<size_t>(role);
  }

  // What the Node.js agent said of a socket (wire::HandlerKind::kNode).
  struct NodeSide {
    bool known = false;
    bool client = false;    // opened by the program (net.connect, http.request)
    bool upgrade = false;   // handed to an http server's 'upgrade' listener
    bool http = false;      // accepted by an http(s) server
    bool half_open = false; // allowHalfOpen was set on it
    std::vector<Frame> owner;  // the listeners, or the call that opened it
    std::vector<Frame> end, close;  // where its 'end'/'close' listeners were added
  };
  NodeSide NodeOf(const Socket& s) const {
    NodeSide n;
    uint32_t owner = NodeStack(s, wire::NodeRole::kUpgrade);
    n.upgrade = owner != 0;
    if (owner == 0) owner = NodeStack(s, wire::NodeRole::kServer);
    if (owner == 0) {
      owner = NodeStack(s, wire::NodeRole::kClient);
      n.client = owner != 0;
    }
    if (owner == 0) return n;
    n.known = true;
    uint32_t flags = Detail(s).node_flags;
    if (const Socket* l = Listener(s)) flags |= Detail(*l).node_flags;
    n.http = (flags & wire::kHandlerNodeHttp) != 0;
    n.half_open = (flags & wire::kHandlerNodeHalfOpen) != 0;
    n.owner = Sym(owner);
    n.end = Sym(NodeStack(s, wire::NodeRole::kEnd));
    n.close = Sym(NodeStack(s, wire::NodeRole::kClose));
    return n;
  }

  // How Node.js passed the peer's EOF on, and to whom; adds the listeners'
  // stacks to the finding.
  std::string NodeTold(Finding& f, const NodeSide& n) const {
    if (!n.end.empty()) f.stacks.emplace_back("end_listener", n.end);
    if (!n.close.empty()) f.stacks.emplace_back("close_listener", n.close);
    std::string end =
        n.end.empty() ? "no 'end' listener ends it"
                      : absl::StrFormat("the 'end' listener never calls "
                                        "socket.end() (added at %s)",
                                        Where(n.end));
    if (n.client) {
      return absl::StrFormat(
          "Node.js read the EOF, and nothing ended or destroyed the socket "
          "(opened at %s)",
          Where(n.owner));
    }
    if (n.upgrade) {
      return absl::StrFormat(
          "Node.js read the EOF of a socket its http server handed to an "
          "'upgrade' listener (added at %s); such a socket is half-open "
          "(allowHalfOpen) and the program's to end, and %s",
          Where(n.owner), end);
    }
    if (n.half_open && !n.http) {
      return absl::StrFormat(
          "Node.js read the EOF and emitted 'end'; the server has "
          "allowHalfOpen: true (its 'connection' listener is added at %s), "
          "so Node.js leaves ending the socket to the program, and %s",
          Where(n.owner), end);
    }
    return absl::StrFormat(
        "Node.js read the EOF, and nothing ended or destroyed the socket (a "
        "connection of the server whose listener is added at %s)",
        Where(n.owner));
  }

  // An http.request() (or get()) opened it, through an http.Agent.
  static bool NodeHttpClient(const NodeSide& n) {
    for (const Frame& f : n.owner) {
      if (f.file.starts_with("node:_http_") || f.file == "node:http" ||
          f.file == "node:https") {
        return true;
      }
    }
    return false;
  }

  // An http.Agent made the socket for its pool.
  static bool NodeAgentPool(const NodeSide& n) {
    for (const Frame& f : n.owner) {
      if (f.file == "node:_http_agent") return true;
    }
    return false;
  }

  static std::string NodeLeakAdvice(const NodeSide& n) {
    std::string map =
        " If a Map or Set keeps the socket, delete it there on 'close'.";
    if (n.client) {
      if (NodeHttpClient(n)) {
        return "consume every response, even one whose body you do not "
               "need (res.resume()), or destroy it (res.destroy()): the "
               "Agent keeps a socket until its response has been read to "
               "the end; and agent.destroy() an Agent that is no longer "
               "used.";
      }
      return "when the server ends the connection ('end'), call "
             "socket.end() or socket.destroy(), and open a new one when it "
             "is needed again." + map;
    }
    if (n.upgrade) {
      return "a socket handed to an 'upgrade' listener is the program's: in "
             "its 'end' listener call socket.end() (socket.destroy() when "
             "nothing is left to send), and destroy it on errors." + map;
    }
    if (n.half_open && !n.http) {
      return "with allowHalfOpen: true, Node.js does not end a socket when "
             "its peer does: call socket.end() in the 'end' listener "
             "(socket.destroy() when nothing is left to send), or create the "
             "server without allowHalfOpen." + map;
    }
    return "end the socket when its peer does: socket.end() or "
           "socket.destroy() in its 'end' listener; a paused socket never "
           "reads the EOF, so resume() or destroy() it." + map;
  }

  // Moves each group whose stacks show only the loop the program runs into
  // the one group that shows the program's code under that loop (Within),
  // where there is exactly one: the same bug, read by the library from its
  // loop instead of in the program's call. Where there are several, which
  // one it belongs to is unknown, and it stays apart.
  void MergeLoopOnly(std::map<LeakKey, std::vector<const Socket*>>& groups) {
    // Which groups each group lies within; those within none show the
    // program's code, and only they take others in.
    std::map<LeakKey, std::vector<LeakKey>> within;
    for (const auto& [a, unused] : groups) {
      for (const auto& [b, unused2] : groups) {
        if (a == b || a.handler != b.handler ||
            a.freed_without_close != b.freed_without_close ||
            !Within(a.created, b.created, 'n') || !Within(a.eof, b.eof, 'e')) {
          continue;
        }
        within[a].push_back(b);
      }
    }
    for (const auto& [from, outer] : within) {
      std::vector<LeakKey> into;
      for (const LeakKey& b : outer) {
        if (!within.contains(b)) into.push_back(b);
      }
      if (into.size() != 1) continue;
      std::vector<const Socket*>& dst = groups[into.front()];
      std::vector<const Socket*>& src = groups[from];
      dst.insert(dst.end(), src.begin(), src.end());
      groups.erase(from);
    }
  }

  // The fix, in the terms of the code the EOF went to.
  static std::string LeakAdvice(const Socket& s,
                                const Analyzer::Handler* handler,
                                bool freed_without_close,
                                const std::vector<Frame>& eof) {
    if (freed_without_close) {
      return "create the bufferevent with BEV_OPT_CLOSE_ON_FREE "
             "(bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) so "
             "that bufferevent_free() closes the socket, or call "
             "evutil_closesocket(fd) yourself after freeing it.";
    }
    if (handler && handler->kind == wire::HandlerKind::kPython) {
      if (handler->flags & wire::kHandlerPyStreams) {
        return "in the handler, close the connection on every path out of "
               "it (the peer's EOF, errors, cancellation): writer.close() "
               "then await writer.wait_closed(), in a finally: block; "
               "asyncio never closes a stream's socket for you.";
      }
      return "close the transport when the peer's EOF arrives: "
             "self.transport.close() in eof_received() (returning a true "
             "value from it keeps the socket half-open until you do), and "
             "on errors.";
    }
    if (handler && handler->kind == wire::HandlerKind::kUvRead) {
      return "in the read callback, when nread is UV_EOF (or any other "
             "error), call uv_close((uv_handle_t*)stream, on_close) and free "
             "the handle in on_close; libuv closes the socket only then.";
    }
    if (handler && handler->kind == wire::HandlerKind::kBuffereventCb) {
      return "in the event callback, on BEV_EVENT_EOF (and BEV_EVENT_ERROR) "
             "call bufferevent_free(bev), with the bufferevent created with "
             "BEV_OPT_CLOSE_ON_FREE so that freeing it closes the socket.";
    }
    if (handler && handler->kind == wire::HandlerKind::kEvent) {
      return "in the callback, when the read returns 0: event_free() the "
             "event (or event_del() it) and evutil_closesocket() the fd.";
    }
    if (ReadsThrough(eof, "python")) {
      return "close the socket where recv() returns b'' (sock.close(), or "
             "hold it in `with socket.socket(...) as sock:` or "
             "contextlib.closing()); with asyncio streams, writer.close() then "
             "await writer.wait_closed().";
    }
    if (HasFunction(eof, "sun.nio.ch.SocketChannelImpl.read")) {
      return "where SocketChannel.read() returns -1, close the channel "
             "(channel.close(), which also cancels its selection keys): "
             "key.cancel() alone leaves the socket open. Outside a "
             "selector, hold the channel in try-with-resources.";
    }
    if (HasLanguage(eof, "java")) {
      return "close the socket on the path where read() returns -1: open it "
             "in try-with-resources (`try (Socket s = listener.accept()) "
             "{...}`, likewise a SocketChannel), or close() it in a finally "
             "block; closing its InputStream closes the socket too.";
    }
    if (ReadsThrough(eof, "boost/asio")) {
      return "in the completion handler given to that asynchronous call "
             "(see eof_seen), when the error is asio::error::eof (or any "
             "other error), close the socket "
             "(socket.close()) or let go of the last owner of the object "
             "that holds it; asio never closes it for you.";
    }
    if (!s.accepted && s.created_here) {
      return "this side opened the connection and the server ended it: "
             "close() it where the read returns 0 (see eof_seen), and open a "
             "new connection when one is needed again.";
    }
    return "close() the socket on the path where the read returns 0 (see "
           "eof_seen); every exit from the handler needs a close().";
  }

  // What the JDK's keep-alive cache had to do with a socket in CLOSE_WAIT.
  enum class JdkPool : uint8_t { kNo, kClosedByIt, kAtEnd };

  // Whether the JDK's keep-alive cache closed the socket: its timer
  // (sun.net.www.http.KeepAliveCache) closing an idle pooled connection,
  // the pool working as designed.
  bool ClosedByJdkPool(const Socket& s) {
    const Hold* h = Analyzer::FinalClose(s);
    if (h == nullptr || h->close_stack == 0) return false;
    auto [it, inserted] = jdk_pool_close_.try_emplace(h->close_stack, false);
    if (inserted) {
      for (const Frame& f : Sym(h->close_stack)) {
        if (f.language == "java" &&
            f.function.starts_with("sun.net.www.http.KeepAliveCache")) {
          it->second = true;
          break;
        }
      }
    }
    return it->second;
  }

  // How long the JDK's keep-alive cache can keep an idle connection with
  // its default timeout: the timeout (5 s) and the period of the timer that
  // applies it (5 s).
  static constexpr uint64_t kJdkCacheHoldNs = 10'000'000'000;

  static bool ByUrlConnection(const std::vector<Frame>& frames) {
    for (const Frame& f : frames) {
      if (f.language == "java" &&
          (f.function.starts_with("sun.net.www.protocol.http.HttpURLConnection") ||
           f.function.starts_with("java.net.HttpURLConnection"))) {
        return true;
      }
    }
    return false;
  }

  // Whether the socket may have been idle in the JDK's keep-alive cache
  // when the run ended: a connection HttpURLConnection opened, nothing but
  // the FIN unread in any CLOSE_WAIT sample (the cache holds only
  // connections whose response was read to its end), never closed by the
  // program (its exit closed it, or it was open at the end), and in
  // CLOSE_WAIT for no longer than the cache keeps an idle connection. A
  // response never read that fitted in the JDK's buffer looks the same
  // from outside; one that did not is still in the kernel's queue.
  bool MaybeInJdkPoolAtEnd(const Socket& s) {
    if (!s.created_here || s.accepted) return false;
    const SocketDetail& d = Detail(s);
    if (d.kernel_close_wait_unread != 1) return false;  // unknown, or unread
    for (const Hold& h : s.holds) {
      if (h.end != End::kExit && h.end != End::kOpen) return false;
    }
    uint64_t until = Until(s);
    if (until - std::min(until, d.kernel_close_wait_ns) > kJdkCacheHoldNs) {
      return false;
    }
    uint32_t created = Created(s);
    auto [it, inserted] = by_url_connection_.try_emplace(created, false);
    if (inserted) it->second = ByUrlConnection(Sym(created, 'n'));
    return it->second;
  }

  // For a client socket one of the JDK's HTTP clients opened: what its
  // owner must do, in that client's terms; "" if neither made it.
  static std::string JavaClientAdvice(const std::vector<Frame>& frames) {
    for (const Frame& f : frames) {
      if (f.language != "java") continue;
      if (ByUrlConnection({f})) {
        return "read each response body to its end and close its stream "
               "(`try (InputStream in = conn.getInputStream()) { "
               "in.readAllBytes(); }`, and getErrorStream() for an error "
               "status), or call conn.disconnect() when you are done with "
               "the connection: an unread response pins its connection "
               "outside the JDK's keep-alive cache, in CLOSE_WAIT once the "
               "server closes it.";
      }
      if (f.function.starts_with("jdk.internal.net.http.") ||
          f.function.starts_with("java.net.http.")) {
        return "consume or discard every response body "
               "(HttpResponse.BodyHandlers.discarding(), or read the stream "
               "of BodyHandlers.ofInputStream() to its end and close it): "
               "HttpClient keeps a connection whose body was not consumed "
               "out of its pool, open until the client is garbage "
               "collected.";
      }
    }
    return "";
  }

  // The peer's FIN arrived (the kernel says CLOSE_WAIT) but no read ever
  // returned 0: the program is not reading the socket at all.
  void NeverRead(Report& report) {
    // By where the socket was made, and whether the JDK's keep-alive cache
    // closed it or may have held it to the end.
    std::map<std::pair<uint32_t, JdkPool>, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      const SocketDetail& d = Detail(s);
      if (s.eof_ns != 0 || d.kernel_close_wait_ns == 0) continue;
      if (fork_held_.contains(&s)) continue;
      if (!HeldAt(s, d.kernel_close_wait_ns + grace_) &&
          d.kernel_close_wait_last_ns - d.kernel_close_wait_ns <= grace_) {
        continue;
      }
      JdkPool pool = ClosedByJdkPool(s)       ? JdkPool::kClosedByIt
                     : MaybeInJdkPoolAtEnd(s) ? JdkPool::kAtEnd
                                              : JdkPool::kNo;
      groups[{Canon(Created(s), 'n'), pool}].push_back(&s);
    }
    for (const auto& [inode, s] : a_.untracked_) {
      const SocketDetail& d = Detail(s);
      if (d.kernel_close_wait_ns == 0 ||
          d.kernel_close_wait_last_ns - d.kernel_close_wait_ns <= grace_) {
        continue;
      }
      groups[{0, JdkPool::kNo}].push_back(&s);
    }
    for (const auto& [key, sockets] : groups) {
      const auto [created, jdk_pool] = key;
      Finding f;
      f.kind = "close_wait_leak";
      f.severity = "error";
      f.confirmed_by_kernel = true;
      f.count = static_cast<int64_t>(sockets.size());
      f.stacks.emplace_back("eof_seen", std::vector<Frame>{});
      std::vector<Frame> created_frames = Sym(created, 'n');
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
        if (const Hold* h = Analyzer::FinalClose(*s); h != nullptr) {
          ex.closed_after_ms = Ms(h->to - std::min(h->to, d.kernel_close_wait_ns));
        }
        ex.tcp_state = "CLOSE_WAIT";
        f.examples.push_back(ex);
      }
      // A connection this side opened (a client's pool) or one it accepted.
      const Socket& first = *sockets.front();
      bool client = created && first.created_here && !first.accepted;
      if (jdk_pool != JdkPool::kNo) {
        f.kind = "pool_idle";
        f.severity = "info";
        f.stacks.clear();
        f.stacks.emplace_back("created", created_frames);
        // The longest CLOSE_WAIT: until the cache's close, or the end.
        uint64_t longest = 0;
        for (const Socket* s : sockets) {
          const Hold* h = Analyzer::FinalClose(*s);
          uint64_t until = jdk_pool == JdkPool::kAtEnd ? Until(*s)
                           : h != nullptr             ? h->to
                                                      : 0;
          uint64_t since = Detail(*s).kernel_close_wait_ns;
          if (until > since) longest = std::max(longest, until - since);
        }
        if (jdk_pool == JdkPool::kAtEnd) {
          f.message = absl::StrFormat(
              "%s in CLOSE_WAIT when the run ended, up to %s after the server "
              "closed %s, with nothing left unread: most likely idle in the "
              "JDK's keep-alive cache, which closes an idle connection within "
              "10 s (requested at %s)",
              Plural(f.count, "connection", "connections"), Seconds(longest),
              f.count == 1 ? "it" : "them", Where(created_frames));
          f.advice =
              "nothing to fix if the program read each response to its end: "
              "the cache would have closed the connection had the program run "
              "on. A response never read looks the same from outside when it "
              "fitted in the JDK's buffer; to tell, run longer than the "
              "cache's timeout (an unread one stays in CLOSE_WAIT, an error "
              "then), or make sure each body is read to its end and its "
              "stream closed, or conn.disconnect() called.";
        } else {
          if (const Hold* h = Analyzer::FinalClose(first); h != nullptr) {
            f.stacks.emplace_back("close", Sym(h->close_stack));
          }
          f.message = absl::StrFormat(
              "%s idle in the JDK's keep-alive cache after the server closed "
              "%s; closed by it after %s at most, as the pool is designed to "
              "(requested at %s)",
              Plural(f.count, "connection", "connections"),
              f.count == 1 ? "it" : "them", Seconds(longest),
              Where(created_frames));
          f.advice =
              "nothing to fix: the JDK's keep-alive cache closes an idle "
              "connection after its own timeout (5 s, or the server's "
              "Keep-Alive: timeout). To keep CLOSE_WAIT shorter, have the "
              "server send a shorter Keep-Alive timeout (newer JDKs also read "
              "the http.keepAlive.time.server property).";
        }
        report.findings.push_back(std::move(f));
        continue;
      }
      NodeSide node = NodeOf(first);
      if (node.known && node.client && NodeHttpClient(node)) {
        f.message = absl::StrFormat(
            "%s in CLOSE_WAIT that the program never read: the server closed "
            "them, but a response on each was never read to its end, so "
            "Node.js stopped reading the socket and never saw the EOF "
            "(requested at %s%s)",
            Plural(f.count, "connection", "connections"), Where(created_frames),
            NodeAgentPool(node) ? "; an http.Agent's pool holds the socket" : "");
        f.advice = NodeLeakAdvice(node);
        report.findings.push_back(std::move(f));
        continue;
      }
      std::string java_client = JavaClientAdvice(created_frames);
      f.message = absl::StrFormat(
          "%s in CLOSE_WAIT that the program never read: the peer closed, but "
          "no read returned 0 and nothing closed the socket%s",
          Plural(f.count, "connection", "connections"),
          !created ? std::string(" (opened before the audit started)")
          : client && !java_client.empty()
              ? absl::StrFormat(" (requested at %s: the response was never "
                                "read to its end, so the connection never "
                                "went back to the JDK's pool)",
                                Where(created_frames))
          : client ? absl::StrFormat(" (opened at %s: the server closed an "
                                     "idle connection this client kept)",
                                     Where(created_frames))
                   : absl::StrFormat(" (accepted at %s)", Where(created_frames)));
      std::string python_client = PythonClientAdvice(created_frames);
      f.advice =
          node.known ? NodeLeakAdvice(node)
          : !python_client.empty() && client ? python_client
          : !java_client.empty() && client ? java_client
          : client ? "a connection pool must notice the server's close: before "
                   "reusing an idle connection, and while it sits idle, poll "
                   "it for readability; a read that returns 0 means close() "
                   "it and open another. Keep idle connections no longer "
                   "than the server's keep-alive timeout."
                 : "read from every connection you accept (or close it): a "
                   "socket nobody reads never learns that the peer left, and "
                   "only close() ends CLOSE_WAIT.";
      report.findings.push_back(std::move(f));
    }
  }

  void FinWait2Held(Report& report) {
    std::map<std::pair<uint32_t, uint32_t>, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      if (s.shutdown_ns == 0 || !Analyzer::ConnectedStream(s)) continue;
      uint64_t deadline = s.shutdown_ns + grace_;
      if (s.eof_ns != 0 && s.eof_ns <= deadline) continue;  // the peer answered
      if (!HeldAt(s, deadline)) continue;
      groups[{Canon(s.shutdown_stack, 's'), Canon(Created(s), 'n')}].push_back(&s);
      fin_wait2_.insert(&s);
    }
    for (const auto& [key, sockets] : groups) {
      Finding f;
      f.kind = "fin_wait2_held";
      f.severity = "warning";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> shut = Sym(key.first, 's');
      f.stacks.emplace_back("shutdown", shut);
      f.stacks.emplace_back("created", Sym(key.second, 'n'));
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
      NodeSide node = NodeOf(*sockets.front());
      if (node.known) {
        // Node.js shuts the socket down for socket.end() once its writes
        // are out, from its loop: the JavaScript is where it came from.
        f.message = absl::StrFormat(
            "%s ended with socket.end() (Node.js's shutdown()) and then kept "
            "open for more than %d ms: the peer never ended its side, and "
            "this side waits in FIN_WAIT2, which tcp_fin_timeout does not end "
            "while the fd is open (%s at %s)",
            Plural(f.count, "connection was", "connections were"), Ms(grace_),
            node.client ? "opened" : "accepted by the server whose listener is added",
            Where(node.owner));
        f.advice =
            "after socket.end(), a peer that never ends its side keeps the "
            "socket open: destroy it after a timeout (socket.setTimeout(ms, "
            "() => socket.destroy())), and find out why the peer does not "
            "end.";
      } else {
        f.message = absl::StrFormat(
            "%s half-closed with shutdown() at %s and then kept open for more "
            "than %d ms: this side waits in FIN_WAIT2, which tcp_fin_timeout "
            "does not end while the fd is open",
            Plural(f.count, "connection was", "connections were"), Where(shut),
            Ms(grace_));
        f.advice =
            "after shutdown(SHUT_WR), read until EOF (with a timeout) and then "
            "close(); shutdown() never replaces close().";
      }
      report.findings.push_back(std::move(f));
    }
  }

  void AbortiveCloses(Report& report) {
    std::map<std::pair<uint32_t, uint32_t>, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      const Hold* h = Analyzer::FinalClose(s);
      if (h == nullptr || !(h->close_state & wire::kStateLinger0)) continue;
      groups[{Canon(s.linger_stack, 'l'), Canon(h->close_stack, 'c')}].push_back(&s);
      abortive_.insert(&s);
    }
    for (const auto& [key, sockets] : groups) {
      Finding f;
      f.kind = "abortive_close";
      f.severity = "warning";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> close = Sym(key.second, 'c');
      f.stacks.emplace_back("setsockopt", Sym(key.first, 'l'));
      f.stacks.emplace_back("close", close);
      f.stacks.emplace_back("created", Sym(Created(*sockets.front())));
      for (const Socket* sp : sockets) {
        const Hold* h = Analyzer::FinalClose(*sp);
        Began(f, h->to, Pid(h->stream));
      }
      for (const Socket* sp : sockets) {
        if (f.examples.size() >= kMaxExamples) break;
        const Socket& s = *sp;
        const Hold* h = Analyzer::FinalClose(s);
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
        if (!Analyzer::ConnectedStream(s) || s.eof_stream == id || s.shutdown_stream == id) {
          continue;
        }
        // A Unix socket the parent made rather than accepted (a socketpair)
        // is a channel to the child, passed on purpose: Node.js's IPC
        // (NODE_CHANNEL_FD), a supervisor's pipe to its workers.
        if (!(s.flags & wire::kFlagInet) && !s.accepted) continue;
        for (const Hold& h : s.holds) {
          if (h.stream != id || h.origin != Origin::kStart) continue;
          // Closing it unused is the new image cleaning up after its parent.
          if (h.end == End::kClose) continue;
          // A socket on stdin, stdout or stderr was handed over on purpose
          // (inetd style): the new program's input and output. So is one a
          // service manager passed (LISTEN_FDS), whose holds are kListenFd.
          if (h.fd >= 0 && h.fd <= 2) continue;
          groups[{Canon(Created(s), 'n'), Canon(exec_stack, 'x')}].push_back({&s, id, h.fd});
          break;
        }
      }
    }
    for (const auto& [key, items] : groups) {
      Finding f;
      f.kind = "exec_inherited";
      f.severity = "warning";
      f.count = static_cast<int64_t>(items.size());
      std::vector<Frame> created = Sym(key.first, 'n');
      f.stacks.emplace_back("created", created);
      f.stacks.emplace_back("exec", Sym(key.second, 'x'));
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
      reused[{Canon(r.stack, 'c'), Canon(r.previous.stack, 'p')}].push_back(&r);
    }
    for (const auto& [key, items] : reused) {
      Finding f = BadCloseFinding("reused_fd", key.first, key.second);
      f.count = static_cast<int64_t>(items.size());
      const Socket* victim = a_.sockets_.Find(items.front()->victim);
      f.stacks.emplace_back("victim_created",
                            Sym(victim ? Created(*victim) : 0));
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
      doubles[{Canon(d.stack, 'c'), Canon(d.previous.stack, 'p')}].push_back(&d);
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
    f.stacks.emplace_back("close", Sym(close, 'c'));
    f.stacks.emplace_back("previous_close", Sym(previous, 'p'));
    f.advice =
        "give every fd exactly one owner that closes it once; set the "
        "variable to -1 after close(), and never close on two paths.";
    return f;
  }

  void TimeWait(Report& report) {
    std::map<uint32_t, std::vector<const Socket*>> groups;
    for (const Socket& s : a_.sockets_) {
      if (fork_held_.contains(&s) || fin_wait2_.contains(&s) ||
          abortive_.contains(&s) || Detail(s).kernel_close_wait_ns != 0) {
        continue;
      }
      Analyzer::Fin fin = Analyzer::FinFirst(s);
      if (fin.ns == 0) continue;
      groups[Canon(fin.stack, 'c')].push_back(&s);
    }
    // What Analyzer::Fold() kept of the sockets it let go, by FIN stack;
    // each of those stacks kept its first sockets, above.
    std::map<uint32_t, std::vector<const Analyzer::TimeWaitFold*>> folded;
    for (const auto& [stack, fold] : a_.time_wait_folds_) {
      uint32_t canon = Canon(stack, 'c');
      groups[canon];
      folded[canon].push_back(&fold);
    }
    for (const auto& [stack, sockets] : groups) {
      Finding f;
      f.kind = "time_wait";
      f.severity = "info";
      f.count = static_cast<int64_t>(sockets.size());
      std::vector<Frame> close = Sym(stack, 'c');
      f.stacks.emplace_back("close", close);
      f.stacks.emplace_back(
          "created", Sym(sockets.empty() ? 0 : Created(*sockets.front())));
      // Views into the sockets' details: no string is made per socket.
      std::map<std::string_view, int64_t> peers;
      if (auto it = folded.find(stack); it != folded.end()) {
        for (const Analyzer::TimeWaitFold* fold : it->second) {
          f.count += fold->count;
          Began(f, fold->first_ns, Pid(fold->first_stream));
          for (const auto& [peer, n] : fold->peers) peers[peer] += n;
        }
      }
      for (const Socket* sp : sockets) {
        const Socket& s = *sp;
        std::string_view peer = Detail(s).peer;
        ++peers[peer.empty() ? "unknown" : peer.substr(0, peer.rfind(':'))];
        Analyzer::Fin fin = Analyzer::FinFirst(s);
        Began(f, fin.ns, Pid(fin.stream));
        const Hold* closed = Analyzer::FinalClose(s);
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
  // (role, stack) -> Canon(stack, role)
  absl::flat_hash_map<std::pair<char, uint32_t>, uint32_t> canon_;
  absl::flat_hash_map<std::string, uint32_t> canon_by_key_;
  // (role, Canon(stack, role)) -> the stack shown for it, and its count of
  // own frames.
  absl::flat_hash_map<std::pair<char, uint32_t>, std::pair<uint32_t, int64_t>>
      shown_;
  absl::flat_hash_map<uint32_t, int64_t> own_frames_;  // OwnFrames(stack)
  // OwnPath(stack); node-based, so references stay valid as it grows.
  std::map<uint32_t, std::vector<std::string>> own_paths_;
  // (role, Canon(stack, role)) -> the stacks Canon made it.
  absl::flat_hash_map<std::pair<char, uint32_t>, std::vector<uint32_t>>
      members_;
  AppRules rules_;
  // Callback stack -> whether it is in the program's own code.
  absl::flat_hash_map<uint32_t, bool> own_callback_;
  absl::flat_hash_set<const Socket*> fork_held_;
  absl::flat_hash_map<uint32_t, bool> jdk_pool_close_;  // ClosedByJdkPool()
  // Created(s) -> ByUrlConnection() of its frames.
  absl::flat_hash_map<uint32_t, bool> by_url_connection_;
  absl::flat_hash_set<const Socket*> fin_wait2_;
  absl::flat_hash_set<const Socket*> abortive_;
};

Report Analyzer::Build(Symbolizer& symbolizer,
                       std::optional<uint64_t> as_of) const {
  Report report;
  uint64_t end_ns = as_of.value_or(EndNs());
  uint64_t grace = options_.grace_ns.value_or(run_.grace_ns);
  report.processes = static_cast<int64_t>(streams_.size());
  std::vector<std::string> node_notes;
  {
    absl::flat_hash_set<uint32_t> with_sockets;
    for (const Socket& s : sockets_) {
      for (const Hold& h : s.holds) with_sockets.insert(h.stream);
    }
    with_sockets.insert(folded_streams_.begin(), folded_streams_.end());
    report.processes_with_sockets = static_cast<int64_t>(with_sockets.size());
    // A Node.js process without the agent: its reports stop at the event
    // loop, and the reader should know how to get the JavaScript.
    for (uint32_t id : stream_order_) {
      const Stream& s = streams_.at(id);
      const std::string& exe = s.process.exe;
      bool node = node::IsNodeBinaryName(exe.c_str() + exe.rfind('/') + 1);
      if (!node || s.node_agent || !with_sockets.contains(id)) continue;
      std::string note =
          "JavaScript frames and handlers unavailable for node: its "
          "NODE_OPTIONS did not load closeaudit's agent (CLOSEAUDIT_NODE=off, "
          "or the agent is not installed); docs/node.md says what to set";
      if (std::find(node_notes.begin(), node_notes.end(), note) ==
          node_notes.end()) {
        node_notes.push_back(std::move(note));
      }
    }
  }
  report.sockets_tracked = static_cast<int64_t>(sockets_.size()) + folded_;
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
  if (compacted_grace_ && grace < *compacted_grace_) {
    report.warnings.push_back(absl::StrCat(
        "this trace was compacted: ", compacted_sockets_,
        " sockets closed before then are kept only as counts, judged with "
        "the run's grace period of ", *compacted_grace_ / 1'000'000,
        " ms; a grace of ", grace / 1'000'000,
        " ms cannot judge them again, so what it would add among them is "
        "missing (the rest are judged with it)"));
  }
  for (const std::string& n : runtime_notes_) report.warnings.push_back(n);
  for (std::string& n : node_notes) {
    if (std::find(report.warnings.begin(), report.warnings.end(), n) ==
        report.warnings.end()) {
      report.warnings.push_back(std::move(n));
    }
  }
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
