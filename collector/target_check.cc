#include "collector/target_check.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace closeaudit {
namespace {

bool Executable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

struct ElfFacts {
  bool elf = false;
  bool has_interp = false;
  bool go = false;
};

ElfFacts Inspect(const std::string& path) {
  ElfFacts facts;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return facts;
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  if (elf != nullptr && elf_kind(elf) == ELF_K_ELF) {
    facts.elf = true;
    size_t phnum = 0;
    if (elf_getphdrnum(elf, &phnum) == 0) {
      for (size_t i = 0; i < phnum; ++i) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_INTERP) {
          facts.has_interp = true;
        }
      }
    }
    size_t shstrndx = 0;
    if (elf_getshdrstrndx(elf, &shstrndx) == 0) {
      for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr;
           scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh)) continue;
        const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
        // Every Go toolchain writes these; nothing else does.
        if (name && (strcmp(name, ".go.buildinfo") == 0 ||
                     strcmp(name, ".note.go.buildid") == 0 ||
                     strcmp(name, ".gopclntab") == 0)) {
          facts.go = true;
        }
      }
    }
  }
  if (elf) elf_end(elf);
  close(fd);
  return facts;
}

}  // namespace

std::string ResolveProgram(const std::string& command) {
  std::string path;
  if (command.find('/') != std::string::npos) {
    path = command;
  } else {
    const char* env = getenv("PATH");
    for (absl::string_view dir : absl::StrSplit(env ? env : "/usr/bin:/bin", ':')) {
      std::string candidate =
          absl::StrFormat("%s/%s", dir.empty() ? "." : dir, command);
      if (Executable(candidate)) {
        path = candidate;
        break;
      }
    }
  }
  if (path.empty() || !Executable(path)) return "";
  // A script runs its interpreter: that is the binary the loader sees.
  std::ifstream in(path, std::ios::binary);
  std::string first;
  std::getline(in, first);
  if (first.rfind("#!", 0) == 0) {
    std::string rest = first.substr(2);
    size_t start = rest.find_first_not_of(" \t");
    if (start == std::string::npos) return path;
    size_t end = rest.find_first_of(" \t\r", start);
    std::string interp = rest.substr(start, end == std::string::npos
                                                ? std::string::npos
                                                : end - start);
    if (Executable(interp)) return interp;
  }
  return path;
}

std::optional<std::string> WhyUnauditable(const std::string& path) {
  struct stat st;
  if (path.empty() || stat(path.c_str(), &st) != 0) return std::nullopt;
  if (((st.st_mode & S_ISUID) && st.st_uid != geteuid()) ||
      ((st.st_mode & S_ISGID) && st.st_gid != getegid())) {
    return absl::StrFormat(
        "%s is setuid or setgid: the dynamic loader ignores LD_PRELOAD for "
        "such programs, so closeaudit cannot see into it",
        path);
  }
  ElfFacts facts = Inspect(path);
  if (!facts.elf) return std::nullopt;
  if (facts.go) {
    return absl::StrFormat(
        "%s is a Go program: Go makes its system calls directly, not through "
        "the C library, so closeaudit cannot see its sockets",
        path);
  }
  if (!facts.has_interp) {
    return absl::StrFormat(
        "%s is statically linked: there is no dynamic loader to load "
        "libcloseaudit.so into it, so nothing in it can be audited",
        path);
  }
  return std::nullopt;
}

}  // namespace closeaudit
