#include "collector/module_finder.h"

#include <elfutils/libdwelf.h>
#include <fcntl.h>
#include <gelf.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <string_view>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "common/wire.h"

namespace closeaudit {
namespace {

// Enough for any process's dlopen'd objects; a process whose stacks keep
// landing in anonymous memory (JIT code) stops being read after this many.
constexpr int kMaxReadsPerStream = 256;
constexpr size_t kMaxUnplaceable = 1 << 16;
// A perf map is read up to this much, and keeps at most this many functions.
constexpr uint64_t kMaxPerfMapBytes = 256ull << 20;
constexpr size_t kMaxPerfMapSymbols = 1 << 20;
constexpr size_t kMaxJitName = 1024;

}  // namespace

namespace internal {

bool ParseMapsLine(const std::string& line, Mapping* out) {
  // start-end perms offset major:minor inode [path]
  unsigned long long start, end, offset, inode;
  unsigned major, minor;
  char perms[8];
  int path_at = 0;
  if (sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end,
             perms, &offset, &major, &minor, &inode, &path_at) < 7 ||
      end <= start) {
    return false;
  }
  out->start = start;
  out->end = end;
  out->offset = offset;
  out->executable = perms[0] != '\0' && perms[1] != '\0' && perms[2] == 'x';
  out->device_major = major;
  out->device_minor = minor;
  out->inode = inode;
  out->path = path_at > 0 && static_cast<size_t>(path_at) <= line.size()
                  ? line.substr(path_at)
                  : std::string();
  while (!out->path.empty() &&
         (out->path.back() == '\n' || out->path.back() == ' ')) {
    out->path.pop_back();
  }
  return true;
}

bool ParsePerfMapLine(std::string_view line, uint64_t* start, uint64_t* size,
                      std::string* name) {
  // START SIZE NAME, the numbers in hex (with or without 0x); the name is
  // the rest of the line and may hold spaces.
  auto hex = [&line](uint64_t* v) {
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.size() >= 2 && line[0] == '0' && (line[1] == 'x' || line[1] == 'X')) {
      line.remove_prefix(2);
    }
    size_t digits = 0;
    uint64_t n = 0;
    while (digits < line.size() && digits < 17 && isxdigit(static_cast<unsigned char>(line[digits]))) {
      char c = line[digits];
      n = n * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
      ++digits;
    }
    if (digits == 0 || digits > 16) return false;
    line.remove_prefix(digits);
    *v = n;
    return true;
  };
  if (!hex(start) || !hex(size) || line.empty() || line.front() != ' ') {
    return false;
  }
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
    line.remove_suffix(1);
  }
  if (line.empty() || *size == 0 || *start + *size < *start) return false;
  name->assign(line.substr(0, kMaxJitName));
  return true;
}

bool ModuleFromFile(const Mapping& mapping, ModuleRecord* out) {
  int fd = open(mapping.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  // The file at the path must be the one mapped: a library replaced on disk
  // since (a package upgrade) would give another file's bias and symbols.
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_ino != mapping.inode ||
      major(st.st_dev) != mapping.device_major ||
      minor(st.st_dev) != mapping.device_minor) {
    close(fd);
    return false;
  }
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  bool ok = false;
  size_t count = 0;
  if (elf != nullptr && elf_kind(elf) == ELF_K_ELF &&
      elf_getphdrnum(elf, &count) == 0) {
    uint64_t lo = ~uint64_t{0}, hi = 0;
    bool placed = false;
    uint64_t bias = 0;
    for (size_t i = 0; i < count; ++i) {
      GElf_Phdr ph;
      if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr ||
          ph.p_type != PT_LOAD) {
        continue;
      }
      lo = std::min<uint64_t>(lo, ph.p_vaddr);
      hi = std::max<uint64_t>(hi, ph.p_vaddr + ph.p_memsz);
      // The mapping starts at file offset `offset`, page-aligned, inside the
      // segment that maps it.
      uint64_t page = ph.p_offset & ~uint64_t{0xfff};
      if (!placed && mapping.offset >= page &&
          mapping.offset < ph.p_offset + ph.p_filesz) {
        uint64_t vaddr = (ph.p_vaddr & ~uint64_t{0xfff}) +
                         (mapping.offset - page);
        bias = mapping.start - vaddr;
        placed = true;
      }
    }
    if (placed && hi > lo) {
      out->load_bias = bias;
      out->start = bias + lo;
      out->end = bias + hi;
      out->path = mapping.path;
      out->build_id.clear();
      const void* id = nullptr;
      ssize_t n = dwelf_elf_gnu_build_id(elf, &id);
      if (n > 0 && static_cast<size_t>(n) <= wire::kMaxBuildIdBytes) {
        out->build_id.assign(static_cast<const char*>(id),
                             static_cast<size_t>(n));
      }
      ok = true;
    }
  }
  if (elf != nullptr) elf_end(elf);
  close(fd);
  return ok;
}

}  // namespace internal

