// The one definition of what libcloseaudit.so tells the collector.
//
// A traced process talks to the collector in two ways:
//   1. Once, over a Unix stream socket: a HelloMsg that carries the protocol
//      version, who the process is, and (as SCM_RIGHTS) a memfd.
//   2. Continuously, through that memfd: a shared-memory ring of fixed-size
//      event slots plus an append-only arena of variable-size blobs (stacks,
//      module maps). Writing an event costs a few atomic operations and no
//      system call, and whatever was committed before the process died is
//      still readable by the collector afterwards.
//
// docs/wire-format.md is the prose specification of this header; keep both in
// step and bump kWireVersion on any incompatible change.
//
// Everything here is plain data: no constructors, no pointers, fixed widths,
// little-endian (the only byte order the shim runs on). The collector treats
// every byte as hostile: it copies a record out of shared memory before it
// looks at it, and checks every size, count and offset against its own copy of
// the layout (never the one in shared memory).
#ifndef CLOSEAUDIT_COMMON_WIRE_H_
#define CLOSEAUDIT_COMMON_WIRE_H_

#include <stddef.h>
#include <stdint.h>

namespace closeaudit::wire {

inline constexpr uint32_t kHelloMagic = 0x44554143;  // "CAUD"
inline constexpr uint32_t kRingMagic = 0x474e4952;   // "RING"
inline constexpr uint16_t kWireVersion = 1;

// Upper bounds the collector enforces on whatever a peer claims.
inline constexpr uint32_t kMaxHelloBytes = 64 * 1024;
inline constexpr uint32_t kMaxFrames = 64;  // 32 before 0.2.0
inline constexpr uint32_t kMaxRingSlots = 1u << 20;
inline constexpr uint64_t kMaxArenaBytes = 64ull << 20;
inline constexpr uint32_t kMaxPathBytes = 4096;
inline constexpr uint32_t kMaxBuildIdBytes = 64;

// ---------------------------------------------------------------------------
// Handshake: shim -> collector, once per process image (and again after fork
// in the child, and after exec in the new image).
// Layout on the socket: HelloMsg, then exe_len bytes of executable path, then
// argv_len bytes of NUL-terminated argv strings. The memfd travels as
// SCM_RIGHTS ancillary data with the first byte.
enum HelloFlags : uint32_t {
  kHelloForked = 1u << 0,     // this image started as a fork child
  kHelloAfterExec = 1u << 1,  // this image was entered through exec
  kHelloReconnect = 1u << 2,  // the ring was already in use before
};

struct HelloMsg {
  uint32_t magic;          // kHelloMagic
  uint16_t version;        // kWireVersion
  uint16_t hello_size;     // sizeof(HelloMsg) as the shim knows it
  uint32_t pid;
  uint32_t ppid;
  uint32_t flags;          // HelloFlags
  uint32_t exe_len;        // bytes of path after the struct
  uint32_t argv_len;       // bytes of argv after the path
  // The library's version, major << 16 | minor << 8 | patch; 0 from
  // libraries older than the field (it was reserved, always 0).
  uint32_t lib_version;
  uint64_t start_mono_ns;  // CLOCK_MONOTONIC when the image started
  uint64_t start_real_ns;  // CLOCK_REALTIME at the same moment
  uint64_t ring_bytes;     // size of the memfd
};
static_assert(sizeof(HelloMsg) == 56);

// ---------------------------------------------------------------------------
// The shared ring. The memfd holds, in order:
//   RingHeader (one page), slot_count Slots, arena_bytes of arena.
// Producers are the traced process's threads; the consumer is the collector.
// The slot protocol is a bounded multi-producer queue: slot i of lap L is free
// for position p = L * slot_count + i when seq == p, and holds a committed
// event when seq == p + 1. A full ring drops the event and counts it; it never
// waits.
inline constexpr uint32_t kRingHeaderBytes = 4096;

struct RingHeader {
  uint32_t magic;        // kRingMagic
  uint16_t version;      // kWireVersion
  uint16_t slot_bytes;   // sizeof(Slot)
  uint32_t slot_count;   // a power of two
  uint32_t reserved0;
  uint64_t arena_offset;  // from the start of the memfd
  uint64_t arena_bytes;
  uint8_t pad0[64 - 32];
  // Producers' next position (a sequence number: it counts committed and
  // torn events, never dropped ones).
  alignas(64) uint64_t write_pos;
  alignas(64) uint64_t read_pos;  // consumer's next position
  alignas(64) uint64_t dropped_events;  // ring was full
  uint64_t dropped_blobs;               // arena was full (stacks lost)
  uint64_t arena_used;                  // bump pointer into the arena
  uint64_t consumer_heartbeat_ns;       // CLOCK_MONOTONIC, set by collector
};
static_assert(sizeof(RingHeader) <= kRingHeaderBytes);
static_assert(offsetof(RingHeader, write_pos) == 64);

enum class EventType : uint8_t {
  kNone = 0,
  kSocket = 1,      // socket()/socketpair(): fd, ident, aux = domain<<16|type
  kAccept = 2,      // accept/accept4: fd, ident, arg = listening fd
  kConnect = 3,     // connect() succeeded or is in progress: fd, ident
  kEofSeen = 4,     // a read returned 0 on a stream socket: stack, arg = last_use ip
  kShutdown = 5,    // shutdown(): aux = how | kShutdownBeforeClose, err = errno or 0
  kClose = 6,       // close of a tracked fd: stack, err = errno or 0
  kCloseUntracked = 7,  // close() failed with EBADF on an fd we don't know
  kDup = 8,         // fd = new fd, arg = old fd, ident of the socket
  kLinger = 9,      // setsockopt(SO_LINGER): aux = l_onoff<<16 | l_linger
  kFork = 10,       // arg = child pid, stack, aux = ForkKind
  kInherited = 11,  // aux: 0 found at start, 1 carried over a fork, 2 received (SCM_RIGHTS),
                    // 3 resync; | kInheritedListenFd
  kAddress = 12,    // the payload is an AddressEvent
  kModule = 13,     // blob = ModuleBlob
  kExec = 14,       // about to exec (fork child, not vfork); stack
  kListen = 15,     // listen() succeeded
  kHandler = 16,    // an event library took the fd: stack, aux = HandlerKind | flags,
                    // arg = the callback's address (0: none)
  kRuntime = 17,    // what the library made of an interpreter in the image:
                    // aux = PyStatus, arg = its version (PyVersion); fd -1
};

// kShutdown's aux above `how`: a runtime's own shutdown(SHUT_WR) on its way
// to closing the socket in the same call (the JDK's Socket.close()), sent
// without a stack: the close that ends the process's hold has the frames.
inline constexpr uint32_t kShutdownBeforeClose = 1u << 8;

// kRuntime's aux for CPython: whether stacks carry Python frames, or why not.
enum class PyStatus : uint32_t {
  kWalked = 1,          // a known layout, checked: stacks carry Python frames
  kUnknownVersion = 2,  // a minor version this library has no layout for
  kDebugBuild = 3,      // a debug build (Py_DEBUG): another object layout
  kFreeThreaded = 4,    // a free-threaded build (no GIL): another layout
  kLayoutMismatch = 5,  // the runtime's own _Py_DebugOffsets disagree
  kInvalid = 6,         // a walk found the layout wrong: walks stopped
};
// kRuntime's arg: major << 16 | minor << 8 | micro.
inline constexpr uint64_t PyVersion(int major, int minor, int micro) {
  return uint64_t(major) << 16 | uint64_t(minor) << 8 | uint64_t(micro);
}

// kHandler's aux: what the program asked of which library in the low byte,
// and above it what the library was told (kHandlerCloseOnFree).
enum class HandlerKind : uint32_t {
  kBufferevent = 1,      // bufferevent_socket_new(): arg 0
  kBuffereventCb = 2,    // bufferevent_setcb(): arg = the event callback (or
                         // the read callback, without one)
  kEvent = 3,            // event_new() / event_assign(): arg = the callback
  kBuffereventFree = 4,  // bufferevent_free(): arg 0
  kUvRead = 5,           // uv_read_start(): arg = the read callback
  kPython = 6,           // a Python event loop's handler for the connection
                         // (closeaudit_python_handler()): the stack is its
                         // definition, one Python frame; arg 0
  kNode = 7,             // what Node.js's side of the library saw of the
                         // connection (closeaudit_js_handler()): aux's role
                         // below; the stack is JavaScript frames; arg 0
};
inline constexpr uint32_t kHandlerKindMask = 0xff;
// The bufferevent closes its fd when freed (BEV_OPT_CLOSE_ON_FREE).
inline constexpr uint32_t kHandlerCloseOnFree = 1u << 8;
// kPython: the handler is an asyncio streams callback (start_server's
// client_connected_cb), not a Protocol's method.
inline constexpr uint32_t kHandlerPyStreams = 1u << 9;
// kNode: which JavaScript code the stack names, in bits 8-11 (NodeRole),
// and what Node.js was told about the socket above them.
enum class NodeRole : uint32_t {
  kServer = 1,   // the listeners of the server that accepted it ('connection',
                 // 'request', 'upgrade'): where each was added
  kEnd = 2,      // where an 'end' listener was added to the socket
  kClose = 3,    // where a 'close' listener was added to the socket
  kClient = 4,   // where the program opened it (net.connect, http.request)
  kUpgrade = 5,  // the 'upgrade' listener that was handed the socket
};
inline constexpr uint32_t kHandlerNodeRoleShift = 8;
inline constexpr uint32_t kHandlerNodeRoleMask = 0xfu << kHandlerNodeRoleShift;
// The socket had allowHalfOpen set: Node.js leaves ending it to the program.
inline constexpr uint32_t kHandlerNodeHalfOpen = 1u << 12;
// The server is an http(s) server, which ends its sockets itself (but not
// those it hands to an 'upgrade' listener).
inline constexpr uint32_t kHandlerNodeHttp = 1u << 13;
inline constexpr uint32_t kHandlerNodeFlags =
    kHandlerNodeRoleMask | kHandlerNodeHalfOpen | kHandlerNodeHttp;
// kRuntime's aux for Node.js, beside PyStatus's values: the agent runs in
// the image (arg = Node.js's version, major << 16 | minor << 8 | patch),
// with kRuntimeNodeOwnPerfMap when V8 writes its perf map only because
// closeaudit asked: the collector removes the map when the process ends.
inline constexpr uint32_t kRuntimeNodeAgent = 16;
inline constexpr uint32_t kRuntimeKindMask = 0xff;
inline constexpr uint32_t kRuntimeNodeOwnPerfMap = 1u << 8;

inline constexpr uint32_t NodeRoleOf(uint32_t aux) {
  return (aux & kHandlerNodeRoleMask) >> kHandlerNodeRoleShift;
}

// kInherited's aux: where the socket came from in the low byte, and above
// it this flag: a socket found at start (0) that a service manager handed
// over on purpose, one of fds 3 .. 3 + $LISTEN_FDS - 1 with $LISTEN_PID
// unset or this pid (sd_listen_fds(3)). Collectors that do not know the flag
// take such a socket as found at start.
inline constexpr uint32_t kInheritedFromMask = 0xff;
inline constexpr uint32_t kInheritedListenFd = 1u << 8;

enum class ForkKind : uint32_t {
  kFork = 0,
  kVfork = 1,
  kSpawn = 2,   // posix_spawn / posix_spawnp
  kClone = 3,   // clone() without CLONE_VM
  kDaemon = 4,  // daemon(): sent by the child, the parent is gone
  kUnderscoreFork = 5,  // _Fork()
};

// Event::state: what the shim knew about the fd when the event happened.
enum EventState : uint16_t {
  kStateStream = 1u << 0,
  kStateInet = 1u << 1,
  kStateConnected = 1u << 2,
  kStateEofSeen = 1u << 3,
  kStateListening = 1u << 4,
  kStateCloexec = 1u << 5,
  kStateLinger0 = 1u << 6,   // SO_LINGER {1, 0}: close sends RST
  kStateShutWr = 1u << 7,
  kStateUsed = 1u << 8,      // a read through this fd returned data
  kStateAddressSent = 1u << 9,  // a kAddress event for it is in the ring
};

enum EventFlags : uint8_t {
  kFlagStream = 1u << 0,   // SOCK_STREAM
  kFlagCloexec = 1u << 1,  // created with O_CLOEXEC / SOCK_CLOEXEC
  kFlagInet = 1u << 2,     // AF_INET or AF_INET6
};

// Socket identity. The kernel's cookie is unique for the life of the boot;
// the sockfs inode is what /proc/PID/fd shows. Either may be 0 if unknown.
struct SocketIdent {
  uint64_t cookie;
  uint64_t inode;
};

// 56 bytes of payload; with the slot's sequence word a slot is one cache line.
struct Event {
  EventType type;
  uint8_t flags;      // EventFlags
  uint16_t state;     // EventState
  int32_t fd;
  uint32_t tid;
  int32_t err;        // errno of the call, or 0
  uint64_t mono_ns;   // CLOCK_MONOTONIC
  SocketIdent ident;
  uint32_t blob;      // arena offset of a stack or module blob; 0 = none
  uint32_t aux;
  uint64_t arg;       // kClose: 1 + bytes still queued (SIOCOUTQ) for linger-0 sockets
};
static_assert(sizeof(Event) == 56);

// kAddress reuses the slot for the two endpoints of a connected socket.
struct AddressEvent {
  EventType type;     // kAddress
  uint8_t family;     // 4 or 6
  uint16_t local_port;  // host byte order
  int32_t fd;
  uint16_t peer_port;   // host byte order
  uint8_t pad[6];
  uint64_t cookie;
  uint8_t local_addr[16];  // IPv4 in the first 4 bytes
  uint8_t peer_addr[16];
};
static_assert(sizeof(AddressEvent) == 56);

struct Slot {
  uint64_t seq;
  Event event;
};
static_assert(sizeof(Slot) == 64);

// ---------------------------------------------------------------------------
// Arena blobs. Each starts on an 8-byte boundary with a BlobHeader; offset 0
// of the arena is never a blob, so 0 means "none". A blob is written fully
// before any event that refers to it is committed.
enum class BlobKind : uint16_t {
  kStack = 1,
  kModule = 2,
  kPyCode = 3,
};

struct BlobHeader {
  BlobKind kind;
  uint16_t reserved;
  uint32_t bytes;  // total, header included
};
static_assert(sizeof(BlobHeader) == 8);

// Return addresses, innermost first, each already reduced by one so that it
// points into the call instruction; then, in a CPython process, the calling
// thread's Python frames (PyFrame), innermost first.
struct StackBlob {
  BlobHeader header;
  uint32_t frame_count;     // <= kMaxFrames
  uint32_t py_frame_count;  // <= kMaxPyFrames; 0 before 0.3.0
  uint64_t frames[];        // frame_count entries, then the Python frames
};

// One Python frame: the code object (an arena offset of its PyCodeBlob) and
// the byte offset in its bytecode of the instruction it is executing.
inline constexpr uint32_t kMaxPyFrames = 128;
struct PyFrame {
  uint32_t code;
  // The byte offset, and kPyFrameCallEnd on the outermost frame of one call
  // of the interpreter's evaluation loop (_PyEval_EvalFrameDefault): the
  // frames up to it are the ones that native frame was running.
  uint32_t where;
};
static_assert(sizeof(PyFrame) == 8);
inline constexpr uint32_t kPyFrameCallEnd = 1u << 31;
inline constexpr uint32_t kPyFrameOffsetMask = kPyFrameCallEnd - 1;

// A code object, copied out once per process: its qualified name (3.11+;
// the plain name before) and file as UTF-8, and its line table's bytes
// (co_lnotab for 3.8 and 3.9, co_linetable after), as the interpreter keeps
// them; collector/python_lines.h decodes them.
struct PyCodeBlob {
  BlobHeader header;
  uint16_t minor;       // 3.minor; 0: a definition (a handler's), whose
                        // line is firstlineno and which has no table
  uint16_t language;    // of a definition (CodeLanguage); 0 otherwise
  int32_t firstlineno;
  uint32_t name_len;    // bytes, <= kMaxPyNameBytes
  uint32_t file_len;    // bytes, <= kMaxPathBytes
  uint32_t table_len;   // bytes, <= kMaxPyTableBytes
  uint32_t reserved2;
  // name_len bytes of name, file_len of file, table_len of table.
};
static_assert(sizeof(PyCodeBlob) == 32);
inline constexpr uint32_t kMaxPyNameBytes = 1024;
// PyCodeBlob::language. A collector that does not know a language reads its
// frames as Python definitions.
enum class CodeLanguage : uint16_t { kPython = 0, kJavaScript = 1, kJava = 2 };
// The most JavaScript frames one closeaudit_js_handler() call names.
inline constexpr uint32_t kMaxJsFrames = 16;
inline constexpr uint32_t kMaxPyTableBytes = 1u << 15;  // longer: cut

struct ModuleBlob {
  BlobHeader header;
  uint64_t load_bias;    // dlpi_addr
  uint64_t start;        // lowest address of its PT_LOAD segments
  uint64_t end;          // one past the highest
  uint16_t path_len;     // bytes, no NUL
  uint16_t build_id_len;
  uint32_t reserved;
  // path_len bytes of path, then build_id_len bytes of GNU build-id.
};
static_assert(sizeof(ModuleBlob) == 40);

inline constexpr uint32_t AlignBlob(uint32_t n) { return (n + 7u) & ~7u; }

}  // namespace closeaudit::wire

#endif  // CLOSEAUDIT_COMMON_WIRE_H_
