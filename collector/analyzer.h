// Analyzer: the registry of sockets and who holds them, and the findings that
// follow from it.
//
// It consumes Records (collector/records.h) in arrival order, from the live
// collector or from a trace file, and Build() turns what it learned into a
// Report. Sockets are keyed by the kernel's cookie, never by fd number. Every
// reference a process holds is kept as a time interval (a Hold), so events of
// different processes may arrive in any order relative to each other: the
// findings are decided at Build() time from the whole history. Not
// thread-safe.
#ifndef CLOSEAUDIT_COLLECTOR_ANALYZER_H_
#define CLOSEAUDIT_COLLECTOR_ANALYZER_H_

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "collector/app_frames.h"
#include "collector/live.h"
#include "collector/records.h"
#include "collector/report.h"
#include "collector/symbolizer.h"

namespace closeaudit {

struct SocketKey;  // collector/kernel.h

struct AnalyzerOptions {
  // Overrides the grace period recorded in the trace's RunRecord.
  std::optional<uint64_t> grace_ns;
  // Added to the rules the run recorded (RunRecord::app).
  AppRules app;
  // Once the registry holds this many sockets, Fold() lets go of the closed
  // ones that can no longer change any finding; 0: never.
  uint32_t fold_at = 16384;
};

class Analyzer {
 public:
  explicit Analyzer(AnalyzerOptions options = {});

  void Add(const Record& record);
  // The same for an event, without wrapping it in a Record (the collector's
  // hot path).
  void Add(const EventRecord& record) {
    ++events_;
    OnEvent(record);
    if (sockets_.size() >= next_fold_) Fold();
  }

  // Folds every socket that can no longer change any finding into counts:
  // one closed by its only holder, the process that made it, more than a
  // second (kFoldMarginNs, for stragglers) before the latest time seen,
  // that is no candidate for any finding but time_wait. A time_wait one
  // adds to its FIN stack's count, peers and start, past the first few of
  // each stack, which stay as the finding's examples. The timelines keep
  // what folded sockets were held per span of time. Add() calls it as the
  // registry grows (AnalyzerOptions::fold_at); reports come out the same
  // but for the examples chosen and the timelines' detail.
  void Fold();
  // The sockets the registry holds now, and those it let go.
  uint32_t sockets_held() const { return sockets_.size(); }
  int64_t sockets_folded() const { return folded_; }
  // What the sockets Fold() let go add to the report, and the bad_close
  // state of the streams still running, for a compacted trace (which drops
  // those sockets' `events`). Adding the records to an Analyzer that has
  // read the rest of the compacted part restores it.
  std::vector<FoldRecord> FoldRecords(int64_t events) const;
  // Names stacks (this analyzer's ids) for a trace: by a stream's arena
  // offset for one, in `stream` if it has one there. {0, 0}: none.
  class StackNames {
   public:
    std::pair<uint32_t, uint32_t> operator()(uint32_t stack, uint32_t stream) const;

   private:
    friend class Analyzer;
    absl::flat_hash_map<std::pair<uint32_t, uint32_t>, uint32_t> in_stream_;
    absl::flat_hash_map<uint32_t, std::pair<uint32_t, uint32_t>> anywhere_;
  };
  StackNames NameStacks() const;
  // The latest close of `fd` in `stream` as bad_close keeps it, if there is
  // one; its `ref` is the stack's id here (for NameStacks()).
  std::optional<FoldRecord::LastClose> LastCloseOf(uint32_t stream, int fd) const;
  // The grace period sockets were folded with (FoldRecord) before this
  // trace was compacted, if it was: a report with a shorter one cannot
  // judge them again.
  std::optional<uint64_t> compacted_grace() const { return compacted_grace_; }

  // The report as of `as_of` (CLOCK_MONOTONIC ns), by default the EndRecord's
  // time or, without one, the latest time seen.
  Report Build(Symbolizer& symbolizer,
               std::optional<uint64_t> as_of = std::nullopt) const;

