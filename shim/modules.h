// Module maps for out-of-process symbolization.
//
// SendModules() writes a ModuleBlob (path, load bias, address range, GNU
// build-id) for every loaded ELF object not yet sent to this ring, and pushes
// a kModule event for each. It runs at start and (as ResendModules) in a fork
// child; it walks dl_iterate_phdr, which takes the loader's lock, so it is
// never called from a signal handler or from close/read paths.
#ifndef CLOSEAUDIT_SHIM_MODULES_H_
#define CLOSEAUDIT_SHIM_MODULES_H_

#include "shim/ring_writer.h"

namespace closeaudit::shim {

// Remembers the main executable's path (dl_iterate_phdr names it "").
void InitModules(const char* exe_path);

void SendModules(RingWriter& ring);

// Writes every module known so far to a new ring, without the loader's lock
// (a fork child cannot trust that lock: another thread may have held it).
void ResendModules(RingWriter& ring);

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_MODULES_H_