ModuleFinder::ModuleFinder(std::string proc_root, std::string perf_map_dir)
    : proc_root_(std::move(proc_root)), perf_map_dir_(std::move(perf_map_dir)) {}

void ModuleFinder::ReadPerfMap(StreamState& s) {
  std::string path =
      perf_map_dir_ + "/perf-" + std::to_string(s.pid) + ".map";
  // O_NONBLOCK: a FIFO of that name must not hang the collector.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return;
  // Only the process's own map: anybody may write a file of that name.
  struct stat map_st, proc_st;
  std::string proc = proc_root_ + "/" + std::to_string(s.pid);
  // And not one an earlier process of the same pid left behind: runtimes
  // write theirs from their start on (a second of slack for clocks).
  bool ours = fstat(fd, &map_st) == 0 && S_ISREG(map_st.st_mode) &&
              stat(proc.c_str(), &proc_st) == 0 &&
              map_st.st_uid == proc_st.st_uid &&
              static_cast<uint64_t>(map_st.st_mtim.tv_sec) + 1 >=
                  s.start_real_ns / 1000000000;
  // Another file than the one read so far, or the same one cut short:
  // read it from the start.
  if (ours && (map_st.st_ino != s.perf_map.inode ||
               static_cast<uint64_t>(map_st.st_size) < s.perf_map.read)) {
    s.perf_map = PerfMap{};
    s.perf_map.inode = map_st.st_ino;
  }
  if (ours && static_cast<uint64_t>(map_st.st_size) > s.perf_map.read &&
      s.perf_map.read < kMaxPerfMapBytes) {
    std::string text;
    uint64_t want = std::min<uint64_t>(map_st.st_size, kMaxPerfMapBytes) -
                    s.perf_map.read;
    text.resize(want);
    ssize_t n = pread(fd, text.data(), want, static_cast<off_t>(s.perf_map.read));
    text.resize(n > 0 ? static_cast<size_t>(n) : 0);
    // Whole lines only: the runtime may be writing the last one.
    size_t end = text.rfind('\n');
    text.resize(end == std::string::npos ? 0 : end + 1);
    s.perf_map.read += text.size();
    auto& symbols = s.perf_map.symbols;
    size_t at = 0;
    while (at < text.size()) {
      size_t nl = text.find('\n', at);
      std::string_view line(text.data() + at, nl - at);
      at = nl + 1;
      uint64_t start, size;
      std::string name;
      if (!internal::ParsePerfMapLine(line, &start, &size, &name) ||
          symbols.size() >= kMaxPerfMapSymbols) {
        continue;
      }
      // A later function over the memory of earlier ones replaces them.
      auto it = symbols.lower_bound(start);
      if (it != symbols.begin() && std::prev(it)->second.first > start) --it;
      while (it != symbols.end() && it->first < start + size) {
        it = symbols.erase(it);
      }
      symbols[start] = {start + size, std::move(name)};
    }
  }
  close(fd);
}

bool ModuleFinder::PerfMapSymbol(const StreamState& s, uint64_t ip,
                                 ModuleRecord* out) const {
  auto it = s.perf_map.symbols.upper_bound(ip);
  if (it == s.perf_map.symbols.begin()) return false;
  --it;
  if (ip >= it->second.first) return false;
  out->load_bias = it->first;
  out->start = it->first;
  out->end = it->second.first;
  out->path = std::string(kJitModulePrefix) + it->second.second;
  out->build_id.clear();
  return true;
}

void ModuleFinder::NoteJit(StreamState& s, const ModuleRecord& rec) {
  auto it = s.jit.lower_bound(rec.start);
  if (it != s.jit.begin() && std::prev(it)->second.first > rec.start) --it;
  while (it != s.jit.end() && it->first < rec.end) it = s.jit.erase(it);
  s.jit[rec.start] = {rec.end,
                      rec.path.substr(sizeof(kJitModulePrefix) - 1)};
}

void ModuleFinder::Note(const Record& record) {
  if (const auto* p = std::get_if<ProcessRecord>(&record)) {
    StreamState& s = streams_[p->stream];
    s.pid = p->pid;
    s.start_real_ns = p->start_real_ns;
    // A newer image of the same pid (after an exec, or pid reuse): the
    // older stream's process is gone.
    auto it = stream_of_pid_.find(p->pid);
    if (it != stream_of_pid_.end() && it->second != p->stream) {
      Retire(it->second);  // which forgets the pid's entry
    }
    stream_of_pid_[p->pid] = p->stream;
  } else if (const auto* m = std::get_if<ModuleRecord>(&record)) {
    if (m->end > m->start) {
      streams_[m->stream].known.push_back({m->start, m->end});
    }
  }
}