  // Counts as of `now` for the live status and /metrics: findings without
  // symbolizing their stacks, and the sockets of the processes still running.
  LiveStatus Live(uint64_t now) const;

  int64_t events() const { return events_; }
  // Whether the shim reported this socket (the kernel sampler asks).
  bool Tracks(uint64_t cookie) const { return sockets_.contains(cookie); }
  // Appends the endpoints and cookie of each TCP socket the program still
  // holds and that is not listening: what could be in CLOSE_WAIT or
  // FIN_WAIT2, for the kernel to be asked about one by one. False if the
  // endpoints of one are not known (a client's before its EOF or close), or
  // there are more than `limit`: then only a dump of the table sees them.
  bool OpenSocketKeys(size_t limit, std::vector<SocketKey>* out) const;
  // Whether the stream's perf map was written only because closeaudit
  // asked (the Node.js agent said so): the collector may remove it when the
  // process has ended.
  bool OwnsPerfMap(uint32_t stream) const {
    auto it = streams_.find(stream);
    return it != streams_.end() && it->second.own_perf_map;
  }

  // Implementation details follow.
 private:
  friend class FindingBuilder;
  static constexpr uint64_t kOpen = std::numeric_limits<uint64_t>::max();
  static constexpr uint32_t kNoModule = ~0u;
  // Examples a finding shows at most.
  static constexpr size_t kMaxExamples = 5;
  // How long after its close a socket may still hear of itself from
  // another ring's late records, or from a kernel sweep begun before the
  // close: Fold() waits that long. (The grace period needs no wait: every
  // rule it is in can be read off a closed socket at once.)
  static constexpr uint64_t kFoldMarginNs = 1'000'000'000;

  struct NormFrame {
    uint32_t module;   // index into modules_; kNoModule if unknown;
                       // kPythonFrame for a Python frame
    uint64_t offset;   // address - load bias, or the address if no module;
                       // a Python frame's wire::PyFrame::where
    uint64_t address;  // as seen in the first process that had it; a
                       // Python frame's index into py_codes_
  };
  static constexpr uint32_t kPythonFrame = 0xfffffffe;

  // How a hold began. kListenFd: found at start among the sockets a service
  // manager handed over on purpose (LISTEN_FDS); kStart: any other found at
  // start.
  enum class Origin : uint8_t {
    kCreated,
    kStart,
    kFork,
    kReceived,
    kDup,
    kListenFd
  };
  enum class End : uint8_t { kOpen, kClose, kExit, kExec, kReuse };

  // One process's reference to a socket, from `from` to `to`.
  struct Hold {
    uint64_t from = 0;
    uint64_t to = kOpen;
    uint64_t unsent = 0;  // 1 + bytes queued at an abortive close
    uint32_t stream = 0;
    int32_t fd = -1;
    uint32_t close_stack = 0;
    uint32_t close_tid = 0;
    uint16_t close_state = 0;  // wire::EventState at the close
    Origin origin = Origin::kCreated;
    End end = End::kOpen;
  };

  // What only some sockets have: their addresses (from kAddress or the
  // kernel) and the kernel's samples (sock_diag). Kept apart so that the
  // record every socket has stays small.
  // A callback an event library took for a socket (wire::kHandler).
  struct Handler {
    wire::HandlerKind kind{};
    uint32_t callback = 0;    // a one-frame stack: the callback itself
    uint32_t registered = 0;  // where the program registered it
    uint32_t flags = 0;       // kHandler's aux above the kind
  };

