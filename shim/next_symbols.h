// What dlsym(RTLD_NEXT, name) would return, for many names at once.
//
// The shim resolves its 44 hooks in every process it is loaded into, most of
// which (a shell's /bin/true, sed, grep) never make a socket. dlsym costs
// about 800 instructions a name: it catches errors with setjmp, finds the
// caller's object, and walks the search scope anew for each name. Here one
// walk over the loaded objects (dl_iterate_phdr, in the loader's order, which
// is its search order for the objects loaded at start) looks every name up
// in each object's GNU hash table, with the loader's own rules: a symbol
// with no value, of a type that cannot be bound, or local, is not a
// definition; with no version asked for, an unversioned symbol or one of the
// object's first version is taken at once, else the one default version if
// there is exactly one; the first object that defines the name wins, weak or
// not.
//
// What those rules do not cover is left to dlsym: an indirect function
// (STT_GNU_IFUNC, whose resolver the loader must run), a thread-local or
// unique symbol, an object with no GNU hash table, a name not found at all,
// and everything while LD_AUDIT or LD_DYNAMIC_WEAK is set (either changes
// what dlsym answers). next_symbols_test compares the result with dlsym for
// every symbol of every object loaded after the test.
//
// Not async-signal-safe (dl_iterate_phdr takes the loader's lock): the shim
// calls it from its constructor. The walk takes every object after the
// shim on the loader's list to be in the search scope, as the objects
// loaded at start are; an object that another library's constructor had
// dlopen'ed with RTLD_LOCAL before the shim's ran would be searched where
// dlsym would not search it (no such library is known).
#ifndef CLOSEAUDIT_SHIM_NEXT_SYMBOLS_H_
#define CLOSEAUDIT_SHIM_NEXT_SYMBOLS_H_

#include <cstdint>

namespace closeaudit::shim {

// The GNU hash of a symbol name (the one DT_GNU_HASH tables are built with).
constexpr uint32_t GnuHash(const char* name) {
  uint32_t h = 5381;
  for (; *name; ++name) h = h * 33 + static_cast<unsigned char>(*name);
  return h;
}

struct NextSymbol {
  const char* name;
  uint32_t hash;  // GnuHash(name)
  void* address = nullptr;
  // Set by the walk when the name's definition is one only dlsym can
  // resolve (its address is then dlsym's).
  bool deferred = false;
};

// Fills each item's address with what dlsym(RTLD_NEXT, name) returns when
// called from the object this code is linked into, or null if nothing
// defines the name. Returns how many items needed dlsym.
int FindNextSymbols(NextSymbol* items, int count);

namespace internal {

// The first step alone: what the walk over the hash tables found, with
// null where dlsym is needed (`deferred`, or not found). Returns false when the whole walk must be left
// to dlsym (the caller's object was not found, or an object on the way has
// no GNU hash table, or LD_AUDIT or LD_DYNAMIC_WEAK is set). For the tests.
bool WalkHashTables(NextSymbol* items, int count);

}  // namespace internal
}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_NEXT_SYMBOLS_H_
