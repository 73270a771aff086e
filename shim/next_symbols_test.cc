// FindNextSymbols against the loader itself: for every name that any object
// loaded after this test defines (libstdc++, libm, libgcc_s, libc, the
// loader), the walk must give what dlsym(RTLD_NEXT, name) gives from here,
// and must have found the hooks' names without help.
#include "shim/next_symbols.h"

#include <dlfcn.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <link.h>

#include <set>
#include <string>
#include <vector>

namespace closeaudit::shim {
namespace {

struct Names {
  uintptr_t self;
  bool past_self = false;
  std::set<std::string> all;
  int multi_version = 0;  // names with a hidden version beside another
};

uintptr_t At(uintptr_t base, ElfW(Addr) value) {
  return value < base ? base + value : value;
}

// Every defined symbol in the object's GNU hash table: all its chains.
int CollectNames(dl_phdr_info* info, size_t, void* data) {
  Names& names = *static_cast<Names*>(data);
  const ElfW(Dyn)* dyn = nullptr;
  bool has_self = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_DYNAMIC) {
      dyn = reinterpret_cast<const ElfW(Dyn)*>(start);
    }
    if (ph.p_type == PT_LOAD && names.self >= start &&
        names.self < start + ph.p_memsz) {
      has_self = true;
    }
  }
  if (!names.past_self) {
    names.past_self = has_self;
    return 0;
  }
  if (dyn == nullptr) return 0;
  const uint32_t* hash = nullptr;
  const ElfW(Sym)* syms = nullptr;
  const char* strs = nullptr;
  const ElfW(Half)* vers = nullptr;
  for (; dyn->d_tag != DT_NULL; ++dyn) {
    uintptr_t p = At(info->dlpi_addr, dyn->d_un.d_ptr);
    if (dyn->d_tag == DT_GNU_HASH) hash = reinterpret_cast<const uint32_t*>(p);
    if (dyn->d_tag == DT_SYMTAB) syms = reinterpret_cast<const ElfW(Sym)*>(p);
    if (dyn->d_tag == DT_STRTAB) strs = reinterpret_cast<const char*>(p);
    if (dyn->d_tag == DT_VERSYM) vers = reinterpret_cast<const ElfW(Half)*>(p);
  }
  if (hash == nullptr || syms == nullptr || strs == nullptr) return 0;
  uint32_t nbuckets = hash[0], symoffset = hash[1], bloom = hash[2];
  const uint32_t* buckets = reinterpret_cast<const uint32_t*>(
      reinterpret_cast<const ElfW(Addr)*>(hash + 4) + bloom);
  const uint32_t* chains = buckets + nbuckets;
  std::set<std::string> hidden, shown;
  for (uint32_t b = 0; b < nbuckets; ++b) {
    for (uint32_t i = buckets[b]; i >= symoffset && i != 0; ++i) {
      if (syms[i].st_shndx != SHN_UNDEF) {
        std::string name = strs + syms[i].st_name;
        names.all.insert(name);
        if (vers && (vers[i] & 0x8000)) hidden.insert(name);
        if (vers && !(vers[i] & 0x8000)) shown.insert(name);
      }
      if (chains[i - symoffset] & 1) break;
    }
  }
  for (const std::string& n : hidden) names.multi_version += shown.count(n);
  return 0;
}

TEST(NextSymbols, AgreesWithDlsymForEveryNameDefinedAfterThisObject) {
  Names names;
  names.self = reinterpret_cast<uintptr_t>(&FindNextSymbols);
  dl_iterate_phdr(CollectNames, &names);
  ASSERT_TRUE(names.past_self);
  ASSERT_GT(names.all.size(), 1000u);
  // The names that exist in several versions are the ones a lookup can get
  // wrong (libc's posix_spawn, realpath, pthread_cond_wait...).
  ASSERT_GT(names.multi_version, 10);

  std::vector<std::string> list(names.all.begin(), names.all.end());
  std::vector<NextSymbol> items(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    items[i].name = list[i].c_str();
    items[i].hash = GnuHash(list[i].c_str());
  }
  int asked = FindNextSymbols(items.data(), static_cast<int>(items.size()));
  // Only indirect functions and the like go to dlsym: a small part.
  EXPECT_LT(asked, static_cast<int>(items.size()) / 4);
  int differ = 0;
  for (const NextSymbol& item : items) {
    void* expected = dlsym(RTLD_NEXT, item.name);
    if (item.address != expected && ++differ <= 20) {
      ADD_FAILURE() << item.name << ": " << item.address << ", dlsym "
                    << expected;
    }
  }
  EXPECT_EQ(differ, 0);
}

TEST(NextSymbols, FindsTheHooksWithoutDlsym) {
  const char* hooks[] = {"socket", "accept", "accept4", "close", "read",
                         "__read_chk", "recv", "recvmsg", "fork", "vfork",
                         "posix_spawn", "posix_spawnp", "clone", "execve",
                         "close_range", "closefrom", "fclose", "syscall"};
  std::vector<NextSymbol> items;
  for (const char* name : hooks) {
    NextSymbol item;
    item.name = name;
    item.hash = GnuHash(name);
    items.push_back(item);
  }
  ASSERT_TRUE(internal::WalkHashTables(items.data(),
                                       static_cast<int>(items.size())));
  for (const NextSymbol& item : items) {
    EXPECT_FALSE(item.deferred) << item.name;
    EXPECT_NE(item.address, nullptr) << item.name;
    EXPECT_EQ(item.address, dlsym(RTLD_NEXT, item.name)) << item.name;
  }
}

TEST(NextSymbols, NamesNobodyDefinesAreNull) {
  NextSymbol item;
  item.name = "closeaudit_no_such_symbol";
  item.hash = GnuHash(item.name);
  EXPECT_EQ(FindNextSymbols(&item, 1), 1);  // dlsym has the last word
  EXPECT_EQ(item.address, nullptr);
}

TEST(NextSymbols, HashIsTheGnuOne) {
  // Values from the GNU hash function's definition (h = h * 33 + c).
  EXPECT_EQ(GnuHash(""), 5381u);
  EXPECT_EQ(GnuHash("printf"), 0x156b2bb8u);
  EXPECT_EQ(GnuHash("exit"), 0x7c967e3fu);
}

TEST(NextSymbols, AnAuditorLeavesItAllToDlsym) {
  setenv("LD_AUDIT", "", 1);
  NextSymbol item;
  item.name = "close";
  item.hash = GnuHash(item.name);
  EXPECT_FALSE(internal::WalkHashTables(&item, 1));
  EXPECT_EQ(FindNextSymbols(&item, 1), 1);
  EXPECT_EQ(item.address, dlsym(RTLD_NEXT, "close"));
  unsetenv("LD_AUDIT");
}

}  // namespace
}  // namespace closeaudit::shim