  struct SocketDetail {
    std::string local, peer;
    // The latest few callbacks registered for the socket, oldest first.
    std::vector<Handler> handlers;
    // What the Node.js agent said of the socket (wire::kNode): a stack of
    // JavaScript frames per wire::NodeRole, and the flags it sent.
    std::array<uint32_t, 6> node_stacks{};
    uint32_t node_flags = 0;
    uint32_t bufferevent_stack = 0;  // bufferevent_socket_new()
    uint32_t freed_stack = 0;        // bufferevent_free()
    uint64_t freed_ns = 0;
    bool close_on_free = false;      // BEV_OPT_CLOSE_ON_FREE
    uint64_t kernel_close_wait_ns = 0;       // first sample in CLOSE_WAIT
    uint64_t kernel_close_wait_last_ns = 0;  // latest sample in CLOSE_WAIT
    uint64_t kernel_fin_wait2_ns = 0;        // first sample in FIN_WAIT2
    uint64_t kernel_fin_wait2_last_ns = 0;   // latest sample in FIN_WAIT2
    // The most bytes a CLOSE_WAIT sample showed received and not yet read,
    // the FIN counted as one (1: nothing but the FIN); 0 if no sample said.
    uint32_t kernel_close_wait_unread = 0;
    int kernel_state = 0;                    // latest sampled state
    std::vector<std::pair<uint32_t, int32_t>> kernel_owners;  // untracked
  };

  struct Socket {
    // Nearly every socket has one hold (one process opens and closes it).
    absl::InlinedVector<Hold, 1> holds;
    uint64_t created_ns = 0;
    uint64_t eof_ns = 0;
    uint64_t shutdown_ns = 0;
    uint32_t created_stack = 0;  // stack ids start at 1; 0 = unknown
    uint32_t creator_stream = 0;
    uint32_t creator_tid = 0;
    uint32_t eof_stack = 0;
    uint32_t last_use_stack = 0;
    uint32_t eof_stream = 0;
    int32_t eof_fd = -1;
    uint32_t shutdown_stack = 0;
    uint32_t shutdown_stream = 0;
    uint32_t linger_stack = 0;  // setsockopt(SO_LINGER {1, 0})
    uint32_t detail = 0;        // index into details_; 0 = none yet
    uint16_t state = 0;         // wire::EventState seen so far (or-ed)
    uint8_t flags = 0;          // wire::EventFlags
    bool created_here = false;  // by socket()/accept() in an audited process
    bool accepted = false;      // by accept(): a server's connection
    // The shutdown was a runtime's own before a close in the same call
    // (wire::kShutdownBeforeClose): its stack is that close's.
    bool shutdown_before_close = false;
    // Accepted: 1 + the index in sockets_ of the listening socket, when the
    // process held it as tracked; 0 otherwise. What the Node.js agent says
    // once of a listening socket holds for every socket accepted from it.
    uint32_t listener = 0;
    // Kept by Fold() as one of the first examples of its FIN stack's
    // time_wait finding.
    bool time_wait_example = false;
    // It took a number another socket was still held under (End::kReuse):
    // its records end that other hold, so Fold() keeps it, and a compacted
    // trace its records.
    bool took_a_held_number = false;
  };

  // The sockets the shim reported, in first-seen order, found by cookie.
  // They live in chunks that never move, so a Socket& stays valid while
  // others are added, and Build() walks them in order without a lookup.
  class SocketTable {
   public:
    Socket* Find(uint64_t cookie) {
      std::optional<uint32_t> i = IndexOf(cookie);
      return i ? &At(*i) : nullptr;
    }
    const Socket* Find(uint64_t cookie) const {
      std::optional<uint32_t> i = IndexOf(cookie);
      return i ? &(*this)[*i] : nullptr;
    }
    // The socket with this cookie, added if it is new.
    Socket& Get(uint64_t cookie);
    // Adds a socket with a cookie the table does not have.
    Socket& Add(uint64_t cookie);
    Socket& At(uint32_t i) { return chunks_[i / kChunk][i % kChunk]; }
    // The cookie of each socket, by index.
    std::vector<uint64_t> Cookies() const;
    bool contains(uint64_t cookie) const { return IndexOf(cookie).has_value(); }
    uint32_t size() const { return size_; }
    const Socket& operator[](uint32_t i) const {
      return chunks_[i / kChunk][i % kChunk];
    }