bool ModuleFinder::RemovePerfMap(uint32_t stream) {
  auto it = streams_.find(stream);
  if (it == streams_.end() || it->second.pid == 0) return false;
  const StreamState& s = it->second;
  // Gone, or a zombie: no exe. A process still running (this image exec'd
  // another, which may be writing a map of its own) keeps its map.
  char exe[64];
  std::string link = proc_root_ + "/" + std::to_string(s.pid) + "/exe";
  if (readlink(link.c_str(), exe, sizeof(exe)) >= 0) return false;
  std::string path = perf_map_dir_ + "/perf-" + std::to_string(s.pid) + ".map";
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_uid != geteuid() ||
      static_cast<uint64_t>(st.st_mtim.tv_sec) + 1 < s.start_real_ns / 1000000000) {
    return false;
  }
  return unlink(path.c_str()) == 0;
}

void ModuleFinder::Retire(uint32_t stream) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  it->second.retired = true;
  it->second.unplaceable.clear();
  auto p = stream_of_pid_.find(it->second.pid);
  if (p != stream_of_pid_.end() && p->second == stream) stream_of_pid_.erase(p);
}

bool ModuleFinder::Known(const StreamState& s, uint64_t address) const {
  for (const Range& r : s.known) {
    if (address >= r.start && address < r.end) return true;
  }
  return false;
}

std::vector<ModuleRecord> ModuleFinder::Find(const StackRecord& stack) {
  std::vector<ModuleRecord> found;
  auto it = streams_.find(stack.stream);
  if (it == streams_.end()) return found;
  StreamState& s = it->second;
  if (s.retired || s.pid == 0 || s.reads >= kMaxReadsPerStream) return found;
  auto in_jit = [&s](uint64_t ip) {
    auto j = s.jit.upper_bound(ip);
    return j != s.jit.begin() && ip < std::prev(j)->second.first;
  };
  std::vector<uint64_t> unknown, jit;
  for (uint64_t ip : stack.frames) {
    if (ip == 0) continue;
    if (in_jit(ip)) {
      jit.push_back(ip);
      continue;
    }
    if (Known(s, ip) || s.unplaceable.contains(ip)) continue;
    unknown.push_back(ip);
  }
  if (!jit.empty()) {
    // Code the runtime may have replaced since: what its map says now.
    ReadPerfMap(s);
    for (uint64_t ip : jit) {
      ModuleRecord rec;
      if (!PerfMapSymbol(s, ip, &rec)) continue;
      auto j = std::prev(s.jit.upper_bound(ip));
      if (j->first == rec.start && j->second.first == rec.end &&
          rec.path.compare(sizeof(kJitModulePrefix) - 1, std::string::npos,
                           j->second.second) == 0) {
        continue;  // the same function
      }
      rec.stream = stack.stream;
      NoteJit(s, rec);
      found.push_back(std::move(rec));
    }
  }
  if (unknown.empty()) return found;
  ++s.reads;
  ++reads_;
  std::string path = proc_root_ + "/" + std::to_string(s.pid) + "/maps";
  FILE* f = fopen(path.c_str(), "re");
  if (f == nullptr) {
    Retire(stack.stream);  // the process has gone, or is not ours to read
    return found;
  }
  std::vector<internal::Mapping> mappings;
  char* line = nullptr;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    internal::Mapping m;
    if (internal::ParseMapsLine(line, &m) && m.executable &&
        !m.path.empty() && m.path[0] == '/' && m.inode != 0) {
      mappings.push_back(std::move(m));
    }
  }
  free(line);
  fclose(f);
  for (uint64_t ip : unknown) {
    // A module found for an earlier frame.
    if (Known(s, ip) || in_jit(ip)) continue;
    const internal::Mapping* hit = nullptr;
    for (const internal::Mapping& m : mappings) {
      if (ip >= m.start && ip < m.end) hit = &m;
    }
    ModuleRecord rec;
    bool placed = false;
    if (hit != nullptr) {
      placed = internal::ModuleFromFile(*hit, &rec);
    } else {
      ReadPerfMap(s);
      placed = PerfMapSymbol(s, ip, &rec);
      if (placed) {
        rec.stream = stack.stream;
        NoteJit(s, rec);
      }
    }
    // JIT code its runtime has not written to its perf map yet (runtimes
    // buffer the map) is asked about again by later stacks, within the
    // stream's reads.
    if (!placed && hit == nullptr && s.perf_map.inode != 0) continue;
    if (!placed) {
      if (s.unplaceable.size() < kMaxUnplaceable) s.unplaceable.insert(ip);
      continue;
    }
    rec.stream = stack.stream;
    if (hit != nullptr) s.known.push_back({rec.start, rec.end});
    found.push_back(std::move(rec));
  }
  return found;
}

}  // namespace closeaudit
