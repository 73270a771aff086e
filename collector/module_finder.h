// ModuleFinder: the objects a process loaded after its image started.
//
// The shim sends its module list once, when an image starts, and never walks
// the loader's list again: that walk takes the loader's lock, which a
// wrapper called from a signal handler must never wait for. Objects loaded
// later (dlopen'd plugins, an interpreter's extension modules, a runtime's
// native libraries, libc's own NSS modules) would leave their frames as bare
// addresses. The collector finds them itself: a stack with a frame in no
// module it knows makes it read /proc/PID/maps while the process still runs
// that image, and it records each executable file mapping under such a
// frame as a module, with the load bias and build-id read from the file.
// The records go into the trace like the shim's, so an object unloaded later
// still symbolizes, and `closeaudit report` sees the same modules.
//
// An address in no file mapping (JIT-compiled code) is looked up in the perf
// map the runtime writes, /tmp/perf-PID.map ("START SIZE NAME" lines, the
// convention of perf(1) that V8's --perf-basic-prof, the JVM's agents and
// CPython's -X perf follow), and the function holding it is recorded as a
// module of its own (kJitModulePrefix). The map is read only when it is the
// process's own (same owner), incrementally as it grows. A runtime reuses
// the memory of code it freed, and appends the new function to the map: a
// stack whose frames fall in JIT functions already recorded makes the map be
// read on, and a later function over one of them is recorded anew, so that
// each stack is named by the code that was there when it came (the
// analyzer takes the latest module over an address, and names a stack
// written before again for events after such a replacement).
//
// A mapping is taken only when the file at its path is the one mapped (same
// device and inode); a process that has exec'd, exited or been replaced by
// another with the same pid is never read for an older image. Not
// thread-safe: the session's thread owns it.
#ifndef CLOSEAUDIT_COLLECTOR_MODULE_FINDER_H_
#define CLOSEAUDIT_COLLECTOR_MODULE_FINDER_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "collector/records.h"

namespace closeaudit {

class ModuleFinder {
 public:
  // Where to read a process's maps, and its perf map: "/proc" and "/tmp"
  // but in tests.
  explicit ModuleFinder(std::string proc_root = "/proc",
                        std::string perf_map_dir = "/tmp");

  // What the collector learned: a hello (which image a pid now runs) or a
  // module (a range that needs no looking up).
  void Note(const Record& record);
  // The image of `stream` ended (exec or exit): its pid is never read for
  // it again.
  void Retire(uint32_t stream);
  // Removes the perf map of the stream's process, once that process has
  // gone, when the map is this user's and no older than the process: for a
  // map the runtime wrote only because closeaudit asked (V8's, with the
  // agent's word for it), which would otherwise stay in /tmp for good. True
  // if it was removed.
  bool RemovePerfMap(uint32_t stream);

  // The modules to record before `stack`: those that its frames fall in and
  // no record covers yet. Empty when every frame is known, the process no
  // longer runs the stream's image, or its maps say nothing new.
  std::vector<ModuleRecord> Find(const StackRecord& stack);

  // How many times a process's maps were read (for tests).
  int reads() const { return reads_; }

 private:
  struct Range {
    uint64_t start, end;
  };
  // What was read so far of a process's perf map.
  struct PerfMap {
    uint64_t inode = 0;  // of the file read; 0: none found yet
    uint64_t read = 0;   // bytes
    // start -> (end, name); a later line for the same start replaces it.
    std::map<uint64_t, std::pair<uint64_t, std::string>> symbols;
  };
  struct StreamState {
    uint32_t pid = 0;
    uint64_t start_real_ns = 0;  // when the image started (CLOCK_REALTIME)
    bool retired = false;
    std::vector<Range> known;  // every module recorded for the stream
    // Addresses a read of the maps could not place (anonymous or JIT
    // memory): not asked about again.
    absl::flat_hash_set<uint64_t> unplaceable;
    int reads = 0;
    PerfMap perf_map;
    // The JIT functions recorded as modules, latest first where they
    // overlap: start -> (end, name).
    std::map<uint64_t, std::pair<uint64_t, std::string>> jit;
  };

  bool Known(const StreamState& s, uint64_t address) const;
  // Reads what the process's perf map gained since the last read.
  void ReadPerfMap(StreamState& s);
  // The JIT function at `ip` in what was read of the perf map, as a module.
  bool PerfMapSymbol(const StreamState& s, uint64_t ip, ModuleRecord* out) const;
  // Records a JIT function as the stream's code over its range.
  void NoteJit(StreamState& s, const ModuleRecord& rec);

  std::string proc_root_;
  std::string perf_map_dir_;
  absl::flat_hash_map<uint32_t, StreamState> streams_;
  absl::flat_hash_map<uint32_t, uint32_t> stream_of_pid_;  // the newest hello
  int reads_ = 0;
};

namespace internal {

// One line of /proc/PID/maps.
struct Mapping {
  uint64_t start = 0, end = 0, offset = 0;
  bool executable = false;
  uint64_t device_major = 0, device_minor = 0, inode = 0;
  std::string path;
};
// False for a line that is not one (it is skipped).
bool ParseMapsLine(const std::string& line, Mapping* out);

// The module a mapping of `path` at file offset `offset`, starting at
// `start`, belongs to: bias, the range of all its loadable segments, and its
// build-id. False if the file is no ELF object or the offset lies in no
// segment.
bool ModuleFromFile(const Mapping& mapping, ModuleRecord* out);

// One line of a perf map: "START SIZE NAME". False for anything else.
bool ParsePerfMapLine(std::string_view line, uint64_t* start, uint64_t* size,
                      std::string* name);

}  // namespace internal
}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_MODULE_FINDER_H_