    // In first-seen order.
    class Iterator {
     public:
      Iterator(const SocketTable& table, uint32_t i) : table_(table), i_(i) {}
      const Socket& operator*() const { return table_[i_]; }
      Iterator& operator++() {
        ++i_;
        return *this;
      }
      bool operator!=(const Iterator& other) const { return i_ != other.i_; }

     private:
      const SocketTable& table_;
      uint32_t i_;
    };
    Iterator begin() const { return Iterator(*this, 0); }
    Iterator end() const { return Iterator(*this, size_); }

    // The index of the socket with this cookie, for operator[].
    std::optional<uint32_t> IndexOf(uint64_t cookie) const;

   private:
    static constexpr uint32_t kChunk = 1024;
    struct Entry {
      uint64_t cookie;
      uint32_t index;
    };
    // Cookie -> index. The kernel hands out cookies from one counter, so new
    // sockets mostly arrive in increasing cookie order. Those are appended
    // to `ordered_`, which stays sorted and is searched from its end, where
    // the sockets that are still busy are: no hash table as large as the
    // run, whose every access would miss the cache. Cookies that arrive out
    // of order (from another process's ring, say) go to `others_`.
    std::vector<Entry> ordered_;
    absl::flat_hash_map<uint64_t, uint32_t> others_;
    std::vector<std::unique_ptr<Socket[]>> chunks_;
    uint32_t size_ = 0;
  };

  struct Stream {
    ProcessRecord process;
    std::vector<ModuleRecord> modules;
    absl::flat_hash_map<uint32_t, uint32_t> stacks;  // ref -> stack id
    absl::flat_hash_map<uint32_t, uint32_t> py_codes;  // ref -> py_codes_ id
    // Open holds: fd -> cookie.
    absl::flat_hash_map<int, uint64_t> fds;
    // The latest close of each fd number (for bad_close).
    struct LastClose {
      uint64_t cookie = 0;
      uint64_t ns = 0;
      uint32_t stack = 0;
      uint32_t tid = 0;
      bool reopened = false;  // something was opened on the number since
    };
    absl::flat_hash_map<int, LastClose> last_close;
    bool exited = false;
    bool replaced = false;  // exec'd into a newer stream
    uint64_t exit_ns = 0;
    int32_t exit_status = -1;
    uint64_t exec_ns = 0;
    uint32_t exec_stack = 0;
    uint32_t exec_from = 0;  // the stream this image replaced, if any
    // JIT code replaced at its addresses (a later JIT module over an
    // earlier one) bumps the generation; a stack with JIT frames interned
    // at an older one is named again when an event refers to it.
    uint32_t jit_generation = 0;
    struct JitStack {
      uint32_t generation = 0;
      std::vector<uint64_t> frames;
      std::vector<wire::PyFrame> py_frames;
    };
    absl::flat_hash_map<uint32_t, JitStack> jit_stacks;  // by ref
    bool node_agent = false;     // closeaudit's Node.js agent ran in it
    bool own_perf_map = false;   // V8 wrote its perf map only for closeaudit
  };

  struct ForkInfo {
    uint32_t parent_stream = 0;  // 0 if only the child told (daemon)
    uint32_t child_pid = 0;
    uint32_t stack = 0;
    uint32_t kind = 0;  // wire::ForkKind
    uint64_t ns = 0;
  };

  // A close() that failed with EBADF on a number where this process had
  // closed a tracked socket, with nothing opened there since: a double close.
  struct DoubleClose {
    uint32_t stream = 0;
    int fd = -1;
    uint64_t ns = 0;
    uint32_t stack = 0;
    uint32_t tid = 0;
    Stream::LastClose previous;
  };

  // A close that hit a number another thread had reused.
  struct ReusedClose {
    uint32_t stream = 0;
    int fd = -1;
    uint64_t victim = 0;  // the socket that was closed by mistake
    uint32_t stack = 0;
    Stream::LastClose previous;
    uint64_t ns = 0;
  };

