// Registration with the collector.
//
// Register() connects to the collector's Unix socket, sends one HelloMsg with
// the ring's memfd attached (SCM_RIGHTS) and closes the connection again: from
// then on everything travels through shared memory, and the shim holds no fd
// the program could trip over. The socket is non-blocking; a collector that is
// absent, full or slow makes Register() fail at once, never wait.
//
// Where the socket is: $CLOSEAUDIT_SOCKET when set (closeaudit run sets it),
// otherwise the per-user default DefaultSocketPath(), where a detached
// `closeaudit daemon` is started on first use.
#ifndef CLOSEAUDIT_SHIM_TRANSPORT_H_
#define CLOSEAUDIT_SHIM_TRANSPORT_H_

#include <cstdint>

#include "shim/ring_writer.h"

namespace closeaudit::shim {

// Reads who this process is (exe, argv) and where the collector is. Called
// when the image starts its ring (its first socket); later calls do nothing.
// Uses the heap-free parts of libc only, like everything else in the shim.
void InitTransport();

const char* ExePath();

// Sends the hello. `flags` are wire::HelloFlags. Returns false if no
// collector took it.
bool Register(RingWriter& ring, uint32_t flags);

// For the literal `LD_PRELOAD=libcloseaudit.so ./server` form: if no
// collector answers on the default socket, start `closeaudit daemon` there.
// Never waits for something that cannot come: the daemon's first process
// says at once whether it listens; a failure is remembered for a minute in
// the runtime directory, so that the processes after this one neither try
// again nor repeat the one line this one prints. Does nothing when
// $CLOSEAUDIT_SOCKET is set.
void EnsureDefaultCollector();

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_TRANSPORT_H_
