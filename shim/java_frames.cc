#include "shim/java_frames.h"

#include <dlfcn.h>
#include <ucontext.h>

#include <atomic>
#include <cstring>

#include "shim/layout.h"
#include "shim/python_frames.h"

#if __has_include(<jvmti.h>)
#include <jni.h>
#include <jvmti.h>
#define CLOSEAUDIT_HAVE_JVMTI 1
#else
#define CLOSEAUDIT_HAVE_JVMTI 0
#endif

namespace closeaudit::shim::java {

#if CLOSEAUDIT_HAVE_JVMTI
namespace {

using CreatedVms = jint(JNICALL*)(JavaVM**, jsize, jsize*);

// HotSpot's AsyncGetCallTrace (the profilers' walk, exported by libjvm):
// the calling thread's frames, read off its own stack without leaving
// native state, allocating, or waiting for a safepoint. A frame's bci is
// -3 for a native method; its method is null if the method has no
// jmethodID yet. A count below 0 says why it gave none.
struct AsyncFrame {
  jint bci;
  jmethodID method;
};
struct AsyncTrace {
  JNIEnv* env;
  jint count;
  AsyncFrame* frames;
};
using AsyncWalk = void (*)(AsyncTrace*, jint, void*);

std::atomic<bool> g_possible{false};  // the image may run a JVM
std::atomic<CreatedVms> g_created{nullptr};  // libjvm's JNI_GetCreatedJavaVMs
std::atomic<AsyncWalk> g_async_found{nullptr};  // libjvm's, if it has one
std::atomic<AsyncWalk> g_async{nullptr};  // once our env made it answer
std::atomic<JavaVM*> g_vm{nullptr};
std::atomic<jvmtiEnv*> g_jvmti{nullptr};
// The JVM gave no JVMTI environment, or this is a fork child of a JVM.
std::atomic<bool> g_failed{false};
std::atomic<uint32_t> g_epoch{1};   // of the ring the definitions went to

constexpr int kMaxPassedThrough = 2;  // interposers between the JDK and us

// Return addresses known to be in a JNI library of the JDK (ip << 1 | 1)
// or not (ip << 1).
constexpr uint32_t kCallerSlots = 1024;
CA_BULK std::atomic<uint64_t> g_callers[kCallerSlots];

bool IsJdkNativeLibrary(const char* path) {
  const char* base = std::strrchr(path, '/');
  base = base != nullptr ? base + 1 : path;
  for (const char* lib : {"libnio.so", "libnet.so", "libjava.so", "libextnet.so"}) {
    if (std::strcmp(base, lib) == 0) return true;
  }
  return false;
}

// Whether the call was made by the JDK's native code, on behalf of a Java
// method: the thread then runs Java and is in native state. dladdr takes
// the loader's lock, once per call site.
bool InJdkNative(uint64_t ip) {
  std::atomic<uint64_t>& slot =
      g_callers[(ip * 0x9e3779b97f4a7c15ull) >> 54];
  uint64_t seen = slot.load(std::memory_order_relaxed);
  if (seen != 0 && (seen >> 1) == ip) return (seen & 1) != 0;
  Dl_info info{};
  bool yes = dladdr(reinterpret_cast<void*>(ip), &info) != 0 &&
             info.dli_fname != nullptr && IsJdkNativeLibrary(info.dli_fname);
  slot.store(ip << 1 | (yes ? 1 : 0), std::memory_order_relaxed);
  return yes;
}

void Release(jvmtiEnv* env, void* p) {
  if (p != nullptr) env->Deallocate(static_cast<unsigned char*>(p));
}

void JNICALL ClassLoaded(jvmtiEnv*, JNIEnv*, jthread, jclass) {}

// A thread that lives as long as the JVM and loads no classes: HotSpot's
// reference handler (or its signal dispatcher); null if neither is found.
// A local reference, in the calling JNI method's frame.
jthread LastingThread(jvmtiEnv* env, JNIEnv* jni) {
  jint count = 0;
  jthread* threads = nullptr;
  if (env->GetAllThreads(&count, &threads) != JVMTI_ERROR_NONE) return nullptr;
  jthread found = nullptr;
  for (const char* want : {"Reference Handler", "Signal Dispatcher"}) {
    for (jint i = 0; i < count && found == nullptr; ++i) {
      jvmtiThreadInfo info;
      std::memset(&info, 0, sizeof(info));
      if (env->GetThreadInfo(threads[i], &info) != JVMTI_ERROR_NONE) continue;
      if (info.name != nullptr && std::strcmp(info.name, want) == 0) {
        found = threads[i];
      }
      Release(env, info.name);
      if (info.thread_group != nullptr) jni->DeleteLocalRef(info.thread_group);
      if (info.context_class_loader != nullptr) {
        jni->DeleteLocalRef(info.context_class_loader);
      }
    }
    if (found != nullptr) break;
  }
  for (jint i = 0; i < count; ++i) {
    if (threads[i] != found) jni->DeleteLocalRef(threads[i]);
  }
  Release(env, threads);
  return found;
}

// HotSpot's AsyncGetCallTrace answers only while some environment takes
// ClassLoad events (a profiler makes each new class's jmethodIDs then). Ours
// takes them on one thread that loads no classes, so that no other thread
// pays for it: taken on every thread, they would give each new thread JVMTI
// state to make and free under a global lock, which a server starting a
// thread per connection feels. No capability is needed. Without such a
// thread, or should it end (the JVM then stops answering), stacks are taken
// by GetStackTrace.
void AnswerAsync(jvmtiEnv* env, JNIEnv* jni) {
  AsyncWalk walk = g_async_found.load(std::memory_order_acquire);
  if (walk == nullptr) return;
  jthread quiet = LastingThread(env, jni);
  if (quiet == nullptr) return;
  jvmtiEventCallbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.ClassLoad = ClassLoaded;
  if (env->SetEventCallbacks(&callbacks, sizeof(callbacks)) == JVMTI_ERROR_NONE &&
      env->SetEventNotificationMode(JVMTI_ENABLE, JVMTI_EVENT_CLASS_LOAD,
                                    quiet) == JVMTI_ERROR_NONE) {
    g_async.store(walk, std::memory_order_release);
  }
  jni->DeleteLocalRef(quiet);
}

// Our JVMTI environment, made on first use (from a Java thread in native
// state, which Walk() has checked).
jvmtiEnv* Env(JNIEnv* jni) {
  jvmtiEnv* env = g_jvmti.load(std::memory_order_acquire);
  if (env != nullptr || g_failed.load(std::memory_order_relaxed)) return env;
  JavaVM* vm = g_vm.load(std::memory_order_acquire);
  if (vm == nullptr) return nullptr;
  void* made = nullptr;
  if (vm->GetEnv(&made, JVMTI_VERSION_1_2) != JNI_OK || made == nullptr) {
    g_failed.store(true, std::memory_order_relaxed);
    return nullptr;
  }
  env = static_cast<jvmtiEnv*>(made);
  // Both are granted in the live phase and cost the JVM nothing; without
  // them frames have no line or no file, and are still named.
  jvmtiCapabilities caps;
  std::memset(&caps, 0, sizeof(caps));
  caps.can_get_line_numbers = 1;
  caps.can_get_source_file_name = 1;
  env->AddCapabilities(&caps);
  jvmtiEnv* expected = nullptr;
  if (!g_jvmti.compare_exchange_strong(expected, env,
                                       std::memory_order_acq_rel)) {
    env->DisposeEnvironment();  // another thread made one first
    return expected;
  }
  AnswerAsync(env, jni);
  return env;
}

// The JVM of the process, once it has one.
JavaVM* Vm() {
  JavaVM* vm = g_vm.load(std::memory_order_acquire);
  if (vm != nullptr) return vm;
  CreatedVms created = g_created.load(std::memory_order_acquire);
  if (created == nullptr) return nullptr;
  jsize count = 0;
  if (created(&vm, 1, &count) != JNI_OK || count < 1 || vm == nullptr) {
    return nullptr;
  }
  g_vm.store(vm, std::memory_order_release);
  return vm;
}

// Definitions already in the ring, by method and bytecode index. Each
// entry is a seqlock (odd while written); a torn read is a miss, and a
// miss only names the frame again.
struct Named {
  std::atomic<uint32_t> seq;
  std::atomic<uint64_t> method;
  // epoch << 48 | (bytecode index & 0xffff) << 32 | arena offset
  std::atomic<uint64_t> value;
};
constexpr uint32_t kNamedSlots = 4096;
constexpr uint32_t kNamedProbes = 4;
CA_BULK Named g_named[kNamedSlots];

uint32_t SlotOf(uint64_t method, uint64_t index) {
  return static_cast<uint32_t>(
      ((method ^ (index << 48)) * 0x9e3779b97f4a7c15ull) >> 52);
}

uint64_t Key(uint64_t index, uint32_t offset) {
  uint64_t epoch = g_epoch.load(std::memory_order_relaxed) & 0xffff;
  return epoch << 48 | (index & 0xffff) << 32 | offset;
}

uint32_t LookUp(uint64_t method, uint64_t index) {
  uint32_t at = SlotOf(method, index);
  uint64_t want = Key(index, 0);
  for (uint32_t probe = 0; probe < kNamedProbes; ++probe) {
    Named& e = g_named[(at + probe) % kNamedSlots];
    uint32_t seq = e.seq.load(std::memory_order_acquire);
    if ((seq & 1) != 0) continue;
    uint64_t m = e.method.load(std::memory_order_relaxed);
    uint64_t v = e.value.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e.seq.load(std::memory_order_relaxed) != seq) continue;
    if (m == method && (v >> 32) == (want >> 32)) {
      return static_cast<uint32_t>(v);
    }
  }
  return 0;
}

void Remember(uint64_t method, uint64_t index, uint32_t offset) {
  uint32_t at = SlotOf(method, index);
  Named* e = &g_named[at];
  for (uint32_t probe = 0; probe < kNamedProbes; ++probe) {
    Named& c = g_named[(at + probe) % kNamedSlots];
    if (c.method.load(std::memory_order_relaxed) == 0 ||
        (c.value.load(std::memory_order_relaxed) >> 48) !=
            (Key(0, 0) >> 48)) {
      e = &c;
      break;
    }
  }
  uint32_t seq = e->seq.load(std::memory_order_relaxed);
  if ((seq & 1) != 0 ||
      !e->seq.compare_exchange_strong(seq, seq + 1, std::memory_order_acquire)) {
    return;  // another thread is writing it
  }
  std::atomic_thread_fence(std::memory_order_release);
  e->method.store(method, std::memory_order_relaxed);
  e->value.store(Key(index, offset), std::memory_order_relaxed);
  e->seq.store(seq + 2, std::memory_order_release);
}

// "Lcom/example/Foo$Inner;" -> "com.example.Foo$Inner" into name and
// "com/example/" into dir; false if the signature is not a class's.
bool ClassName(const char* sig, char* name, size_t name_cap, char* dir,
               size_t dir_cap) {
  if (sig == nullptr || sig[0] != 'L') return false;
  size_t n = 0, last_slash = 0;
  for (const char* p = sig + 1; *p != '\0' && *p != ';'; ++p) {
    if (n + 1 >= name_cap) return false;
    name[n++] = *p == '/' ? '.' : *p;
    if (*p == '/') last_slash = n;
  }
  name[n] = '\0';
  if (last_slash >= dir_cap) last_slash = 0;
  for (size_t i = 0; i < last_slash; ++i) dir[i] = sig[1 + i];
  dir[last_slash] = '\0';
  return true;
}

// Copies the frame's definition into the ring: "Class.method", the source
// file under its package's directory, and the line of `index`.
// Out of line: its buffers stay off the stack of every other walk.
[[gnu::noinline]] uint32_t Name(RingWriter& ring, jvmtiEnv* env, JNIEnv* jni,
                                jmethodID method, jlocation index) {
  char* method_name = nullptr;
  if (env->GetMethodName(method, &method_name, nullptr, nullptr) !=
      JVMTI_ERROR_NONE) {
    return 0;
  }
  jclass cls = nullptr;
  char* signature = nullptr;
  char* source = nullptr;
  if (env->GetMethodDeclaringClass(method, &cls) == JVMTI_ERROR_NONE &&
      cls != nullptr) {
    env->GetClassSignature(cls, &signature, nullptr);
    env->GetSourceFileName(cls, &source);
  }
  int line = 0;
  jint entries = 0;
  jvmtiLineNumberEntry* table = nullptr;
  if (index >= 0 &&
      env->GetLineNumberTable(method, &entries, &table) == JVMTI_ERROR_NONE) {
    jlocation best = -1;
    for (jint i = 0; i < entries; ++i) {
      if (table[i].start_location <= index && table[i].start_location > best) {
        best = table[i].start_location;
        line = table[i].line_number;
      }
    }
  }
  char cls_name[512], dir[512], name[1024], file[1024];
  if (!ClassName(signature, cls_name, sizeof(cls_name), dir, sizeof(dir))) {
    std::strcpy(cls_name, "?");
    dir[0] = '\0';
  }
  size_t n = 0;
  for (const char* p : {static_cast<const char*>(cls_name), ".",
                        static_cast<const char*>(method_name)}) {
    for (; *p != '\0' && n + 1 < sizeof(name); ++p) name[n++] = *p;
  }
  name[n] = '\0';
  n = 0;
  if (source != nullptr) {
    for (const char* p : {static_cast<const char*>(dir),
                          static_cast<const char*>(source)}) {
      for (; *p != '\0' && n + 1 < sizeof(file); ++p) file[n++] = *p;
    }
  }
  file[n] = '\0';
  uint32_t offset =
      python::DefinitionBlob(ring, name, file, line, wire::CodeLanguage::kJava);
  Release(env, table);
  Release(env, source);
  Release(env, signature);
  Release(env, method_name);
  // A local reference lives until the JNI method returns: let it go now.
  if (cls != nullptr) jni->DeleteLocalRef(cls);
  return offset;
}

// The thread's frames from AsyncGetCallTrace, as GetStackTrace gives
// them; -1 where it cannot tell them all. GetStackTrace costs several
// microseconds more (vframes made and freed, two changes of thread state),
// mostly on a thread's first calls; it also makes the jmethodIDs missing
// here, so a stack that once fell back answers here the next time.
static_assert(sizeof(AsyncFrame) == sizeof(jvmtiFrameInfo));
jint AsyncFrames(JNIEnv* jni, jvmtiFrameInfo* frames, jint limit) {
  AsyncWalk walk = g_async.load(std::memory_order_acquire);
  if (walk == nullptr) return -1;
  // Into the same memory (a thread's first stacks touch fresh stack
  // pages), each frame then rewritten in place.
  AsyncTrace trace{jni, 0, reinterpret_cast<AsyncFrame*>(frames)};
  // Its ucontext is read only for a thread running Java code (never so
  // inside a JNI method): an empty one says "not in Java" should it be.
  static const ucontext_t kNoContext{};
  walk(&trace, limit, const_cast<ucontext_t*>(&kNoContext));
  if (trace.count < 0 || trace.count > limit) return -1;
  for (jint i = 0; i < trace.count; ++i) {
    AsyncFrame found;
    std::memcpy(&found, &frames[i], sizeof(found));
    if (found.method == nullptr) return -1;
    frames[i].method = found.method;
    frames[i].location = found.bci < 0 ? -1 : found.bci;
  }
  return trace.count;
}

// libjvm's JNI_GetCreatedJavaVMs, once libjvm is loaded. The launcher
// loads it without RTLD_GLOBAL: it is asked for by name, loaded already or
// not at all.
void FindJvm() {
  void* jvm = dlopen("libjvm.so", RTLD_NOW | RTLD_NOLOAD);
  if (jvm == nullptr) return;
  if (void* fn = dlsym(jvm, "JNI_GetCreatedJavaVMs"); fn != nullptr) {
    g_created.store(reinterpret_cast<CreatedVms>(fn), std::memory_order_release);
  }
  if (void* fn = dlsym(jvm, "AsyncGetCallTrace"); fn != nullptr) {
    g_async_found.store(reinterpret_cast<AsyncWalk>(fn),
                        std::memory_order_release);
  }
  dlclose(jvm);  // it stays loaded: the launcher holds it
}

// The thread's JNI environment if the call (its program frames, `callers`)
// came from a JNI library of the JDK, directly or through another library
// preloaded ahead of this one (a sanitizer's runtime, another tracer) that
// passed it on, on a thread the JVM runs Java on; else null.
JNIEnv* JdkCallerJni(const uint64_t* callers, int count) {
  bool jdk = false;
  for (int i = 0; i < count && i < kMaxPassedThrough + 1 && !jdk; ++i) {
    jdk = InJdkNative(callers[i]);
  }
  if (!jdk) return nullptr;
  // The JDK's native code is loaded: so is libjvm.
  if (g_created.load(std::memory_order_acquire) == nullptr) FindJvm();
  JavaVM* vm = Vm();
  if (vm == nullptr) return nullptr;
  JNIEnv* jni = nullptr;
  if (vm->GetEnv(reinterpret_cast<void**>(&jni), JNI_VERSION_1_6) != JNI_OK) {
    return nullptr;  // not a thread the JVM runs Java on
  }
  return jni;
}

// The calling thread's innermost Java frames, at most `limit`: their count,
// 0 if none can be had.
jint Frames(jvmtiEnv* env, JNIEnv* jni, jvmtiFrameInfo* frames, jint limit) {
  jint depth = AsyncFrames(jni, frames, limit);
  if (depth < 0 &&
      env->GetStackTrace(nullptr, 0, limit, frames, &depth) != JVMTI_ERROR_NONE) {
    return 0;
  }
  return depth;
}

// Methods known to be the JDK's NioSocketImpl.close (method | 1) or not
// (method): asked of the JVM once each.
constexpr uint32_t kCloserSlots = 64;
CA_BULK std::atomic<uint64_t> g_closers[kCloserSlots];

// Whether `method` is sun.nio.ch.NioSocketImpl.close, the close behind
// java.net.Socket (JDK 13 and later). It shuts the socket's output (unless
// SO_LINGER is 0) and then closes it, or if another thread is reading or
// writing it, pre-closes it with a dup2() there and then: either way the
// socket's hold ends in the same call, with the same Java frames.
bool IsSocketCloser(jvmtiEnv* env, jmethodID method) {
  auto id = reinterpret_cast<uint64_t>(method);  // aligned: bit 0 is free
  std::atomic<uint64_t>& slot =
      g_closers[(id * 0x9e3779b97f4a7c15ull) >> 58];
  uint64_t seen = slot.load(std::memory_order_relaxed);
  if ((seen & ~uint64_t{1}) == id) return (seen & 1) != 0;
  char* name = nullptr;
  bool yes = false;
  if (env->GetMethodName(method, &name, nullptr, nullptr) == JVMTI_ERROR_NONE &&
      name != nullptr && std::strcmp(name, "close") == 0) {
    jclass cls = nullptr;
    char* signature = nullptr;
    if (env->GetMethodDeclaringClass(method, &cls) == JVMTI_ERROR_NONE &&
        cls != nullptr &&
        env->GetClassSignature(cls, &signature, nullptr) == JVMTI_ERROR_NONE) {
      yes = signature != nullptr &&
            std::strcmp(signature, "Lsun/nio/ch/NioSocketImpl;") == 0;
    }
    Release(env, signature);
  }
  Release(env, name);
  slot.store(id | (yes ? 1 : 0), std::memory_order_relaxed);
  return yes;
}

}  // namespace

