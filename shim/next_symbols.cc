#include "shim/next_symbols.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include "shim/env.h"

namespace closeaudit::shim {
namespace {

// One object's dynamic symbol table, as its DT_GNU_HASH describes it.
struct HashTable {
  uintptr_t base = 0;
  const ElfW(Sym)* symbols = nullptr;
  const char* strings = nullptr;
  const ElfW(Half)* versions = nullptr;  // DT_VERSYM; null if unversioned
  uint32_t buckets_count = 0;
  uint32_t first_hashed = 0;  // symoffset: symbols below are not hashed
  uint32_t bloom_words = 0;
  uint32_t bloom_shift = 0;
  const ElfW(Addr)* bloom = nullptr;
  const uint32_t* buckets = nullptr;
  const uint32_t* chains = nullptr;  // indexed by symbol - first_hashed
};

// The loader relocates most dynamic entries in place (so they hold
// addresses), but not those of a read-only dynamic section (the vDSO's, and
// on some targets every object's). An unrelocated entry is an offset from
// the load base, which lies below the object.
uintptr_t DynamicAddress(uintptr_t base, ElfW(Addr) value) {
  return value < base ? base + value : value;
}

enum class TableState { kNone, kOk, kUnusable };

// kNone: the object has no dynamic symbols (nothing to find in it);
// kUnusable: it has symbols but no GNU hash table.
TableState ReadTable(const dl_phdr_info* info, HashTable* t) {
  const ElfW(Dyn)* dynamic = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
      dynamic = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr +
                                                  info->dlpi_phdr[i].p_vaddr);
    }
  }
  if (dynamic == nullptr) return TableState::kNone;
  t->base = info->dlpi_addr;
  const uint32_t* gnu_hash = nullptr;
  bool sysv_hash = false;
  for (const ElfW(Dyn)* d = dynamic; d->d_tag != DT_NULL; ++d) {
    uintptr_t at = DynamicAddress(t->base, d->d_un.d_ptr);
    switch (d->d_tag) {
      case DT_GNU_HASH:
        gnu_hash = reinterpret_cast<const uint32_t*>(at);
        break;
      case DT_HASH:
        sysv_hash = true;
        break;
      case DT_SYMTAB:
        t->symbols = reinterpret_cast<const ElfW(Sym)*>(at);
        break;
      case DT_STRTAB:
        t->strings = reinterpret_cast<const char*>(at);
        break;
      case DT_VERSYM:
        t->versions = reinterpret_cast<const ElfW(Half)*>(at);
        break;
      default:
        break;
    }
  }
  if (gnu_hash == nullptr || t->symbols == nullptr || t->strings == nullptr) {
    return sysv_hash ? TableState::kUnusable : TableState::kNone;
  }
  t->buckets_count = gnu_hash[0];
  t->first_hashed = gnu_hash[1];
  t->bloom_words = gnu_hash[2];
  t->bloom_shift = gnu_hash[3];
  // The loader indexes the filter with a mask: its size is a power of two.
  if (t->buckets_count == 0 || t->bloom_words == 0 ||
      (t->bloom_words & (t->bloom_words - 1)) != 0) {
    return TableState::kUnusable;
  }
  t->bloom = reinterpret_cast<const ElfW(Addr)*>(gnu_hash + 4);
  t->buckets = reinterpret_cast<const uint32_t*>(t->bloom + t->bloom_words);
  t->chains = t->buckets + t->buckets_count;
  return TableState::kOk;
}

constexpr unsigned kWordBits = sizeof(ElfW(Addr)) * 8;

bool MaybeDefines(const HashTable& t, uint32_t hash) {
  ElfW(Addr) word = t.bloom[(hash / kWordBits) & (t.bloom_words - 1)];
  return ((word >> (hash % kWordBits)) &
          (word >> ((hash >> t.bloom_shift) % kWordBits)) & 1) != 0;
}

// Whether the symbol can be what a lookup binds to (the loader's
// check_match, before versions are looked at).
bool Bindable(const ElfW(Sym)& sym) {
  unsigned type = ELF64_ST_TYPE(sym.st_info);
  if (sym.st_value == 0 && sym.st_shndx != SHN_ABS && type != STT_TLS) {
    return false;
  }
  constexpr unsigned kAllowed = (1u << STT_NOTYPE) | (1u << STT_OBJECT) |
                                (1u << STT_FUNC) | (1u << STT_COMMON) |
                                (1u << STT_TLS) | (1u << STT_GNU_IFUNC);
  return ((1u << type) & kAllowed) != 0;
}

enum class Found { kNo, kYes, kDeferred };

bool SameName(const char* a, const char* b) {
  const char* rest = SkipPrefix(a, b);
  return rest != nullptr && *rest == '\0';
}

