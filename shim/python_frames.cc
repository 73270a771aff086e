#include "shim/python_frames.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "shim/modules.h"
#include "shim/stacks.h"

namespace closeaudit::shim::python {
namespace {

constexpr uint16_t kNone = 0xffff;

// One minor version's offsets, in the order scripts/python-layouts prints
// them (shim/python/layout_probe.c says what each is).
struct PyLayout {
  uint16_t minor;
  uint16_t ts_interp, ts_thread_id, ts_frame, cframe_current;
  uint16_t interp_next, rt_finalizing;
  uint16_t fr_back, fr_code, fr_instr;
  uint16_t instr_kind;  // 0: int f_lasti (bytes); 1: int f_lasti (code
                        // units); 2: pointer to the instruction
  uint16_t fr_owner;
  uint16_t owner_kind;  // 0: none (each frame is one loop call); 1: is_entry
                        // (3.11); 2: owner, kOwnerCstack separating calls
  uint16_t owner_cstack;
  uint16_t co_firstlineno, co_filename, co_name, co_qualname, co_table,
      co_code;
  uint16_t str_length, str_state, str_ascii_data, str_compact_data;
  uint16_t bytes_size, bytes_data;
  uint16_t object_size;  // sizeof(PyObject): ob_type is the word before
  // Not in layouts.inc (0 there): the low bits of a frame's code pointer
  // that are a tag (3.14's _PyStackRef), not address.
  uint16_t code_tag_bits = 0;
};

constexpr PyLayout kLayouts[] = {
#include "shim/python/layouts.inc"
};

// What Detect() found; written once, before g_active is set.
struct Runtime {
  const PyLayout* layout = nullptr;
  void* (*this_thread_state)() = nullptr;
  void* (*interpreter_head)() = nullptr;
  uintptr_t code_type = 0, str_type = 0, bytes_type = 0;
  uintptr_t runtime = 0;  // &_PyRuntime
  // The interpreter's own object (its data is always mapped).
  uintptr_t static_lo = 0, static_hi = 0;
  uint32_t status = 0;  // wire::PyStatus; 0: no interpreter
  uint64_t version = 0;
};
Runtime g_rt;
std::atomic<int> g_detected{0};
std::atomic<bool> g_active{false};
// 1 once a walk has proven the layout on real frames; a check that fails
// before that stops walks for good (kInvalid).
std::atomic<int> g_proven{0};

// --- Reads that cannot fault -------------------------------------------------

constexpr uintptr_t kPage = 4096;

// The pages proven readable during one walk.
struct Pages {
  uintptr_t page[16] = {};
  int count = 0;
  int next = 0;
};

bool PageReadable(uintptr_t page, Pages& pages) {
  if (page >= g_rt.static_lo && page + kPage <= g_rt.static_hi) return true;
  for (int i = 0; i < pages.count; ++i) {
    if (pages.page[i] == page) return true;
  }
  if (UnwinderPipeWrite(reinterpret_cast<const void*>(page), 8) != 8) {
    return false;
  }
  if (pages.count < 16) {
    pages.page[pages.count++] = page;
  } else {
    pages.page[pages.next++ % 16] = page;
  }
  return true;
}

// Whether [p, p + n) may be read: in the user half of the address space,
// every page proven readable.
bool Readable(uintptr_t p, size_t n, Pages& pages) {
  if (p < kPage || n == 0 || p + n < p || p + n > (uintptr_t{1} << 47)) {
    return false;
  }
  // The calling thread's own stack, as far as a walk of it has seen: 3.11's
  // and 3.12's _PyCFrame and the loop's entry frames live there.
  if (OnThisThreadsStack(reinterpret_cast<const void*>(p), n)) return true;
  for (uintptr_t page = p & ~(kPage - 1); page < p + n; page += kPage) {
    if (!PageReadable(page, pages)) return false;
  }
  return true;
}

template <typename T>
__attribute__((no_sanitize("address", "thread"))) T Load(uintptr_t p) {
  T value;
  __builtin_memcpy(&value, reinterpret_cast<const void*>(p), sizeof(T));
  return value;
}

// A byte loop, not memcpy: under ASan memcpy is the runtime's, which would
// check the interpreter's memory against its own idea of the heap (Python's
// objects come from its malloc there). volatile keeps the compiler from
// making the loop a memcpy call again.
__attribute__((no_sanitize("address", "thread"))) void Copy(void* to,
                                                            uintptr_t from,
                                                            size_t n) {
  auto* out = static_cast<unsigned char*>(to);
  const volatile unsigned char* in =
      reinterpret_cast<const volatile unsigned char*>(from);
  for (size_t i = 0; i < n; ++i) out[i] = in[i];
}

uint16_t Max(uint16_t a, uint16_t b) { return a > b ? a : b; }
uint16_t Max(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
  uint16_t m = Max(Max(a, b), Max(c, d));
  return m;
}
uint16_t Field(uint16_t off) { return off == kNone ? 0 : off; }

uintptr_t TypeOf(uintptr_t obj) {
  return Load<uintptr_t>(obj + g_rt.layout->object_size - 8);
}

// --- Strings and bytes ---------------------------------------------------------

// Appends the UTF-8 of a compact str object to out (at most cap bytes);
// returns the bytes written, or -1 if obj is not one.
int StrUtf8(uintptr_t obj, char* out, int cap, Pages& pages) {
  const PyLayout& L = *g_rt.layout;
  if (obj == 0) return 0;
  uint16_t header = Max(L.str_compact_data, Max(L.str_state + 4, L.str_length + 8));
  if (!Readable(obj, header, pages) || TypeOf(obj) != g_rt.str_type) return -1;
  int64_t length = Load<int64_t>(obj + L.str_length);
  uint32_t state = Load<uint32_t>(obj + L.str_state);
  unsigned kind = (state >> 2) & 7;
  bool compact = (state >> 5) & 1;
  bool ascii = (state >> 6) & 1;
  if (!compact || length < 0 || (kind != 1 && kind != 2 && kind != 4)) {
    return -1;
  }
  if (ascii && kind != 1) return -1;
  // Only as many characters as can be written (4 bytes each at most).
  int64_t chars = length < cap ? length : cap;
  uintptr_t data = obj + (ascii ? L.str_ascii_data : L.str_compact_data);
  if (chars > 0 && !Readable(data, static_cast<size_t>(chars) * kind, pages)) {
    return -1;
  }
  int n = 0;
  for (int64_t i = 0; i < chars; ++i) {
    uint32_t c = kind == 1   ? Load<uint8_t>(data + i)
                 : kind == 2 ? Load<uint16_t>(data + 2 * i)
                             : Load<uint32_t>(data + 4 * i);
    if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) c = 0xfffd;
    int need = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (n + need > cap) break;
    if (need == 1) {
      out[n++] = static_cast<char>(c);
    } else if (need == 2) {
      out[n++] = static_cast<char>(0xc0 | (c >> 6));
      out[n++] = static_cast<char>(0x80 | (c & 0x3f));
    } else if (need == 3) {
      out[n++] = static_cast<char>(0xe0 | (c >> 12));
      out[n++] = static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out[n++] = static_cast<char>(0x80 | (c & 0x3f));
    } else {
      out[n++] = static_cast<char>(0xf0 | (c >> 18));
      out[n++] = static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      out[n++] = static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out[n++] = static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return n;
}

// A bytes object's data and size (at most kMaxPyTableBytes), or false.
bool BytesOf(uintptr_t obj, uintptr_t* data, uint32_t* size, Pages& pages) {
  const PyLayout& L = *g_rt.layout;
  if (obj == 0 || !Readable(obj, L.bytes_data, pages) ||
      TypeOf(obj) != g_rt.bytes_type) {
    return false;
  }
  int64_t n = Load<int64_t>(obj + L.bytes_size);
  if (n < 0) return false;
  if (n > static_cast<int64_t>(wire::kMaxPyTableBytes)) n = wire::kMaxPyTableBytes;
  if (n > 0 && !Readable(obj + L.bytes_data, static_cast<size_t>(n), pages)) {
    return false;
  }
  *data = obj + L.bytes_data;
  *size = static_cast<uint32_t>(n);
  return true;
}

// --- Code objects, copied once -------------------------------------------------

struct CodeSlot {
  std::atomic<uint64_t> address;  // 0: empty
  std::atomic<uint64_t> print;    // what the code object held when copied
  std::atomic<uint64_t> blob;     // generation << 32 | offset; 0: being written
  std::atomic<uint32_t> epoch;
};
constexpr uint32_t kCodeSlots = 1u << 14;
constexpr int kCodeProbes = 32;
std::atomic<CodeSlot*> g_codes{nullptr};
std::atomic<uint32_t> g_code_epoch{1};

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 32);
}

// Writes a PyCodeBlob: name and file from the shim's own memory, the table
// (table_len bytes at table, the interpreter's) copied safely. Its offset,
// or 0 if the arena is full.
uint32_t WriteCodeBlob(RingWriter& ring, uint16_t minor, int32_t firstlineno,
                       const char* name, uint32_t name_len, const char* file,
                       uint32_t file_len, uintptr_t table, uint32_t table_len,
                       wire::CodeLanguage language = wire::CodeLanguage::kPython) {
  uint32_t bytes = wire::AlignBlob(sizeof(wire::PyCodeBlob) + name_len +
                                   file_len + table_len);
  void* mem = nullptr;
  uint32_t offset = ring.AllocBlob(bytes, &mem);
  if (offset == 0) return 0;
  auto* blob = static_cast<wire::PyCodeBlob*>(mem);
  std::memset(blob, 0, sizeof(*blob));
  blob->header.kind = wire::BlobKind::kPyCode;
  blob->header.bytes = bytes;
  blob->minor = minor;
  blob->language = static_cast<uint16_t>(language);
  blob->firstlineno = firstlineno;
  blob->name_len = name_len;
  blob->file_len = file_len;
  blob->table_len = table_len;
  char* at = reinterpret_cast<char*>(blob + 1);
  if (name_len) std::memcpy(at, name, name_len);
  if (file_len) std::memcpy(at + name_len, file, file_len);
  if (table_len) Copy(at + name_len + file_len, table, table_len);
  return offset;
}

// The arena offset of code's PyCodeBlob in ring, written now if it is not
// there yet; 0 if code is not a code object (or the arena is full).
uint32_t CodeBlob(RingWriter& ring, uintptr_t code, Pages& pages, bool* bad) {
  const PyLayout& L = *g_rt.layout;
  uint16_t end = Max(Max(L.co_firstlineno + 4, L.co_filename + 8),
                     Max(L.co_name + 8, Field(L.co_qualname) + 8),
                     L.co_table + 8, L.object_size);
  if (!Readable(code, end, pages) || TypeOf(code) != g_rt.code_type) {
    *bad = true;
    return 0;
  }
  uintptr_t file = Load<uintptr_t>(code + L.co_filename);
  uintptr_t name = Load<uintptr_t>(
      code + (L.co_qualname != kNone ? L.co_qualname : L.co_name));
  uintptr_t table = Load<uintptr_t>(code + L.co_table);
  int32_t firstlineno = Load<int32_t>(code + L.co_firstlineno);
  uint64_t print = Mix(Mix(Mix(Mix(0x9e3779b97f4a7c15ull, file), name), table),
                       static_cast<uint32_t>(firstlineno)) | 1;

  uint32_t epoch = g_code_epoch.load(std::memory_order_relaxed);
  CodeSlot* slots = g_codes.load(std::memory_order_acquire);
  CodeSlot* claimed = nullptr;
  if (slots != nullptr) {
    uint64_t h = Mix(0, code);
    for (int probe = 0; probe < kCodeProbes; ++probe) {
      CodeSlot& s = slots[(h + probe) & (kCodeSlots - 1)];
      uint64_t seen = s.address.load(std::memory_order_acquire);
      if (seen == code) {
        uint64_t blob = s.blob.load(std::memory_order_acquire);
        if (blob != 0 && s.print.load(std::memory_order_relaxed) == print &&
            s.epoch.load(std::memory_order_relaxed) == epoch &&
            (blob >> 32) == ring.generation()) {
          return static_cast<uint32_t>(blob);
        }
        // Another code object at the same address since, or another ring:
        // copy it again, and remember the copy in this slot.
        uint64_t expected = blob;
        if (blob != 0 && s.blob.compare_exchange_strong(
                             expected, 0, std::memory_order_acq_rel)) {
          claimed = &s;
        }
        break;
      }
      if (seen == 0) {
        uint64_t expected = 0;
        if (s.address.compare_exchange_strong(expected, code,
                                              std::memory_order_acq_rel)) {
          claimed = &s;
          break;
        }
        if (expected == code) break;
      }
    }
  }

  char name_buf[wire::kMaxPyNameBytes];
  char file_buf[wire::kMaxPathBytes];
  int name_len = StrUtf8(name, name_buf, sizeof(name_buf), pages);
  int file_len = StrUtf8(file, file_buf, sizeof(file_buf), pages);
  uintptr_t table_data = 0;
  uint32_t table_len = 0;
  bool have_table = BytesOf(table, &table_data, &table_len, pages);
  uint32_t written = 0;
  if (name_len < 0 || file_len < 0 || !have_table) {
    *bad = true;
  } else {
    written = WriteCodeBlob(ring, L.minor, firstlineno, name_buf,
                            static_cast<uint32_t>(name_len), file_buf,
                            static_cast<uint32_t>(file_len), table_data,
                            table_len);
  }
  if (claimed != nullptr) {
    claimed->print.store(print, std::memory_order_relaxed);
    claimed->epoch.store(epoch, std::memory_order_relaxed);
    // A slot whose copy failed stays claimed, empty: the next walk copies.
    claimed->blob.store(
        written ? (uint64_t{ring.generation()} << 32) | written : 0,
        std::memory_order_release);
  }
  return written;
}

void Fail(RingWriter& ring) {
  if (!g_active.exchange(false, std::memory_order_relaxed)) return;
  g_rt.status = static_cast<uint32_t>(wire::PyStatus::kInvalid);
  wire::Event ev{};
  ev.type = wire::EventType::kRuntime;
  ev.fd = -1;
  ev.tid = static_cast<uint32_t>(syscall(SYS_gettid));
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  ev.mono_ns = uint64_t(now.tv_sec) * 1000000000ull + uint64_t(now.tv_nsec);
  ev.aux = g_rt.status;
  ev.arg = g_rt.version;
  ring.Push(ev);
}

// --- Detection -------------------------------------------------------------

struct FindModule {
  uintptr_t probe;
  uintptr_t lo = 0, hi = 0;
};

int FindModuleOf(dl_phdr_info* info, size_t, void* data) {
  auto* find = static_cast<FindModule*>(data);
  uintptr_t lo, hi;
  ModuleRange(info, &lo, &hi);
  if (find->probe < lo || find->probe >= hi) return 0;
  find->lo = lo;
  find->hi = hi;
  return 1;
}

// "3.11.7 (main, ...": the three numbers, or false.
bool ParseVersion(const char* text, int* major, int* minor, int* micro) {
  int* parts[3] = {major, minor, micro};
  for (int i = 0; i < 3; ++i) {
    if (*text < '0' || *text > '9') return i == 2 && (*micro = 0, true);
    int v = 0;
    while (*text >= '0' && *text <= '9' && v < 1000) v = v * 10 + (*text++ - '0');
    *parts[i] = v;
    if (i < 2 && *text++ != '.') return false;
  }
  return true;
}

// 3.13 carries its own offsets at the start of _PyRuntime (_Py_DebugOffsets):
// the table's must agree with them.
bool DebugOffsetsAgree(uintptr_t runtime, const PyLayout& L, bool* free_threaded) {
  struct Offsets313 {  // the head of 3.13's _Py_DebugOffsets
    char cookie[8];
    uint64_t version, free_threaded;
    uint64_t rt_size, rt_finalizing, rt_interpreters_head;
    uint64_t is_size, is_id, is_next, is_threads_head, is_gc, is_modules,
        is_sysdict, is_builtins, is_ceval_gil, is_gil, is_gil_enabled,
        is_gil_locked, is_gil_holder;
    uint64_t ts_size, ts_prev, ts_next, ts_interp, ts_current_frame,
        ts_thread_id, ts_native_thread_id, ts_datastack_chunk, ts_status;
    uint64_t fr_size, fr_previous, fr_executable, fr_instr_ptr, fr_localsplus,
        fr_owner;
    uint64_t co_size, co_filename, co_name, co_qualname, co_linetable,
        co_firstlineno, co_argcount, co_localsplusnames, co_localspluskinds,
        co_code_adaptive;
    uint64_t ob_size, ob_type;
  } d;
  Pages pages;
  if (!Readable(runtime, sizeof(d), pages)) return false;
  Copy(&d, runtime, sizeof(d));
  if (std::memcmp(d.cookie, "xdebugpy", 8) != 0) return false;
  *free_threaded = d.free_threaded != 0;
  return ((d.version >> 16) & 0xff) == L.minor &&
         d.rt_finalizing == L.rt_finalizing && d.is_next == L.interp_next &&
         d.ts_interp == L.ts_interp && d.ts_current_frame == L.ts_frame &&
         d.ts_thread_id == L.ts_thread_id && d.fr_previous == L.fr_back &&
         d.fr_executable == L.fr_code && d.fr_instr_ptr == L.fr_instr &&
         d.fr_owner == L.fr_owner && d.co_filename == L.co_filename &&
         d.co_name == L.co_name && d.co_qualname == L.co_qualname &&
         d.co_linetable == L.co_table && d.co_firstlineno == L.co_firstlineno &&
         d.co_code_adaptive == L.co_code &&
         d.ob_type == uint64_t(L.object_size) - 8;
}

// 3.14 is read through the offsets its _PyRuntime starts with, untested
// here (no 3.14 on the machines that test this): their positions are 3.14's
// struct _Py_DebugOffsets (Include/internal/pycore_debug_offsets.h), every
// field 8 bytes. Later versions move them again and are not walked.
bool LayoutFrom314(uintptr_t runtime, PyLayout* L, bool* free_threaded) {
  constexpr size_t kSize = 760;  // sizeof(_Py_DebugOffsets) in 3.14.0
  uint64_t d[kSize / 8];
  Pages pages;
  if (!Readable(runtime, sizeof(d), pages)) return false;
  Copy(d, runtime, sizeof(d));
  auto at = [&d](size_t byte) { return d[byte / 8]; };
  if (std::memcmp(d, "xdebugpy", 8) != 0) return false;
  if (((at(8) >> 24) & 0xff) != 3 || ((at(8) >> 16) & 0xff) != 14) return false;
  *free_threaded = at(16) != 0;
  if (*free_threaded) return false;
  // Each struct's size, then the offsets in it: each must lie inside.
  struct Field {
    size_t size_at, value_at;
    uint16_t* out;
  };
  uint16_t ob_type = 0, compact = 0;
  const Field fields[] = {
      {24, 32, &L->rt_finalizing},   {48, 64, &L->interp_next},
      {176, 200, &L->ts_interp},     {176, 208, &L->ts_frame},
      {176, 216, &L->ts_thread_id},  {248, 256, &L->fr_back},
      {248, 264, &L->fr_code},       {248, 272, &L->fr_instr},
      {248, 288, &L->fr_owner},      {312, 320, &L->co_filename},
      {312, 328, &L->co_name},       {312, 336, &L->co_qualname},
      {312, 344, &L->co_table},      {312, 352, &L->co_firstlineno},
      {312, 384, &L->co_code},       {400, 408, &ob_type},
      {592, 600, &L->bytes_size},    {592, 608, &L->bytes_data},
      {616, 624, &L->str_state},     {616, 632, &L->str_length},
      {616, 640, &L->str_ascii_data}};
  for (const Field& f : fields) {
    uint64_t size = at(f.size_at), value = at(f.value_at);
    if (size == 0 || size > 0x10000 || value + 8 > size) {
      // co_code_adaptive and ob_sval are where data starts: at most the size.
      if (!(size != 0 && size <= 0x10000 && value <= size)) return false;
    }
    *f.out = static_cast<uint16_t>(value);
  }
  compact = static_cast<uint16_t>(L->str_ascii_data + 16);  // utf8_length, utf8
  L->minor = 14;
  L->cframe_current = kNone;
  L->instr_kind = 2;
  L->owner_kind = 2;
  L->owner_cstack = 3;  // FRAME_OWNED_BY_INTERPRETER and above
  L->str_compact_data = compact;
  L->object_size = static_cast<uint16_t>(ob_type + 8);
  L->code_tag_bits = 3;  // Py_TAG_BITS of the default build
  return ob_type == 8;
}

PyLayout g_layout_314;

}  // namespace

