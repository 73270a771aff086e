#include "collector/module_finder.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace closeaudit {
namespace {

using internal::Mapping;
using internal::ModuleFromFile;
using internal::ParseMapsLine;
using internal::ParsePerfMapLine;

struct Loaded {
  uintptr_t address;
  uintptr_t bias = 0;
  uintptr_t lo = ~uintptr_t{0}, hi = 0;
  bool found = false;
};

// The loader's own view of the object holding `address`.
Loaded LoaderView(uintptr_t address) {
  Loaded l{address};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto& l = *static_cast<Loaded*>(data);
        uintptr_t lo = ~uintptr_t{0}, hi = 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          lo = std::min<uintptr_t>(lo, info->dlpi_addr + ph.p_vaddr);
          hi = std::max<uintptr_t>(hi, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
        }
        if (l.address < lo || l.address >= hi) return 0;
        l.bias = info->dlpi_addr;
        l.lo = lo;
        l.hi = hi;
        l.found = true;
        return 1;
      },
      &l);
  return l;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A /proc of one process: a copy of this process's maps under a fake pid.
class FakeProc {
 public:
  FakeProc() {
    root_ = std::filesystem::temp_directory_path() /
            ("module_finder_test." + std::to_string(getpid()));
    std::filesystem::create_directories(root_ / "4242");
    std::ofstream(root_ / "4242" / "maps") << ReadFile("/proc/self/maps");
  }
  ~FakeProc() { std::filesystem::remove_all(root_); }
  void AddMaps(const std::string& lines) {
    std::ofstream(root_ / "4242" / "maps", std::ios::app) << lines;
  }
  std::string root() const { return root_.string(); }

 private:
  std::filesystem::path root_;
};

ProcessRecord Hello(uint32_t stream, uint32_t pid) {
  ProcessRecord p;
  p.stream = stream;
  p.pid = pid;
  return p;
}

StackRecord Stack(uint32_t stream, std::vector<uint64_t> frames) {
  StackRecord s;
  s.stream = stream;
  s.ref = 8;
  s.frames = std::move(frames);
  return s;
}

uintptr_t LibcFunction() {
  return reinterpret_cast<uintptr_t>(dlsym(RTLD_DEFAULT, "getpid"));
}

TEST(ParseMapsLine, ReadsEveryField) {
  Mapping m;
  ASSERT_TRUE(ParseMapsLine(
      "7f1a2b3c4000-7f1a2b3c8000 r-xp 00002000 fe:01 123456   "
      "/usr/lib/x86_64-linux-gnu/libfoo.so.1\n",
      &m));
  EXPECT_EQ(m.start, 0x7f1a2b3c4000u);
  EXPECT_EQ(m.end, 0x7f1a2b3c8000u);
  EXPECT_EQ(m.offset, 0x2000u);
  EXPECT_TRUE(m.executable);
  EXPECT_EQ(m.device_major, 0xfeu);
  EXPECT_EQ(m.device_minor, 1u);
  EXPECT_EQ(m.inode, 123456u);
  EXPECT_EQ(m.path, "/usr/lib/x86_64-linux-gnu/libfoo.so.1");
}

TEST(ParseMapsLine, AnonymousAndGarbage) {
  Mapping m;
  ASSERT_TRUE(ParseMapsLine("7ffd1000-7ffd2000 rw-p 00000000 00:00 0\n", &m));
  EXPECT_FALSE(m.executable);
  EXPECT_EQ(m.path, "");
  EXPECT_FALSE(ParseMapsLine("", &m));
  EXPECT_FALSE(ParseMapsLine("not a mapping", &m));
  EXPECT_FALSE(ParseMapsLine("2000-1000 r-xp 0 00:00 0 /x", &m));  // end < start
}

