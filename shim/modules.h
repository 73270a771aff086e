// Module maps for out-of-process symbolization.
//
// SendModules() writes a ModuleBlob (path, load bias, address range, GNU
// build-id) for every loaded ELF object not yet sent to this ring, and pushes
// a kModule event for each. It runs when an image starts its ring (at its
// first socket) and (as ResendModules) in a fork child; it walks
// dl_iterate_phdr, which takes the loader's lock, so it is never called from
// close or read paths.
#ifndef CLOSEAUDIT_SHIM_MODULES_H_
#define CLOSEAUDIT_SHIM_MODULES_H_

#include <link.h>

#include <cstdint>

#include "shim/ring_writer.h"

namespace closeaudit::shim {

// Remembers the main executable's path (dl_iterate_phdr names it "").
void InitModules(const char* exe_path);

void SendModules(RingWriter& ring);

// The address range [*lo, *hi) of all of a loaded object's segments.
void ModuleRange(const dl_phdr_info* info, uintptr_t* lo, uintptr_t* hi);

// Writes every module known so far to a new ring, without the loader's lock
// (a fork child cannot trust that lock: another thread may have held it).
void ResendModules(RingWriter& ring);

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_MODULES_H_