// Looks one name up in one object, as the loader does for a lookup that asks
// for no version but for the newest one (dlsym).
Found LookUp(const HashTable& t, NextSymbol& item) {
  if (!MaybeDefines(t, item.hash)) return Found::kNo;
  uint32_t index = t.buckets[item.hash % t.buckets_count];
  if (index == 0 || index < t.first_hashed) return Found::kNo;
  const ElfW(Sym)* chosen = nullptr;
  const ElfW(Sym)* versioned = nullptr;
  int versioned_count = 0;
  for (;; ++index) {
    uint32_t chain_hash = t.chains[index - t.first_hashed];
    const ElfW(Sym)& sym = t.symbols[index];
    if ((chain_hash | 1) == (item.hash | 1) && Bindable(sym) &&
        SameName(t.strings + sym.st_name, item.name)) {
      ElfW(Half) version =
          t.versions ? static_cast<ElfW(Half)>(t.versions[index] & 0x7fff) : 0;
      // Index 0 is local and 1 the unversioned global: taken at once. A
      // versioned one only if it is not hidden (the default version, not a
      // compatibility one), and only if it is the one such.
      if (version < 2) {
        chosen = &sym;
        break;
      }
      if ((t.versions[index] & 0x8000) == 0 && versioned_count++ == 0) {
        versioned = &sym;
      }
    }
    if (chain_hash & 1) break;  // the end of the bucket's chain
  }
  if (chosen == nullptr && versioned_count == 1) chosen = versioned;
  if (chosen == nullptr) return Found::kNo;
  unsigned binding = ELF64_ST_BIND(chosen->st_info);
  // A local symbol ends the search in this object, and the loader goes on
  // to the next one.
  if (binding != STB_GLOBAL && binding != STB_WEAK) {
    if (binding == STB_GNU_UNIQUE) {
      item.deferred = true;
      return Found::kDeferred;
    }
    return Found::kNo;
  }
  unsigned type = ELF64_ST_TYPE(chosen->st_info);
  if (type == STT_GNU_IFUNC || type == STT_TLS) {
    item.deferred = true;
    return Found::kDeferred;
  }
  uintptr_t base = chosen->st_shndx == SHN_ABS ? 0 : t.base;
  item.address = reinterpret_cast<void*>(base + chosen->st_value);
  return Found::kYes;
}

bool Contains(const dl_phdr_info* info, uintptr_t address) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (address >= start && address < start + ph.p_memsz) return true;
  }
  return false;
}

// The loader names the vDSO's entry after the kernel's soname for it.
bool IsVdso(const char* name) {
  return name != nullptr && (SkipPrefix(name, "linux-vdso") != nullptr ||
                             SkipPrefix(name, "linux-gate") != nullptr);
}

struct Walk {
  uintptr_t self;
  NextSymbol* items;
  int count;
  int open;  // items neither found nor deferred
  bool past_self = false;
  bool usable = true;
};

int VisitObject(dl_phdr_info* info, size_t, void* data) {
  Walk& walk = *static_cast<Walk*>(data);
  if (!walk.past_self) {
    walk.past_self = Contains(info, walk.self);
    return 0;
  }
  // The vDSO is on the loader's list but in no search scope.
  if (IsVdso(info->dlpi_name)) return 0;
  HashTable table;
  switch (ReadTable(info, &table)) {
    case TableState::kNone:
      return 0;
    case TableState::kUnusable:
      walk.usable = false;
      return 1;
    case TableState::kOk:
      break;
  }
  for (int i = 0; i < walk.count; ++i) {
    NextSymbol& item = walk.items[i];
    if (item.address != nullptr || item.deferred) continue;
    if (LookUp(table, item) != Found::kNo) --walk.open;
  }
  return walk.open == 0 ? 1 : 0;
}

}  // namespace

namespace internal {

bool WalkHashTables(NextSymbol* items, int count) {
  for (int i = 0; i < count; ++i) {
    items[i].address = nullptr;
    items[i].deferred = false;
  }
  // Both change what the loader binds a name to: an auditor may rebind
  // every symbol, and dynamic weak makes a later strong definition win.
  if (EnvValue("LD_AUDIT") != nullptr ||
      EnvValue("LD_DYNAMIC_WEAK") != nullptr) {
    return false;
  }
  // dlsym's RTLD_NEXT is relative to the object that calls it: this one.
  Walk walk{reinterpret_cast<uintptr_t>(&FindNextSymbols), items, count,
            count};
  dl_iterate_phdr(VisitObject, &walk);
  return walk.past_self && walk.usable;
}

}  // namespace internal

int FindNextSymbols(NextSymbol* items, int count) {
  bool walked = internal::WalkHashTables(items, count);
  int asked = 0;
  for (int i = 0; i < count; ++i) {
    NextSymbol& item = items[i];
    if (walked && item.address != nullptr) continue;
    item.address = dlsym(RTLD_NEXT, item.name);
    ++asked;
  }
  return asked;
}

}  // namespace closeaudit::shim