TEST(ParsePerfMapLine, ReadsWhatRuntimesWrite) {
  uint64_t start, size;
  std::string name;
  // V8 (--perf-basic-prof): bare hex, a name with spaces.
  ASSERT_TRUE(ParsePerfMapLine("3c1e0a04 1c4 LazyCompile:*onData /srv/app.js:10",
                               &start, &size, &name));
  EXPECT_EQ(start, 0x3c1e0a04u);
  EXPECT_EQ(size, 0x1c4u);
  EXPECT_EQ(name, "LazyCompile:*onData /srv/app.js:10");
  // CPython (-X perf) and others: 0x prefixes.
  ASSERT_TRUE(ParsePerfMapLine("0x7f00aa000000 0x40 py::handle:/srv/app.py\r",
                               &start, &size, &name));
  EXPECT_EQ(start, 0x7f00aa000000u);
  EXPECT_EQ(name, "py::handle:/srv/app.py");
  EXPECT_FALSE(ParsePerfMapLine("", &start, &size, &name));
  EXPECT_FALSE(ParsePerfMapLine("zz 10 f", &start, &size, &name));
  EXPECT_FALSE(ParsePerfMapLine("1000 0 empty", &start, &size, &name));
  EXPECT_FALSE(ParsePerfMapLine("1000 10", &start, &size, &name));
  EXPECT_FALSE(ParsePerfMapLine("1000 10 ", &start, &size, &name));
  EXPECT_FALSE(ParsePerfMapLine("11111111111111111 10 f", &start, &size, &name));
  EXPECT_FALSE(ParsePerfMapLine("ffffffffffffffff 10 wraps", &start, &size, &name));
}

TEST(ModuleFinder, NamesJitCodeFromThePerfMap) {
  FakeProc proc;
  proc.AddMaps("7f0000000000-7f0000010000 r-xp 00000000 00:00 0 \n");
  std::filesystem::path dir = proc.root() + "/tmp";
  std::filesystem::create_directories(dir);
  {
    std::ofstream map(dir / "perf-4242.map");
    map << "7f0000000000 80 LazyCompile:*onData /srv/app.js:10\n"
        << "not a line\n"
        << "7f0000000100 40 Builtin: CallFunction\n";
  }
  ModuleFinder finder(proc.root(), dir.string());
  finder.Note(Hello(1, 4242));
  std::vector<ModuleRecord> found =
      finder.Find(Stack(1, {0x7f0000000010, 0x7f0000000090}));
  ASSERT_EQ(found.size(), 1u);  // the second is between two functions
  EXPECT_EQ(found[0].path,
            std::string(kJitModulePrefix) + "LazyCompile:*onData /srv/app.js:10");
  EXPECT_EQ(found[0].start, 0x7f0000000000u);
  EXPECT_EQ(found[0].end, 0x7f0000000080u);
  EXPECT_EQ(found[0].load_bias, found[0].start);
  EXPECT_EQ(found[0].stream, 1u);
  // Known now; and the map is read on where it stopped when it grows.
  EXPECT_TRUE(finder.Find(Stack(1, {0x7f0000000020})).empty());
  std::ofstream(dir / "perf-4242.map", std::ios::app)
      << "7f0000000200 20 LazyCompile:later /srv/app.js:20\n"
      << "7f0000000300 20 half a li";
  found = finder.Find(Stack(1, {0x7f0000000210, 0x7f0000000300}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].path,
            std::string(kJitModulePrefix) + "LazyCompile:later /srv/app.js:20");
  // The half line, finished later, is found then: JIT code not yet in the
  // map is asked about again.
  std::ofstream(dir / "perf-4242.map", std::ios::app) << "ne\n";
  found = finder.Find(Stack(1, {0x7f0000000300}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].path, std::string(kJitModulePrefix) + "half a line");
  // A map written anew (another file, shorter) is read from its start.
  std::filesystem::remove(dir / "perf-4242.map");
  std::ofstream(dir / "perf-4242.map") << "7f0000000400 10 fresh\n";
  found = finder.Find(Stack(1, {0x7f0000000404}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].path, std::string(kJitModulePrefix) + "fresh");
}

