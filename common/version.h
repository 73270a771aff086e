// The version of this build: meson's project() version, which meson.build
// passes to every C++ compile as CLOSEAUDIT_VERSION ("0.1.0") and
// CLOSEAUDIT_VERSION_NUMBER (the same packed, as the library's hello carries
// it in wire::HelloMsg::lib_version).
#ifndef CLOSEAUDIT_COMMON_VERSION_H_
#define CLOSEAUDIT_COMMON_VERSION_H_

#include <stdint.h>

#if !defined(CLOSEAUDIT_VERSION) || !defined(CLOSEAUDIT_VERSION_NUMBER)
#error "CLOSEAUDIT_VERSION and CLOSEAUDIT_VERSION_NUMBER come from meson.build"
#endif

namespace closeaudit {

inline constexpr char kVersion[] = CLOSEAUDIT_VERSION;
// major << 16 | minor << 8 | patch.
inline constexpr uint32_t kVersionNumber = CLOSEAUDIT_VERSION_NUMBER;

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COMMON_VERSION_H_
