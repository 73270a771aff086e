// Turns return addresses reported by libcloseaudit.so into function names and
// source lines, so a report can say which line left a socket in CLOSE_WAIT.
//
// The shim only records raw addresses plus, per loaded object, its path,
// GNU build-id and load bias (dl_iterate_phdr's dlpi_addr). The Symbolizer
// reads the object from disk with elfutils' libdwfl (including separate
// debuginfo found by build-id or .gnu_debuglink) and answers with one frame per
// inlining level.
//
// A Symbolizer is not thread-safe: use one per thread, or lock around it.
#ifndef CLOSEAUDIT_COLLECTOR_SYMBOLIZER_H_
#define CLOSEAUDIT_COLLECTOR_SYMBOLIZER_H_

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace closeaudit {

// One source-level frame. A single return address yields several of these when
// the call sits inside inlined code.
struct Frame {
  std::string function;  // Demangled; "" if unknown.
  std::string file;      // Absolute source path when DWARF has one; else "".
  int line = 0;          // 0 if unknown.
  std::string module;    // ModuleRef::path, as given.
  uint64_t address = 0;  // The runtime address that was asked for.
  bool inlined = false;  // True if this frame was inlined into the next one.
  // The address within `module`'s file (runtime address - load bias): the
  // same in every process that loaded it, whatever ASLR did. Set by the
  // analyzer; 0 when the module is unknown.
  uint64_t offset = 0;
  // The program's own code, not a library's or a runtime's (app_frames.h).
  // Set by the analyzer.
  bool in_app = false;
  // "" for machine code; "python" for a Python frame (function is its
  // qualified name, file its co_filename, module empty); "js" for a
  // JavaScript one (from a perf map, where line is the function's first,
  // or named by the Node.js agent; module empty).
  std::string language = "";
};

// Identifies one loaded object in the traced process.
struct ModuleRef {
  std::string path;        // File on disk.
  std::string build_id;    // Raw bytes of the GNU build-id; may be empty.
  uint64_t load_bias = 0;  // dlpi_addr: runtime address - ELF virtual address.
};

class Symbolizer {
 public:
  Symbolizer();
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // Frames for the runtime `address` inside `module`. `address` must already
  // point into the call instruction (return address minus 1), otherwise the
  // line after the call may be reported.
  //
  // Returns the innermost inlined frame first, then its callers, ending with
  // the real (out-of-line) function: always at least one frame. Never fails: if
  // the file cannot be used (missing, unreadable, not ELF) or its build-id
  // differs from module.build_id (when both are known), the result is a single
  // frame with only `module` and `address` set, and warnings() says why.
  //
  // Results are cached per module path and address; a file that changes on
  // disk while the Symbolizer lives is not noticed.
  std::vector<Frame> Resolve(const ModuleRef& module, uint64_t address);

  // Human-readable problems met so far, each reported once, in order; then,
  // once each, the modules none of whose frames could be named so far (a
  // stripped binary with no debug file), with what would name them. A module
  // that named some frames (libc by its exported symbols) is not one.
  const std::vector<std::string>& warnings();

 private:
  struct Module;  // One opened object file; defined in symbolizer.cc.

  // Returns null (after warning) if `path` cannot be symbolized. Failures are
  // cached too, so a missing file costs one open() attempt.
  Module* GetModule(const std::string& path);
  void Warn(std::string message);
  // What would name the frames of a module none of whose frames has a name.
  static std::string UnnamedWarning(const Module& m, const std::string& path);

  absl::flat_hash_map<std::string, std::unique_ptr<Module>> modules_;
  std::vector<std::string> warnings_;
  std::vector<std::string> all_warnings_;  // warnings_ and the unnamed modules
  absl::flat_hash_set<std::string> warned_;
};

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_SYMBOLIZER_H_
