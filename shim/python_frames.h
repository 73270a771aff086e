// The calling thread's Python frames, for the stacks of a CPython process.
//
// When the image is a CPython 3.8-3.13 interpreter (or embeds one), every
// stack the shim takes also records the Python frames of the calling thread:
// per frame, the code object and the instruction it is at. A code object's
// name, file and line table are copied into the arena once (a PyCodeBlob);
// the collector turns the instruction into a line and puts the frames where
// the interpreter's evaluation loop ran them (docs/wire-format.md).
//
// How the walk stays safe (docs/python.md says it for users):
// - Layouts come from each version's own headers (shim/python/layouts.inc,
//   written by scripts/python-layouts) and are used only for that exact
//   minor version of a release build; 3.13's are also checked against the
//   _Py_DebugOffsets the interpreter carries. Debug and free-threaded
//   builds, and versions without a layout, are not walked.
// - Nothing calls into the interpreter but PyGILState_GetThisThreadState()
//   and PyInterpreterState_Head(), which read a thread-local and a global.
//   No GIL is taken; the walk reads only the calling thread's own frames,
//   which cannot change while that thread is inside the shim. Python
//   releases the GIL around recv() and accept(); that does not matter.
// - Every page a read touches is first proven readable by a system call that
//   cannot fault (UnwinderPipeWrite in stacks.h), once per page per walk.
// - Each object is checked before use: a frame's code object must have
//   PyCode_Type, names must be compact str, tables bytes; depth is bounded.
//   The first failed check stops walks in the process for good, and the
//   report says so.
// - No walk while the interpreter is finalizing (its thread states are being
//   freed), or while more than one interpreter exists (a subinterpreter's
//   thread would show the main interpreter's frames): those stacks are left
//   native.
#ifndef CLOSEAUDIT_SHIM_PYTHON_FRAMES_H_
#define CLOSEAUDIT_SHIM_PYTHON_FRAMES_H_

#include <cstdint>

#include "common/wire.h"
#include "shim/ring_writer.h"

namespace closeaudit::shim::python {

// Looks for a CPython runtime in the image (dlsym; takes the loader's lock,
// so only where modules are sent). Safe to call again: it decides once.
void Detect();

// Whether stacks should carry Python frames at all (one relaxed load).
bool Active();

// What Detect() (or a walk since) made of the image's interpreter, for a
// kRuntime event: false if it found none.
bool Status(uint32_t* status, uint64_t* version);

// Writes the calling thread's Python frames, innermost first, into out
// (at most `max`), copying code objects not yet in `ring`'s arena; returns
// their count (0: none, or not walkable). Async-signal-safe, no allocation.
// A walk that finds the layout wrong pushes a kRuntime event saying so.
int Walk(RingWriter& ring, wire::PyFrame* out, int max);

// A PyCodeBlob (minor 0) for a function's definition, named by the
// program's Python-side helper (or, in `language`, its JavaScript agent):
// its qualified name, file and first line. Strings are cut to what a
// PyCodeBlob holds. 0 if the arena is full.
uint32_t DefinitionBlob(RingWriter& ring, const char* name, const char* file,
                        int line,
                        wire::CodeLanguage language = wire::CodeLanguage::kPython);

// Forgets the code objects copied so far (the ring they went to is being
// replaced, as in a fork child). Allocation-free.
void ResetCodes();

namespace internal {
// For tests: what a 3.14 _Py_DebugOffsets at `offsets` gives; false if the
// walk would not use it (another version, a free-threaded build, an offset
// outside its struct).
struct Offsets314 {
  uint16_t ts_frame, ts_thread_id, fr_back, fr_code, fr_owner, co_qualname,
      co_code, str_compact_data, object_size, code_tag_bits;
};
bool Read314(const void* offsets, Offsets314* out, bool* free_threaded);
}  // namespace internal

}  // namespace closeaudit::shim::python

#endif  // CLOSEAUDIT_SHIM_PYTHON_FRAMES_H_
