#include "collector/symbolizer.h"

#include <dlfcn.h>
#include <elf.h>
#include <limits.h>
#include <link.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// tests/data/symbolize_target.c, built as a shared object with -g -O1 (path in
// $SYMBOLIZE_TARGET, source in $SYMBOLIZE_TARGET_SRC), and loaded into this
// process so that real return addresses can be resolved.
struct Target {
  std::string path;
  std::string src;
  void* handle = nullptr;
  uint64_t load_bias = 0;
};

void LoadTarget(Target* target) {
  const char* path = std::getenv("SYMBOLIZE_TARGET");
  const char* src = std::getenv("SYMBOLIZE_TARGET_SRC");
  ASSERT_NE(path, nullptr) << "set SYMBOLIZE_TARGET to the shared object "
                              "built from tests/data/symbolize_target.c";
  ASSERT_NE(src, nullptr) << "set SYMBOLIZE_TARGET_SRC to the path of "
                             "tests/data/symbolize_target.c";
  target->path = path;
  target->src = src;
  target->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(target->handle, nullptr) << dlerror();
  link_map* map = nullptr;
  ASSERT_EQ(dlinfo(target->handle, RTLD_DI_LINKMAP, &map), 0) << dlerror();
  target->load_bias = map->l_addr;  // Same as dl_iterate_phdr's dlpi_addr.
}

// Line of the `/* LINE:<marker> */` comment in the target's source.
int MarkerLine(const std::string& src, const std::string& marker) {
  std::ifstream in(src);
  EXPECT_TRUE(in.good()) << "cannot read " << src;
  const std::string needle = "/* LINE:" + marker + " */";
  std::string text;
  for (int line = 1; std::getline(in, text); ++line) {
    if (text.find(needle) != std::string::npos) return line;
  }
  ADD_FAILURE() << "no " << needle << " in " << src;
  return -1;
}

// Calls `function` in the target and returns the address inside the call to
// target_callee, as the shim would report it (return address minus 1).
uint64_t CallSite(const Target& target, const char* function) {
  auto fn = reinterpret_cast<void (*)(int)>(dlsym(target.handle, function));
  auto* last_return =
      static_cast<void* volatile*>(dlsym(target.handle, "target_last_return"));
  EXPECT_NE(fn, nullptr) << function;
  EXPECT_NE(last_return, nullptr);
  if (fn == nullptr || last_return == nullptr) return 0;
  fn(1);
  return reinterpret_cast<uint64_t>(*last_return) - 1;
}

// The GNU build-id of the object loaded at `load_bias`, read from its notes
// in memory, the way the shim gets it.
std::string LoadedBuildId(uint64_t load_bias) {
  struct Search {
    uint64_t load_bias;
    std::string build_id;
  } search{load_bias, ""};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto* s = static_cast<Search*>(data);
        if (info->dlpi_addr != s->load_bias) return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_NOTE) continue;
          const char* p =
              reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
          const char* end = p + ph.p_memsz;
          while (p + sizeof(ElfW(Nhdr)) <= end) {
            const auto* note = reinterpret_cast<const ElfW(Nhdr)*>(p);
            const char* name = p + sizeof(*note);
            const char* desc = name + ((note->n_namesz + 3) & ~3u);
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
                std::string(name, 4) == std::string("GNU", 4)) {
              s->build_id.assign(desc, note->n_descsz);
              return 1;
            }
            p = desc + ((note->n_descsz + 3) & ~3u);
          }
        }
        return 0;
      },
      &search);
  return search.build_id;
}

bool SameFile(const std::string& a, const std::string& b) {
  std::error_code error;
  return std::filesystem::equivalent(a, b, error);
}

// A temp file with the given contents, removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/symbolizer_test_XXXXXX";
    const int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    path_ = name;
    EXPECT_EQ(write(fd, contents.data(), contents.size()),
              static_cast<ssize_t>(contents.size()));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void ExpectUnsymbolized(const std::vector<Frame>& frames,
                        const std::string& module, uint64_t address) {
  ASSERT_THAT(frames, SizeIs(1));
  EXPECT_EQ(frames[0].function, "");
  EXPECT_EQ(frames[0].file, "");
  EXPECT_EQ(frames[0].line, 0);
  EXPECT_EQ(frames[0].module, module);
  EXPECT_EQ(frames[0].address, address);
  EXPECT_FALSE(frames[0].inlined);
}