void Detect() {
  if (g_possible.load(std::memory_order_relaxed)) return;
  // The java launcher's library (libjvm comes later, before any Java code
  // runs), or a JVM some other program created.
  void* jli = dlopen("libjli.so", RTLD_NOW | RTLD_NOLOAD);
  if (jli != nullptr) dlclose(jli);
  FindJvm();
  if (jli != nullptr || g_created.load(std::memory_order_relaxed) != nullptr) {
    g_possible.store(true, std::memory_order_release);
  }
}

bool Active() {
  return g_possible.load(std::memory_order_relaxed) &&
         !g_failed.load(std::memory_order_relaxed);
}

CA_CHILD_PATH void ForkChild() {
  if (g_possible.load(std::memory_order_relaxed)) {
    g_failed.store(true, std::memory_order_relaxed);
  }
}

int Walk(RingWriter& ring, const uint64_t* callers, int count,
         wire::PyFrame* out, int max, bool* closing) {
  if (closing != nullptr) *closing = false;
  if (!Active() || max <= 0) return 0;
  JNIEnv* jni = JdkCallerJni(callers, count);
  if (jni == nullptr) return 0;
  jvmtiEnv* env = Env(jni);
  if (env == nullptr) return 0;
  jvmtiFrameInfo frames[kMaxJavaFrames];
  jint depth = Frames(env, jni, frames, max < kMaxJavaFrames ? max : kMaxJavaFrames);
  // Net.shutdown (the native method) and the Java method that called it.
  if (closing != nullptr && depth >= 2) {
    *closing = IsSocketCloser(env, frames[1].method);
  }
  int n = 0;
  for (jint i = 0; i < depth; ++i) {
    auto method = reinterpret_cast<uint64_t>(frames[i].method);
    // A native method's location is -1: no line.
    uint64_t index = frames[i].location < 0
                         ? 0xffff
                         : static_cast<uint64_t>(frames[i].location);
    uint32_t offset = LookUp(method, index);
    if (offset == 0) {
      offset = Name(ring, env, jni, frames[i].method, frames[i].location);
      if (offset == 0) continue;
      Remember(method, index, offset);
    }
    out[n++] = wire::PyFrame{offset, 0};
  }
  // One run of frames, all of the JVM's code.
  if (n > 0) out[n - 1].where |= wire::kPyFrameCallEnd;
  return n;
}

void ResetFrames() { g_epoch.fetch_add(1, std::memory_order_relaxed); }

#else  // no JVMTI headers at build time: stacks of a JVM stay native

void Detect() {}
bool Active() { return false; }
void ForkChild() {}
int Walk(RingWriter&, const uint64_t*, int, wire::PyFrame*, int, bool* closing) {
  if (closing != nullptr) *closing = false;
  return 0;
}
void ResetFrames() {}

#endif

}  // namespace closeaudit::shim::java
