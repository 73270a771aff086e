#include "shim/modules.h"

#include <elf.h>
#include <link.h>
#include <time.h>

#include <cstring>

#include "common/wire.h"
#include "shim/layout.h"

namespace closeaudit::shim {
namespace {

constexpr int kMaxModules = 1024;

struct Module {
  uintptr_t start, end, bias;
  const char* path;  // points into the loader's data or g_exe_path
  const uint8_t* build_id;
  int build_id_len;
};

const char* g_exe_path = "";
// Every module seen so far. Appended to only inside dl_iterate_phdr's
// callback, i.e. under the loader's lock.
CA_BULK Module g_modules[kMaxModules];
int g_module_count = 0;

// The GNU build-id note of a loaded object, from its PT_NOTE segments.
int FindBuildId(const dl_phdr_info* info, const uint8_t** out) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const uint8_t* p =
        reinterpret_cast<const uint8_t*>(info->dlpi_addr + ph.p_vaddr);
    const uint8_t* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const auto* note = reinterpret_cast<const ElfW(Nhdr)*>(p);
      const uint8_t* name = p + sizeof(ElfW(Nhdr));
      const uint8_t* desc = name + ((note->n_namesz + 3) & ~3u);
      const uint8_t* next = desc + ((note->n_descsz + 3) & ~3u);
      if (next > end) break;
      if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0) {
        *out = desc;
        return static_cast<int>(note->n_descsz);
      }
      p = next;
    }
  }
  return 0;
}

void Write(RingWriter& ring, const Module& m) {
  size_t path_len = strnlen(m.path, wire::kMaxPathBytes);
  uint32_t bytes = static_cast<uint32_t>(sizeof(wire::ModuleBlob) + path_len +
                                         m.build_id_len);
  void* mem = nullptr;
  uint32_t offset = ring.AllocBlob(bytes, &mem);
  if (offset == 0) return;
  auto* blob = static_cast<wire::ModuleBlob*>(mem);
  blob->header.kind = wire::BlobKind::kModule;
  blob->header.reserved = 0;
  blob->header.bytes = bytes;
  blob->load_bias = m.bias;
  blob->start = m.start;
  blob->end = m.end;
  blob->path_len = static_cast<uint16_t>(path_len);
  blob->build_id_len = static_cast<uint16_t>(m.build_id_len);
  blob->reserved = 0;
  auto* tail = reinterpret_cast<uint8_t*>(blob + 1);
  std::memcpy(tail, m.path, path_len);
  if (m.build_id_len) std::memcpy(tail + path_len, m.build_id, m.build_id_len);

  wire::Event event{};
  event.type = wire::EventType::kModule;
  event.fd = -1;
  event.blob = offset;
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  event.mono_ns = uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
  ring.Push(event);
}

int SendNew(dl_phdr_info* info, size_t, void* data) {
  auto& ring = *static_cast<RingWriter*>(data);
  Module m{};
  ModuleRange(info, &m.start, &m.end);
  if (m.end == 0 || g_module_count == kMaxModules) return 0;
  for (int i = 0; i < g_module_count; ++i) {
    if (g_modules[i].start == m.start && g_modules[i].end == m.end) return 0;
  }
  m.bias = info->dlpi_addr;
  m.path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : g_exe_path;
  m.build_id_len = FindBuildId(info, &m.build_id);
  if (m.build_id_len > static_cast<int>(wire::kMaxBuildIdBytes)) {
    m.build_id_len = 0;
  }
  g_modules[g_module_count++] = m;
  Write(ring, m);
  return 0;
}

}  // namespace

void ModuleRange(const dl_phdr_info* info, uintptr_t* lo, uintptr_t* hi) {
  *lo = ~uintptr_t{0};
  *hi = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (start < *lo) *lo = start;
    if (start + ph.p_memsz > *hi) *hi = start + ph.p_memsz;
  }
}

void InitModules(const char* exe_path) { g_exe_path = exe_path; }

void SendModules(RingWriter& ring) { dl_iterate_phdr(SendNew, &ring); }

void ResendModules(RingWriter& ring) {
  for (int i = 0; i < g_module_count; ++i) Write(ring, g_modules[i]);
}

}  // namespace closeaudit::shim