  // A socket that is a TCP connection (not a listener).
  static bool ConnectedStream(const Socket& s) {
    return (s.flags & wire::kFlagStream) &&
           (s.state & wire::kStateConnected) &&
           !(s.state & wire::kStateListening);
  }
  // Whether a reference to the socket is still held.
  static bool AnyOpen(const Socket& s) {
    for (const Hold& h : s.holds) {
      if (h.end == End::kOpen) return true;
    }
    return false;
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
  // This side's FIN on a TCP connection, when it went before the peer's
  // (so this side is left in TIME_WAIT): a shutdown, else the close of the
  // last reference. `ns` is 0 when there is none. time_wait's rule, and
  // Fold()'s reading of it.
  struct Fin {
    uint64_t ns = 0;
    uint32_t stack = 0;
    uint32_t stream = 0;
  };
  static Fin FinFirst(const Socket& s) {
    if (!ConnectedStream(s) || !(s.flags & wire::kFlagInet)) return {};
    Fin fin;
    if (s.shutdown_ns != 0) {
      fin = {s.shutdown_ns, s.shutdown_stack, s.shutdown_stream};
    } else if (const Hold* close = FinalClose(s)) {
      fin = {close->to, close->close_stack, close->stream};
    }
    if (fin.ns == 0 || (s.eof_ns != 0 && s.eof_ns <= fin.ns)) return {};
    return fin;
  }

  // What Fold() kept of the time_wait sockets of one FIN stack it let go.
  struct TimeWaitFold {
    int64_t count = 0;
    uint64_t first_ns = kOpen;  // the earliest FIN
    uint32_t first_stream = 0;
    absl::flat_hash_map<std::string, int64_t> peers;  // host -> sockets
  };
  // What Fold() kept of a stream's sockets for its timeline: per span of
  // `width` ns from `origin`, the ns the folded sockets were held, and held
  // after the peer's EOF.
  struct FoldedLoad {
    uint64_t origin = 0;
    uint64_t width = 0;
    std::vector<uint64_t> open, close_wait;
  };
  // What a socket still means to the findings, for Fold().
  enum class Fate : uint8_t { kKeep, kTimeWait, kNothing };
  Fate FateOf(const Socket& s, uint64_t horizon, uint64_t grace) const;
  // Adds a socket Fold() lets go to its stream's FoldedLoad.
  void FoldIntoTimeline(const Socket& s);
  static void WidenLoad(FoldedLoad& load, uint64_t to);
  static void MergeLoad(FoldedLoad& into, const FoldedLoad& from);

  void OnProcess(const ProcessRecord& p);
  void OnEvent(const EventRecord& record);
  void OnKernel(const KernelRecord& k);
  // Counts a kernel sample (or a sweep's marker) for the timelines.
  // `tracked` is the socket it is about, if the shim reported it.
  void NoteKernelSample(const KernelRecord& k, const Socket* tracked);
  // Report::timelines (collector/timeline.cc), after the findings.
  void BuildTimelines(Report& report, uint64_t end_ns) const;
  // Report::kernel_observations, for a run where nothing could be audited
  // (collector/observations.cc).
  void BuildKernelObservations(Report& report, uint64_t grace_ns) const;
  // Whether a resync snapshot's line for fd, read at ns, is older than
  // what the stream already saw on that number.
  bool StaleResync(const Stream& stream, uint32_t stream_id, int fd,
                   uint64_t ns);
  void OnClose(Stream& stream, uint32_t stream_id, const wire::Event& e);
  // Opens a hold of (stream, fd) on cookie unless it is already held
  // there, and returns the socket.
  Socket& OpenHold(Stream& stream, uint32_t stream_id, int fd, uint64_t cookie,
                   uint64_t ns, Origin origin);
  // Ends the open hold of (stream, fd) on cookie, if there is one.
  Hold* EndHold(Stream& stream, uint32_t stream_id, int fd, uint64_t cookie,
                uint64_t ns, End end);
  void EndAllHolds(Stream& stream, uint32_t stream_id, uint64_t ns, End end);
  uint32_t StackFor(Stream& stream, uint32_t ref);
  uint32_t InternFrames(const Stream& stream,
                        const std::vector<uint64_t>& frames,
                        const std::vector<wire::PyFrame>& py_frames = {});
  void OnRuntime(Stream& stream, const wire::Event& e);
  uint32_t InternModule(const ModuleRecord& module);
  uint64_t EndNs() const;
  // The socket's detail, made on first use.
  SocketDetail& DetailOf(Socket& socket);
  // Its detail, or the empty one (details_[0]) if it has none.
  const SocketDetail& DetailOf(const Socket& socket) const {
    return details_[socket.detail];
  }

  AnalyzerOptions options_;
  RunRecord run_;
  std::vector<std::string> notes_;
  bool unaudited_ = false;
  bool have_end_ = false;
  uint64_t end_ns_ = 0;
  uint64_t latest_ns_ = 0;
  int64_t events_ = 0;
  int64_t dropped_ = 0;
  std::vector<uint32_t> stream_order_;
  // node maps: references to elements stay valid while others are added.
  absl::node_hash_map<uint32_t, Stream> streams_;
  absl::flat_hash_map<uint32_t, uint32_t> live_stream_by_pid_;
  std::vector<ModuleRecord> modules_;
  absl::flat_hash_map<std::pair<std::string, std::string>, uint32_t>
      module_ids_;
  std::vector<std::vector<NormFrame>> stacks_;  // index 0 unused
  // The Python code objects stacks name, one per distinct content.
  std::vector<PyCodeRecord> py_codes_;
  absl::flat_hash_map<std::string, uint32_t> py_code_ids_;
  // What the library made of each interpreter it found (kRuntime): said
  // once per kind in the report's warnings.
  std::vector<std::string> runtime_notes_;
  absl::flat_hash_map<std::string, uint32_t> stack_ids_;
  SocketTable sockets_;
  std::vector<SocketDetail> details_;  // index 0: the empty one
  std::vector<ForkInfo> forks_;
  std::vector<DoubleClose> double_closes_;
  // Per (stream, stack): how many closes there failed with EBADF. A site
  // that failed on many numbers is a sweep (close everything at start-up).
  absl::flat_hash_map<std::pair<uint32_t, uint32_t>, int> ebadf_per_site_;
  std::vector<ReusedClose> reused_closes_;
  // Kernel samples of sockets the shim never saw, by inode.
  absl::node_hash_map<uint64_t, Socket> untracked_;
  // The times the kernel was sampled, in order, and per (time, stream) how
  // many of the stream's sockets it showed in CLOSE_WAIT.
  std::vector<uint64_t> sweeps_;
  absl::flat_hash_map<std::pair<uint64_t, uint32_t>, uint32_t>
      kernel_close_wait_;

  // What Fold() let go: how many sockets, the streams that held them, the
  // time_wait ones by FIN stack, the time_wait examples kept per FIN stack,
  // and the timelines' share.
  uint32_t next_fold_ = options_.fold_at ? options_.fold_at : ~0u;
  void OnFold(const FoldRecord& f);
  std::optional<uint64_t> compacted_grace_;
  int64_t compacted_events_ = 0;  // events FoldRecords said were dropped
  int64_t compacted_sockets_ = 0;  // sockets they said were folded
  int64_t folded_ = 0;
  absl::flat_hash_set<uint32_t> folded_streams_;
  absl::flat_hash_map<uint32_t, TimeWaitFold> time_wait_folds_;
  absl::flat_hash_map<uint32_t, uint32_t> time_wait_examples_;
  absl::flat_hash_map<uint32_t, FoldedLoad> folded_load_;
  // Sockets a reused_fd finding names (never folded).
  absl::flat_hash_set<uint64_t> reuse_victims_;
};

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_ANALYZER_H_