namespace internal {

bool Read314(const void* offsets, Offsets314* out, bool* free_threaded) {
  PyLayout L{};
  if (!LayoutFrom314(reinterpret_cast<uintptr_t>(offsets), &L, free_threaded)) {
    return false;
  }
  *out = {L.ts_frame, L.ts_thread_id, L.fr_back, L.fr_code, L.fr_owner,
          L.co_qualname, L.co_code, L.str_compact_data, L.object_size,
          L.code_tag_bits};
  return true;
}

}  // namespace internal

void Detect() {
  if (g_detected.exchange(1, std::memory_order_acq_rel) != 0) return;
  auto sym = [](const char* name) { return dlsym(RTLD_DEFAULT, name); };
  auto version = reinterpret_cast<const char* (*)()>(sym("Py_GetVersion"));
  if (version == nullptr) return;  // no CPython here: one lookup, no more
  void* tss = sym("PyGILState_GetThisThreadState");
  void* head = sym("PyInterpreterState_Head");
  void* code_type = sym("PyCode_Type");
  void* str_type = sym("PyUnicode_Type");
  void* bytes_type = sym("PyBytes_Type");
  void* runtime = sym("_PyRuntime");
  if (!version || !tss || !head || !code_type || !str_type || !bytes_type ||
      !runtime) {
    return;  // no CPython here
  }
  int major = 0, minor = 0, micro = 0;
  if (!ParseVersion(version(), &major, &minor, &micro)) return;
  g_rt.version = wire::PyVersion(major, minor, micro);
  using wire::PyStatus;
  PyStatus status = PyStatus::kWalked;
  const PyLayout* layout = nullptr;
  for (const PyLayout& l : kLayouts) {
    if (major == 3 && l.minor == minor) layout = &l;
  }
  bool free_threaded = false;
  if (sym("_Py_NegativeRefcount") != nullptr) {
    status = PyStatus::kDebugBuild;
  } else if (major == 3 && minor == 14) {
    if (LayoutFrom314(reinterpret_cast<uintptr_t>(runtime), &g_layout_314,
                      &free_threaded)) {
      layout = &g_layout_314;
    } else {
      status = free_threaded ? PyStatus::kFreeThreaded
                             : PyStatus::kLayoutMismatch;
    }
  } else if (layout == nullptr) {
    status = PyStatus::kUnknownVersion;
  } else if (minor >= 13 &&
             !DebugOffsetsAgree(reinterpret_cast<uintptr_t>(runtime), *layout,
                                &free_threaded)) {
    status = free_threaded ? PyStatus::kFreeThreaded : PyStatus::kLayoutMismatch;
  }
  g_rt.status = static_cast<uint32_t>(status);
  if (status != PyStatus::kWalked) return;
  g_rt.layout = layout;
  g_rt.this_thread_state = reinterpret_cast<void* (*)()>(tss);
  g_rt.interpreter_head = reinterpret_cast<void* (*)()>(head);
  g_rt.code_type = reinterpret_cast<uintptr_t>(code_type);
  g_rt.str_type = reinterpret_cast<uintptr_t>(str_type);
  g_rt.bytes_type = reinterpret_cast<uintptr_t>(bytes_type);
  g_rt.runtime = reinterpret_cast<uintptr_t>(runtime);
  FindModule find{g_rt.code_type};
  dl_iterate_phdr(FindModuleOf, &find);
  g_rt.static_lo = (find.lo + kPage - 1) & ~(kPage - 1);
  g_rt.static_hi = find.hi & ~(kPage - 1);
  void* mem = mmap(nullptr, sizeof(CodeSlot) * kCodeSlots,
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem != MAP_FAILED) g_codes.store(static_cast<CodeSlot*>(mem));
  g_active.store(true, std::memory_order_release);
}

