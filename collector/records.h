// The collector's record model: what the analyzer consumes and what the trace
// file stores.
//
// The live collector turns each process's hello, ring events and arena blobs
// into these records; `closeaudit report DIR` reads the same records back from
// the trace file. Both paths feed one Analyzer, which is why a regenerated
// report equals the live one. A "stream" is one process image as seen by the
// collector (a fork child or an exec'd image is a new stream).
#ifndef CLOSEAUDIT_COLLECTOR_RECORDS_H_
#define CLOSEAUDIT_COLLECTOR_RECORDS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/wire.h"

namespace closeaudit {

// The run as a whole: written first.
struct RunRecord {
  uint64_t grace_ns = 0;
  uint64_t start_mono_ns = 0;
  uint64_t start_real_ns = 0;
  std::string host;  // the machine's name; absent from older traces
  // --app-path and --not-app as the run was given them; absent from older
  // traces.
  std::vector<std::string> app_paths;
  std::vector<std::string> not_app;
};

struct ProcessRecord {
  uint32_t stream = 0;
  uint32_t pid = 0;
  uint32_t ppid = 0;
  uint32_t flags = 0;  // wire::HelloFlags
  uint64_t start_mono_ns = 0;
  uint64_t start_real_ns = 0;
  std::string exe;
  std::vector<std::string> argv;
  // The library's version (wire::HelloMsg::lib_version); 0 if it did not
  // say, or the trace is older than the field.
  uint32_t lib_version = 0;
};

// A ModuleRecord whose path starts with this is no file but one function of
// JIT-compiled code, named by the perf map its runtime wrote
// (/tmp/perf-PID.map): the rest of the path is the function's name, and
// the record spans its code.
inline constexpr char kJitModulePrefix[] = "[perf-map] ";

struct ModuleRecord {
  uint32_t stream = 0;
  uint64_t load_bias = 0;
  uint64_t start = 0;
  uint64_t end = 0;
  std::string path;
  std::string build_id;  // raw bytes
};

struct StackRecord {
  uint32_t stream = 0;
  uint32_t ref = 0;  // the arena offset events use to name it
  std::vector<uint64_t> frames;
  // The calling thread's Python frames, innermost first (wire::PyFrame: a
  // PyCodeRecord's ref and where); none outside CPython and in older traces.
  std::vector<wire::PyFrame> py_frames;
};

// A CPython code object a stack's Python frames name (wire::PyCodeBlob).
// Written before the first stack that refers to it.
struct PyCodeRecord {
  uint32_t stream = 0;
  uint32_t ref = 0;  // the arena offset Python frames use to name it
  uint16_t minor = 0;  // of CPython 3.minor; 0: a definition
  // A definition's language: wire::CodeLanguage (a JavaScript frame the
  // Node.js agent named).
  uint16_t language = 0;
  int32_t firstlineno = 0;
  std::string name;   // qualified from 3.11
  std::string file;
  std::string table;  // the line table's bytes (python_lines.h)
};

struct EventRecord {
  uint32_t stream = 0;
  uint64_t seq = 0;  // ring position
  wire::Event event{};
};

struct ExitRecord {
  uint32_t stream = 0;
  uint64_t mono_ns = 0;
  int32_t exit_status = -1;  // -1: unknown; else as the report prints it
  uint64_t dropped_events = 0;
  uint64_t dropped_blobs = 0;
  uint64_t torn_events = 0;
};

// What the kernel said about one socket of an audited process at one moment
// (a sock_diag sample). Owners are filled in for sockets the shim never
// tracked (they predate it), from /proc/PID/fd.
struct KernelRecord {
  uint64_t mono_ns = 0;
  uint64_t cookie = 0;
  uint64_t inode = 0;
  int32_t state = 0;  // TCP state, kernel numbering (collector/kernel.h)
  uint32_t send_queue = 0;
  std::string local, peer;
  std::vector<std::pair<uint32_t, int32_t>> owners;  // (pid, fd)
  // Bytes received and not yet read, the peer's FIN counted as one
  // (KernelSocket::recv_queue); kNoRecvQueue in traces written before the
  // field.
  uint32_t recv_queue = kNoRecvQueue;
  static constexpr uint32_t kNoRecvQueue = 0xffffffff;
};

// Something the run itself knows about the data, said at the top of every
// report made from the trace (the program could not be audited, say).
struct NoteRecord {
  std::string text;
  bool unaudited = false;  // nothing in the run could be audited
};

// The end of observation (the report is made as of this moment).
struct EndRecord {
  uint64_t mono_ns = 0;
};

// What sockets a compacted trace no longer holds added to the report
// (Analyzer::Fold(): sockets closed and judged), written by the compaction
// in place of their records. A compaction may write several, and what they
// hold adds up: the scalars are in the first, the lists are split.
struct FoldRecord {
  uint64_t grace_ns = 0;   // the grace period they were judged with
  uint64_t latest_ns = 0;  // the latest time the compacted part had seen
  int64_t sockets = 0;
  int64_t events = 0;      // the events of theirs the trace no longer has
  std::vector<uint32_t> streams;  // the process images that held them
  // time_wait sockets by the stack of their FIN, named by a stream's arena
  // offset for it.
  struct TimeWait {
    uint32_t stream = 0;
    uint32_t ref = 0;
    int64_t count = 0;
    uint64_t first_ns = 0;  // the earliest FIN, and its stream
    uint32_t first_stream = 0;
    std::vector<std::pair<std::string, int64_t>> peers;  // host -> sockets

    bool operator==(const TimeWait&) const = default;
  };
  std::vector<TimeWait> time_wait;
  // A stream's timeline share: per span of `width` ns from `origin`, the ns
  // its folded sockets were held, and held after the peer's EOF.
  struct Load {
    uint32_t stream = 0;
    uint64_t origin = 0;
    uint64_t width = 0;
    std::vector<uint64_t> open, close_wait;

    bool operator==(const Load&) const = default;
  };
  std::vector<Load> loads;
  // The latest close of each fd number of the streams still running (for
  // bad_close), as the compacted part left them.
  struct LastClose {
    uint32_t stream = 0;
    int32_t fd = 0;
    uint64_t cookie = 0;
    uint64_t ns = 0;
    uint32_t ref = 0;  // the close's stack, by the stream's arena offset
    uint32_t tid = 0;
    bool reopened = false;

    bool operator==(const LastClose&) const = default;
  };
  std::vector<LastClose> last_closes;
  bool operator==(const FoldRecord&) const = default;
};

using Record = std::variant<RunRecord, ProcessRecord, ModuleRecord, StackRecord,
                            EventRecord, ExitRecord, EndRecord, KernelRecord,
                            NoteRecord, PyCodeRecord, FoldRecord>;

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_RECORDS_H_
