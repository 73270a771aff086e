// The calling thread's Java frames, for the stacks of a JVM.
//
// HotSpot's interpreted and compiled frames are bare addresses to a native
// unwinder. When the image runs a JVM, a stack taken in a call that the
// JDK's own native code made (libnio, libnet, libjava: the JNI methods
// behind Socket, ServerSocket, SocketChannel and the HTTP clients above
// them) also records the thread's Java frames, read by HotSpot's
// AsyncGetCallTrace (or, where it cannot answer, JVMTI's GetStackTrace).
// Each distinct frame (method and bytecode index) is
// named once per process, as a definition (wire::PyCodeBlob, minor 0,
// CodeLanguage::kJava): "package.Class.method", "package/path/File.java"
// and the line the index is on. The collector puts the frames where the
// JVM's code ran them (docs/java.md).
//
// How it stays out of the JVM's way:
// - No agent option, no JAVA_TOOL_OPTIONS (the JVM would print that it
//   picked them up): the JVM the process created is found with
//   JNI_GetCreatedJavaVMs, and a JVMTI environment of our own is made in
//   its live phase, with only the two capabilities every JVM grants then
//   at no cost (line numbers, source file names). No breakpoint, no
//   signal handler; one event, ClassLoad, taken (and ignored) on one JVM
//   thread that loads no classes, because AsyncGetCallTrace answers only
//   while some environment takes it.
// - The JVM is asked only from a thread it runs Java on, inside a JNI
//   method of the JDK (the call's first frame is in one of the libraries
//   above): the thread is in native state, where JVMTI may be called and
//   where AsyncGetCallTrace reads the thread's own recorded frames. A JVMTI
//   call may wait for a safepoint to end; the shim holds no lock of its own
//   while it does.
// - A frame's names are asked once and kept in a table of fixed size;
//   later stacks with that frame cost a look-up.
#ifndef CLOSEAUDIT_SHIM_JAVA_FRAMES_H_
#define CLOSEAUDIT_SHIM_JAVA_FRAMES_H_

#include <cstdint>

#include "common/wire.h"
#include "shim/ring_writer.h"

namespace closeaudit::shim::java {

// Looks for a JVM in the image (dlsym; takes the loader's lock, so only
// where modules are sent). Safe to call again: it decides once it found
// one.
void Detect();

// Whether stacks may carry Java frames at all (one relaxed load).
bool Active();

// The most Java frames a stack keeps (the innermost).
inline constexpr int kMaxJavaFrames = 64;

// The calling thread's Java frames, innermost first (at most `max`), if
// the call came from a JNI library of the JDK: the first of `callers` (the
// stack's program frames, `count` of them), or one of the two after it
// when libraries preloaded ahead of this one passed the call on. Each
// frame's definition is copied into `ring`'s arena once. Returns their
// count: 0 if none, or if the thread runs no Java.
//
// With `closing`, also tells whether the call is a shutdown() the JDK makes
// on its way to closing the socket: Socket.close() shuts the output first
// (its second frame is sun.nio.ch.NioSocketImpl.close), and its hold on the
// socket then ends in the same call, from the same Java frames.
int Walk(RingWriter& ring, const uint64_t* callers, int count,
         wire::PyFrame* out, int max, bool* closing = nullptr);

// In a fork child: a copy of a JVM without its threads is never asked
// anything (it could wait forever on a lock a thread of the parent held).
void ForkChild();

// Forgets the frames named so far (the ring they went to is being
// replaced, as in a fork child). Allocation-free.
void ResetFrames();

}  // namespace closeaudit::shim::java

#endif  // CLOSEAUDIT_SHIM_JAVA_FRAMES_H_