bool Active() { return g_active.load(std::memory_order_relaxed); }

bool Status(uint32_t* status, uint64_t* version) {
  if (g_rt.status == 0) return false;
  *status = g_rt.status;
  *version = g_rt.version;
  return true;
}

uint32_t DefinitionBlob(RingWriter& ring, const char* name, const char* file,
                        int line, wire::CodeLanguage language) {
  auto length = [](const char* p, uint32_t max) {
    uint32_t n = 0;
    while (p != nullptr && n < max && p[n] != '\0') ++n;
    return n;
  };
  // minor 0: a definition, whose line is firstlineno; no table.
  return WriteCodeBlob(ring, 0, line, name, length(name, wire::kMaxPyNameBytes),
                       file, length(file, wire::kMaxPathBytes), 0, 0,
                       language);
}

void ResetCodes() { g_code_epoch.fetch_add(1, std::memory_order_relaxed); }

int Walk(RingWriter& ring, wire::PyFrame* out, int max) {
  if (!g_active.load(std::memory_order_acquire)) return 0;
  const PyLayout& L = *g_rt.layout;
  // Its thread states are being freed.
  if (Load<uintptr_t>(g_rt.runtime + L.rt_finalizing) != 0) return 0;
  auto tstate = reinterpret_cast<uintptr_t>(g_rt.this_thread_state());
  if (tstate == 0) return 0;
  Pages pages;
  uint16_t ts_end = Max(L.ts_interp, L.ts_thread_id, L.ts_frame, 0) + 8;
  if (!Readable(tstate, ts_end, pages)) return 0;
  // This thread's own state, of the one interpreter there is.
  if (Load<unsigned long>(tstate + L.ts_thread_id) !=
      static_cast<unsigned long>(pthread_self())) {
    return 0;
  }
  uintptr_t interp = Load<uintptr_t>(tstate + L.ts_interp);
  if (interp == 0 ||
      interp != reinterpret_cast<uintptr_t>(g_rt.interpreter_head()) ||
      !Readable(interp + L.interp_next, 8, pages) ||
      Load<uintptr_t>(interp + L.interp_next) != 0) {
    return 0;
  }
  uintptr_t frame = Load<uintptr_t>(tstate + L.ts_frame);
  if (L.cframe_current != kNone) {
    if (frame == 0 || !Readable(frame + L.cframe_current, 8, pages)) return 0;
    frame = Load<uintptr_t>(frame + L.cframe_current);
  }
  bool proven = g_proven.load(std::memory_order_relaxed) != 0;
  uint16_t fr_end =
      Max(L.fr_back, L.fr_code, L.fr_instr, Field(L.fr_owner)) + 8;
  int n = 0;
  bool bad = false;
  for (int steps = 0; frame != 0 && n < max && steps < 2 * static_cast<int>(wire::kMaxPyFrames);
       ++steps) {
    if ((frame & 7) != 0 || !Readable(frame, fr_end, pages)) {
      bad = true;
      break;
    }
    uintptr_t back = Load<uintptr_t>(frame + L.fr_back);
    // 3.12 and 3.13 mark a call of the loop from C with a frame owned by
    // the C stack (3); 3.14 with one owned by the interpreter (3) or the C
    // stack (4): a separator, not a Python function.
    if (L.owner_kind == 2 && Load<uint8_t>(frame + L.fr_owner) >= L.owner_cstack) {
      // The interpreter's marker for a call of its evaluation loop from C.
      if (n > 0) out[n - 1].where |= wire::kPyFrameCallEnd;
      frame = back;
      continue;
    }
    uintptr_t code = Load<uintptr_t>(frame + L.fr_code) &
                     ~static_cast<uintptr_t>(L.code_tag_bits);
    uint32_t blob = CodeBlob(ring, code, pages, &bad);
    if (bad) break;
    int64_t offset = 0;
    if (L.instr_kind == 2) {
      uintptr_t instr = Load<uintptr_t>(frame + L.fr_instr);
      offset = static_cast<int64_t>(instr - (code + L.co_code));
    } else {
      offset = Load<int32_t>(frame + L.fr_instr);
      if (L.instr_kind == 1) offset *= 2;
    }
    if (offset < 0 || offset > wire::kPyFrameOffsetMask) offset = 0;
    uint32_t where = static_cast<uint32_t>(offset);
    if (L.owner_kind == 0 ||
        (L.owner_kind == 1 && Load<uint8_t>(frame + L.fr_owner) != 0)) {
      where |= wire::kPyFrameCallEnd;
    }
    if (blob != 0) out[n++] = {blob, where};
    frame = back;
  }
  if (bad) {
    // Before any walk succeeded, a failed check means the layout is not
    // this process's: stop for good. After, a torn moment (a signal handler
    // that interrupted a frame push, say): leave this stack native.
    if (!proven) Fail(ring);
    return 0;
  }
  if (n > 0) {
    out[n - 1].where |= wire::kPyFrameCallEnd;
    if (!proven) g_proven.store(1, std::memory_order_relaxed);
  }
  return n;
}

}  // namespace closeaudit::shim::python