TEST(Symbolizer, ResolvesCallLineInSharedObject) {
  Target target;
  ASSERT_NO_FATAL_FAILURE(LoadTarget(&target));
  const uint64_t pc = CallSite(target, "target_leaf");
  Symbolizer symbolizer;
  const std::vector<Frame> frames =
      symbolizer.Resolve({target.path, "", target.load_bias}, pc);
  ASSERT_THAT(frames, SizeIs(1));
  EXPECT_EQ(frames[0].function, "target_leaf");
  EXPECT_TRUE(SameFile(frames[0].file, target.src)) << frames[0].file;
  EXPECT_TRUE(frames[0].file.starts_with("/")) << frames[0].file;
  EXPECT_EQ(frames[0].line, MarkerLine(target.src, "leaf_call"));
  EXPECT_EQ(frames[0].module, target.path);
  EXPECT_EQ(frames[0].address, pc);
  EXPECT_FALSE(frames[0].inlined);
  EXPECT_THAT(symbolizer.warnings(), SizeIs(0));
}

TEST(Symbolizer, ResolvesInlineChainInnermostFirst) {
  Target target;
  ASSERT_NO_FATAL_FAILURE(LoadTarget(&target));
  const uint64_t pc = CallSite(target, "target_outer");
  Symbolizer symbolizer;
  const std::vector<Frame> frames =
      symbolizer.Resolve({target.path, "", target.load_bias}, pc);
  ASSERT_THAT(frames, SizeIs(2));
  EXPECT_EQ(frames[0].function, "target_inlined");
  EXPECT_TRUE(frames[0].inlined);
  EXPECT_EQ(frames[0].line, MarkerLine(target.src, "inline_call"));
  EXPECT_TRUE(SameFile(frames[0].file, target.src)) << frames[0].file;
  EXPECT_EQ(frames[1].function, "target_outer");
  EXPECT_FALSE(frames[1].inlined);
  EXPECT_EQ(frames[1].line, MarkerLine(target.src, "outer_call"));
  EXPECT_TRUE(SameFile(frames[1].file, target.src)) << frames[1].file;
  for (const Frame& frame : frames) {
    EXPECT_EQ(frame.module, target.path);
    EXPECT_EQ(frame.address, pc);
  }
}

TEST(Symbolizer, MatchingBuildIdResolves) {
  Target target;
  ASSERT_NO_FATAL_FAILURE(LoadTarget(&target));
  const std::string build_id = LoadedBuildId(target.load_bias);
  ASSERT_FALSE(build_id.empty()) << "target was linked without --build-id";
  Symbolizer symbolizer;
  const std::vector<Frame> frames =
      symbolizer.Resolve({target.path, build_id, target.load_bias},
                         CallSite(target, "target_leaf"));
  ASSERT_THAT(frames, SizeIs(1));
  EXPECT_EQ(frames[0].function, "target_leaf");
  EXPECT_THAT(symbolizer.warnings(), SizeIs(0));
}

TEST(Symbolizer, BuildIdMismatchWarnsInsteadOfGuessing) {
  Target target;
  ASSERT_NO_FATAL_FAILURE(LoadTarget(&target));
  const uint64_t pc = CallSite(target, "target_leaf");
  std::string wrong_id = LoadedBuildId(target.load_bias);
  ASSERT_FALSE(wrong_id.empty());
  wrong_id[0] = static_cast<char>(wrong_id[0] ^ 0xff);
  Symbolizer symbolizer;
  ExpectUnsymbolized(
      symbolizer.Resolve({target.path, wrong_id, target.load_bias}, pc),
      target.path, pc);
  ExpectUnsymbolized(
      symbolizer.Resolve({target.path, wrong_id, target.load_bias}, pc),
      target.path, pc);
  ASSERT_THAT(symbolizer.warnings(), SizeIs(1));  // Reported once.
  EXPECT_THAT(symbolizer.warnings()[0], HasSubstr("build-id mismatch"));
  EXPECT_THAT(symbolizer.warnings()[0], HasSubstr(target.path));
}

TEST(Symbolizer, MissingFileWarnsOnce) {
  const std::string path = "/nonexistent/closeaudit/libmissing.so";
  Symbolizer symbolizer;
  ExpectUnsymbolized(symbolizer.Resolve({path, "", 0}, 0x1234), path, 0x1234);
  ExpectUnsymbolized(symbolizer.Resolve({path, "", 0}, 0x5678), path, 0x5678);
  ASSERT_THAT(symbolizer.warnings(), SizeIs(1));
  EXPECT_THAT(symbolizer.warnings()[0], HasSubstr("cannot open " + path));
}

