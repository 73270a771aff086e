// Environment lookups for the shim's start, without libc's getenv, and the
// prefix compare they (and the start's symbol lookup) share instead of libc's
// string functions.
//
// Every process the library is loaded into asks for half a dozen variables
// at start. getenv's first call goes through the loader's lazy binding (a
// symbol lookup, with the vector registers saved and restored) and each call
// scans the whole environment; this reads `environ` directly, which the
// loader bound when it loaded the shim. As getenv, it must not race a
// setenv: the shim reads it at load and when an image starts.
#ifndef CLOSEAUDIT_SHIM_ENV_H_
#define CLOSEAUDIT_SHIM_ENV_H_

#include <unistd.h>

namespace closeaudit::shim {

// What follows `prefix` in `s`, or null if `s` does not start with it.
// (strncmp's first call would cost a lazy binding of an indirect function.)
inline const char* SkipPrefix(const char* s, const char* prefix) {
  while (*prefix != '\0' && *s == *prefix) {
    ++s;
    ++prefix;
  }
  return *prefix == '\0' ? s : nullptr;
}

// The value of `name` in the environment, or null.
inline const char* EnvValue(const char* name) {
  if (environ == nullptr) return nullptr;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const char* rest = SkipPrefix(*entry, name);
    if (rest != nullptr && *rest == '=') return rest + 1;
  }
  return nullptr;
}

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_ENV_H_
