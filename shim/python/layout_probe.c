/* Prints one CPython version's struct layout as a row of the shim's table
 * (shim/python/layouts.inc). Compiled by scripts/python-layouts against that
 * version's own headers (internal ones included), never into the library:
 *
 *   cc -DPy_BUILD_CORE -I INCLUDE -I INCLUDE/internal layout_probe.c
 *
 * Every offset is the compiler's, from the structs the interpreter was built
 * with; nothing here is typed in by hand.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>

#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#endif
#if PY_VERSION_HEX >= 0x03080000 && PY_VERSION_HEX < 0x03090000
#include "internal/pycore_pystate.h"
#else
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#endif
#if PY_VERSION_HEX < 0x030B0000
#include "frameobject.h"
#endif

#define NONE 0xffff
#if PY_VERSION_HEX < 0x03090000
#define RUNTIME_FINALIZING offsetof(_PyRuntimeState, finalizing)
#else
#define RUNTIME_FINALIZING offsetof(_PyRuntimeState, _finalizing)
#endif

int main(void) {
  unsigned minor = PY_MINOR_VERSION;
  unsigned ts_frame, cframe_current = NONE;
  unsigned fr_back, fr_code, fr_instr, fr_owner = NONE;
  unsigned instr_kind, owner_kind;
  unsigned co_qualname = NONE, co_table, co_code = NONE;
  unsigned owner_cstack = 0;
#if PY_VERSION_HEX < 0x030B0000
  ts_frame = offsetof(PyThreadState, frame);
  fr_back = offsetof(PyFrameObject, f_back);
  fr_code = offsetof(PyFrameObject, f_code);
  fr_instr = offsetof(PyFrameObject, f_lasti);
#if PY_VERSION_HEX < 0x030A0000
  instr_kind = 0; /* int f_lasti, in bytes */
  co_table = offsetof(PyCodeObject, co_lnotab);
#else
  instr_kind = 1; /* int f_lasti, in code units */
  co_table = offsetof(PyCodeObject, co_linetable);
#endif
  owner_kind = 0; /* every frame is one evaluation-loop call */
#else
#if PY_VERSION_HEX < 0x030D0000
  ts_frame = offsetof(PyThreadState, cframe);
  cframe_current = offsetof(_PyCFrame, current_frame);
  fr_code = offsetof(_PyInterpreterFrame, f_code);
  fr_instr = offsetof(_PyInterpreterFrame, prev_instr);
  instr_kind = 2; /* pointer to the instruction */
#else
  ts_frame = offsetof(PyThreadState, current_frame);
  fr_code = offsetof(_PyInterpreterFrame, f_executable);
  fr_instr = offsetof(_PyInterpreterFrame, instr_ptr);
  instr_kind = 2;
#endif
  fr_back = offsetof(_PyInterpreterFrame, previous);
#if PY_VERSION_HEX < 0x030C0000
  fr_owner = offsetof(_PyInterpreterFrame, is_entry);
  owner_kind = 1; /* is_entry: the outermost frame of one loop call */
#else
  fr_owner = offsetof(_PyInterpreterFrame, owner);
  owner_kind = 2; /* owner: FRAME_OWNED_BY_CSTACK frames separate calls */
  owner_cstack = FRAME_OWNED_BY_CSTACK;
#endif
  co_qualname = offsetof(PyCodeObject, co_qualname);
  co_table = offsetof(PyCodeObject, co_linetable);
  co_code = offsetof(PyCodeObject, co_code_adaptive);
#endif
  printf("    {%u, %zu, %zu, %u, %u, %zu, %zu, "
         "%u, %u, %u, %u, %u, %u, %u, "
         "%zu, %zu, %zu, %u, %u, %u, "
         "%zu, %zu, %zu, %zu, %zu, %zu, %zu},  // 3.%u\n",
         minor, offsetof(PyThreadState, interp),
         offsetof(PyThreadState, thread_id), ts_frame, cframe_current,
         offsetof(PyInterpreterState, next),
         RUNTIME_FINALIZING,
         fr_back, fr_code, fr_instr, instr_kind, fr_owner, owner_kind,
         owner_cstack,
         offsetof(PyCodeObject, co_firstlineno),
         offsetof(PyCodeObject, co_filename), offsetof(PyCodeObject, co_name),
         co_qualname, co_table, co_code,
         offsetof(PyASCIIObject, length), offsetof(PyASCIIObject, state),
         sizeof(PyASCIIObject),
         sizeof(PyCompactUnicodeObject), offsetof(PyVarObject, ob_size),
         offsetof(PyBytesObject, ob_sval), sizeof(PyObject), minor);
  return 0;
}