TEST(Symbolizer, UnusableFilesAreUnsymbolized) {
  Target target;
  ASSERT_NO_FATAL_FAILURE(LoadTarget(&target));
  std::string elf_head(256, '\0');
  std::ifstream(target.path, std::ios::binary).read(elf_head.data(), 256);
  TempFile garbage("this is not an ELF file\n");
  TempFile empty("");
  TempFile truncated(elf_head);
  const std::vector<std::string> paths = {
      garbage.path(), empty.path(), truncated.path(), "/tmp", "/dev/null", ""};
  Symbolizer symbolizer;
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    ExpectUnsymbolized(symbolizer.Resolve({path, "", 0}, 0x1100), path, 0x1100);
  }
  EXPECT_THAT(symbolizer.warnings(), SizeIs(paths.size()));
}

// Only code addresses get answers: DWARF for discarded functions claims to
// start at 0, so the ELF header or data would otherwise "resolve".
TEST(Symbolizer, AddressesOutsideCodeAreUnsymbolized) {
  Target target;
  ASSERT_NO_FATAL_FAILURE(LoadTarget(&target));
  const uint64_t data =
      reinterpret_cast<uint64_t>(dlsym(target.handle, "target_sink"));
  ASSERT_NE(data, 0u);
  Symbolizer symbolizer;
  for (uint64_t pc :
       {uint64_t{0}, uint64_t{1}, target.load_bias - 1, target.load_bias,
        target.load_bias + 0x40, data, UINT64_MAX, UINT64_MAX / 2}) {
    SCOPED_TRACE(pc);
    ExpectUnsymbolized(
        symbolizer.Resolve({target.path, "", target.load_bias}, pc),
        target.path, pc);
  }
  ExpectUnsymbolized(symbolizer.Resolve({target.path, "", UINT64_MAX}, 5),
                     target.path, 5);
}

TEST(Symbolizer, SameCodeAtAnotherLoadBiasResolvesAlike) {
  Target target;
  ASSERT_NO_FATAL_FAILURE(LoadTarget(&target));
  const uint64_t pc = CallSite(target, "target_leaf");
  const uint64_t shift = 0x10000000;
  Symbolizer symbolizer;
  const std::vector<Frame> first =
      symbolizer.Resolve({target.path, "", target.load_bias}, pc);
  const std::vector<Frame> moved = symbolizer.Resolve(
      {target.path, "", target.load_bias + shift}, pc + shift);
  ASSERT_THAT(first, SizeIs(1));
  ASSERT_THAT(moved, SizeIs(1));
  EXPECT_EQ(moved[0].function, first[0].function);
  EXPECT_EQ(moved[0].line, first[0].line);
  EXPECT_EQ(moved[0].address, pc + shift);  // Cached frames get the new one.
}

__attribute__((noinline)) uint64_t ReturnAddress() {
  return reinterpret_cast<uint64_t>(__builtin_return_address(0));
}

// The test binary itself is an executable (PIE or not, depending on flags),
// which libdwfl places differently from a shared object.
TEST(Symbolizer, ResolvesMainExecutable) {
  const int expected_line = __LINE__ + 1;
  const uint64_t pc = ReturnAddress() - 1;
  uint64_t load_bias = 0;
  dl_iterate_phdr(  // The first entry is the main program.
      [](dl_phdr_info* info, size_t, void* data) {
        *static_cast<uint64_t*>(data) = info->dlpi_addr;
        return 1;
      },
      &load_bias);
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe");
  Symbolizer symbolizer;
  const std::vector<Frame> frames =
      symbolizer.Resolve({exe, "", load_bias}, pc);
  ASSERT_FALSE(frames.empty());
  EXPECT_THAT(frames.back().function, HasSubstr("ResolvesMainExecutable"));
  EXPECT_EQ(frames.back().line, expected_line);
  EXPECT_TRUE(frames.back().file.ends_with("symbolizer_test.cc"))
      << frames.back().file;
  EXPECT_TRUE(frames.back().file.starts_with("/")) << frames.back().file;
}

// libc usually has no DWARF installed; the symbol table must still name it.
TEST(Symbolizer, NamesFunctionsFromSymbolTable) {
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(libc, nullptr) << dlerror();
  void* getpid_fn = dlsym(libc, "getpid");
  ASSERT_NE(getpid_fn, nullptr);
  Dl_info info;
  link_map* map = nullptr;
  ASSERT_NE(dladdr1(getpid_fn, &info, reinterpret_cast<void**>(&map),
                    RTLD_DL_LINKMAP),
            0);
  Symbolizer symbolizer;
  const std::vector<Frame> frames =
      symbolizer.Resolve({info.dli_fname, "", map->l_addr},
                         reinterpret_cast<uint64_t>(getpid_fn) + 1);
  ASSERT_FALSE(frames.empty());
  EXPECT_THAT(frames.back().function, HasSubstr("getpid"));
  dlclose(libc);
}

}  // namespace
}  // namespace closeaudit