// Code the runtime freed and replaced: a later stack in that memory is
// named by the function that is there now, found in what the map gained.
TEST(ModuleFinder, CodeReplacedAtAnAddressIsRecordedAnew) {
  FakeProc proc;
  proc.AddMaps("7f0000000000-7f0000010000 r-xp 00000000 00:00 0 \n");
  std::filesystem::path dir = proc.root() + "/tmp";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "perf-4242.map")
      << "7f0000000000 80 JS:~first /srv/a.js:1:1\n";
  ModuleFinder finder(proc.root(), dir.string());
  finder.Note(Hello(1, 4242));
  std::vector<ModuleRecord> found = finder.Find(Stack(1, {0x7f0000000010}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].path, std::string(kJitModulePrefix) + "JS:~first /srv/a.js:1:1");
  // Unchanged: nothing new, however often asked.
  EXPECT_TRUE(finder.Find(Stack(1, {0x7f0000000010, 0x7f0000000070})).empty());
  // Two functions now where the first was.
  std::ofstream(dir / "perf-4242.map", std::ios::app)
      << "7f0000000000 40 JS:~second /srv/b.js:2:1\n"
      << "7f0000000040 40 JS:*third /srv/b.js:9:1\n";
  found = finder.Find(Stack(1, {0x7f0000000010, 0x7f0000000070}));
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].path, std::string(kJitModulePrefix) + "JS:~second /srv/b.js:2:1");
  EXPECT_EQ(found[0].start, 0x7f0000000000u);
  EXPECT_EQ(found[0].end, 0x7f0000000040u);
  EXPECT_EQ(found[1].path, std::string(kJitModulePrefix) + "JS:*third /srv/b.js:9:1");
  EXPECT_TRUE(finder.Find(Stack(1, {0x7f0000000010, 0x7f0000000070})).empty());
  EXPECT_EQ(finder.reads(), 1);  // the process's maps were read once
}

// A map older than the process is another process's, of the same pid.
TEST(ModuleFinder, APerfMapOlderThanTheProcessIsNotItsOwn) {
  FakeProc proc;
  proc.AddMaps("7f0000000000-7f0000010000 r-xp 00000000 00:00 0 \n");
  std::filesystem::path dir = proc.root() + "/tmp";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "perf-4242.map") << "7f0000000000 80 stale\n";
  ModuleFinder finder(proc.root(), dir.string());
  ProcessRecord p = Hello(1, 4242);
  p.start_real_ns = (static_cast<uint64_t>(time(nullptr)) + 3600) * 1000000000;
  finder.Note(p);
  EXPECT_TRUE(finder.Find(Stack(1, {0x7f0000000010})).empty());
}

// A FIFO in the map's place (anybody can make one in /tmp) is no map, and
// never blocks the collector.
TEST(ModuleFinder, APerfMapFifoDoesNotHang) {
  FakeProc proc;
  proc.AddMaps("7f0000000000-7f0000010000 r-xp 00000000 00:00 0 \n");
  std::filesystem::path dir = proc.root() + "/tmp";
  std::filesystem::create_directories(dir);
  ASSERT_EQ(mkfifo((dir / "perf-4242.map").c_str(), 0600), 0);
  ModuleFinder finder(proc.root(), dir.string());
  finder.Note(Hello(1, 4242));
  EXPECT_TRUE(finder.Find(Stack(1, {0x7f0000000010})).empty());
}

TEST(ModuleFromFile, AgreesWithTheLoader) {
  uintptr_t fn = LibcFunction();
  Loaded want = LoaderView(fn);
  ASSERT_TRUE(want.found);
  std::istringstream maps(ReadFile("/proc/self/maps"));
  std::string line;
  bool checked = false;
  while (std::getline(maps, line)) {
    Mapping m;
    if (!ParseMapsLine(line, &m) || fn < m.start || fn >= m.end) continue;
    ModuleRecord rec;
    ASSERT_TRUE(ModuleFromFile(m, &rec)) << line;
    EXPECT_EQ(rec.load_bias, want.bias);
    EXPECT_EQ(rec.start, want.lo);
    EXPECT_EQ(rec.end, want.hi);
    EXPECT_EQ(rec.path, m.path);
    EXPECT_FALSE(rec.build_id.empty());  // Debian builds every library with one
    checked = true;
  }
  EXPECT_TRUE(checked);
}

TEST(ModuleFromFile, RefusesAnotherFileAtThePath) {
  uintptr_t fn = LibcFunction();
  std::istringstream maps(ReadFile("/proc/self/maps"));
  std::string line;
  while (std::getline(maps, line)) {
    Mapping m;
    if (!ParseMapsLine(line, &m) || fn < m.start || fn >= m.end) continue;
    m.inode += 1;  // as if the library had been replaced on disk since
    ModuleRecord rec;
    EXPECT_FALSE(ModuleFromFile(m, &rec));
    return;
  }
  FAIL() << "no mapping holds getpid";
}

TEST(ModuleFinder, FindsWhatNoRecordCoversOnce) {
  FakeProc proc;
  ModuleFinder finder(proc.root());
  finder.Note(Hello(1, 4242));
  uintptr_t fn = LibcFunction();
  Loaded libc = LoaderView(fn);
  // The program's own module, as the shim would have sent it.
  Loaded self = LoaderView(reinterpret_cast<uintptr_t>(&LoaderView));
  ModuleRecord sent;
  sent.stream = 1;
  sent.load_bias = self.bias;
  sent.start = self.lo;
  sent.end = self.hi;
  sent.path = "self";
  finder.Note(sent);

  StackRecord stack = Stack(1, {reinterpret_cast<uintptr_t>(&LoaderView), fn});
  std::vector<ModuleRecord> found = finder.Find(stack);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].stream, 1u);
  EXPECT_EQ(found[0].load_bias, libc.bias);
  EXPECT_EQ(found[0].start, libc.lo);
  EXPECT_EQ(finder.reads(), 1);

  // Known now: no second read, nothing new.
  EXPECT_TRUE(finder.Find(stack).empty());
  EXPECT_EQ(finder.reads(), 1);
}

TEST(ModuleFinder, AnonymousMemoryIsAskedAboutOnce) {
  void* anon = mmap(nullptr, 4096, PROT_READ | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(anon, MAP_FAILED);
  FakeProc proc;  // its maps show the mapping, with no file behind it
  ModuleFinder finder(proc.root());
  finder.Note(Hello(1, 4242));
  StackRecord stack = Stack(1, {reinterpret_cast<uintptr_t>(anon) + 16});
  EXPECT_TRUE(finder.Find(stack).empty());
  EXPECT_TRUE(finder.Find(stack).empty());
  EXPECT_EQ(finder.reads(), 1);
  munmap(anon, 4096);
}

TEST(ModuleFinder, NeverReadsForAnImageThatEnded) {
  FakeProc proc;
  ModuleFinder finder(proc.root());
  StackRecord stack = Stack(1, {LibcFunction()});

  finder.Note(Hello(1, 4242));
  finder.Retire(1);  // it exec'd or exited
  EXPECT_TRUE(finder.Find(stack).empty());

  // A newer image of the same pid retires the older stream too.
  finder.Note(Hello(2, 4242));
  finder.Note(Hello(3, 4242));
  stack.stream = 2;
  EXPECT_TRUE(finder.Find(stack).empty());
  EXPECT_EQ(finder.reads(), 0);

  // No hello at all: no pid to read.
  stack.stream = 9;
  EXPECT_TRUE(finder.Find(stack).empty());
  EXPECT_EQ(finder.reads(), 0);

  // The newest one is read.
  stack.stream = 3;
  EXPECT_EQ(finder.Find(stack).size(), 1u);
  EXPECT_EQ(finder.reads(), 1);
}

TEST(ModuleFinder, AProcessThatHasGoneRetiresItsStream) {
  ModuleFinder finder("/nonexistent-proc");
  finder.Note(Hello(1, 4242));
  StackRecord stack = Stack(1, {LibcFunction()});
  EXPECT_TRUE(finder.Find(stack).empty());
  EXPECT_TRUE(finder.Find(stack).empty());
  EXPECT_EQ(finder.reads(), 1);
}

}  // namespace
}  // namespace closeaudit
