#include "collector/symbolizer.h"

#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace closeaudit {
namespace {

// libdwfl keeps pointers to both of these for the lifetime of every Dwfl.
// A null search path means libdwfl's default (":.debug:/usr/lib/debug").
char* debuginfo_path = nullptr;
const Dwfl_Callbacks kCallbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

struct DwflDeleter {
  void operator()(Dwfl* dwfl) const { dwfl_end(dwfl); }
};

std::string Demangle(const char* name) {
  if (name == nullptr) return "";
  // Only Itanium-mangled names; __cxa_demangle would also "demangle" plain C
  // names that happen to look like type encodings (e.g. "i" -> "int").
  if (std::strncmp(name, "_Z", 2) != 0) return name;
  int status = 0;
  char* demangled = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || demangled == nullptr) return name;
  std::string result = demangled;
  std::free(demangled);
  return result;
}

// DWARF may name files relative to the compilation directory; reports are
// only useful with paths that do not depend on where the compiler ran. Returns
// the path unchanged if it cannot be made absolute.
std::string AbsolutePath(const char* file, const char* comp_dir) {
  if (file == nullptr || *file == '\0') return "";
  std::filesystem::path path(file);
  if (path.is_relative() && comp_dir != nullptr && comp_dir[0] == '/') {
    path = std::filesystem::path(comp_dir) / path;
  }
  return path.lexically_normal().string();
}

const char* CompDir(Dwarf_Die* cu) {
  Dwarf_Attribute attr;
  return dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &attr));
}

// The demangled linkage name, so C++ functions come out qualified and with
// their parameter types; "" if DWARF has none (C, or C++ with internal
// linkage). Follows abstract origins and specifications, since inlined copies
// and out-of-class definitions carry no names themselves.
std::string LinkageName(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  for (int name_attr : {DW_AT_linkage_name, DW_AT_MIPS_linkage_name}) {
    const char* name =
        dwarf_formstring(dwarf_attr_integrate(die, name_attr, &attr));
    if (name != nullptr) return Demangle(name);
  }
  return "";
}

std::string PlainName(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  const char* name =
      dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr));
  return name == nullptr ? "" : name;
}

// Where an inlined copy was inlined: that is the position in its caller.
std::pair<std::string, int> CallSite(Dwarf_Die* inlined) {
  Dwarf_Attribute attr;
  Dwarf_Word line = 0;
  if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_line, &attr), &line) !=
      0) {
    line = 0;
  }
  std::string file;
  Dwarf_Word file_index = 0;
  Dwarf_Die cu;
  Dwarf_Files* files = nullptr;
  size_t file_count = 0;
  // The file index refers to the line table of the unit holding this DIE.
  if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_file, &attr),
                      &file_index) == 0 &&
      dwarf_diecu(inlined, &cu, nullptr, nullptr) != nullptr &&
      dwarf_getsrcfiles(&cu, &files, &file_count) == 0 &&
      file_index < file_count) {
    file = AbsolutePath(dwarf_filesrc(files, file_index, nullptr, nullptr),
                        CompDir(&cu));
  }
  return {file, line > INT32_MAX ? 0 : static_cast<int>(line)};
}

// Name from the ELF symbol tables; works without DWARF (stripped libraries).
// Null if no symbol covers `address`.
const char* SymbolName(Dwfl_Module* mod, Dwarf_Addr address) {
  GElf_Off offset = 0;
  GElf_Sym sym;
  return dwfl_module_addrinfo(mod, address, &offset, &sym, nullptr, nullptr,
                              nullptr);
}

// Return addresses point into code. Other addresses (the ELF header, data,
// beyond the file) would only match leftovers such as DWARF for functions the
// linker discarded, which claim to start at 0: better unknown than wrong.
bool IsCode(Dwfl_Module* mod, Dwarf_Addr address) {
  Dwarf_Addr start = 0;
  Dwarf_Addr end = 0;
  dwfl_module_info(mod, nullptr, &start, &end, nullptr, nullptr, nullptr,
                   nullptr);
  if (address < start || address >= end) return false;
  Dwarf_Addr offset = address;
  Dwarf_Addr bias = 0;
  Elf_Scn* section = dwfl_module_address_section(mod, &offset, &bias);
  if (section == nullptr) {
    // Without section headers (sstrip) there is nothing to check against.
    Elf* elf = dwfl_module_getelf(mod, &bias);
    size_t count = 0;
    return elf != nullptr && elf_getshdrnum(elf, &count) == 0 && count == 0;
  }
  GElf_Shdr header;
  return gelf_getshdr(section, &header) != nullptr &&
         (header.sh_flags & SHF_EXECINSTR) != 0;
}

// All frames for `address` (in libdwfl's address space for `mod`), with
// `module` and `address` left for the caller to fill in. Never empty.
// The deepest DIE under `parent` whose ranges hold pc (a subprogram, an
// inlined copy, a lexical block), looking inside the DIEs that hold
// definitions without having ranges themselves (namespaces, classes).
bool InnermostScope(Dwarf_Die* parent, Dwarf_Addr pc, Dwarf_Die* out,
                    int depth) {
  constexpr int kMaxDepth = 64;  // hostile DWARF cannot recurse for ever
  Dwarf_Die child;
  if (depth > kMaxDepth || dwarf_child(parent, &child) != 0) return false;
  do {
    if (dwarf_haspc(&child, pc) == 1) {
      *out = child;
      InnermostScope(&child, pc, out, depth + 1);
      return true;
    }
    int tag = dwarf_tag(&child);
    if ((tag == DW_TAG_namespace || tag == DW_TAG_module ||
         tag == DW_TAG_class_type || tag == DW_TAG_structure_type ||
         tag == DW_TAG_union_type) &&
        InnermostScope(&child, pc, out, depth + 1)) {
      return true;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
  return false;
}

std::vector<Frame> Symbolize(Dwfl_Module* mod, Dwarf_Addr address) {
  Frame innermost;
  if (Dwfl_Line* line = dwfl_module_getsrc(mod, address)) {
    const char* file = dwfl_lineinfo(line, nullptr, &innermost.line, nullptr,
                                     nullptr, nullptr);
    innermost.file = AbsolutePath(file, dwfl_line_comp_dir(line));
    if (innermost.file.empty()) innermost.line = 0;
  }

  std::vector<Frame> frames;
  Dwarf_Addr dwarf_bias = 0;  // May differ from the ELF's in debuginfo files.
  Dwarf_Die* cu = dwfl_module_addrdie(mod, address, &dwarf_bias);
  Dwarf_Die* scopes = nullptr;
  int count = 0;
  // The physical parents of the innermost scope holding the address are the
  // call chain we want (inlined copies, then the function). Not
  // dwarf_getscopes(), which goes on past an inlined copy to the scopes
  // around its abstract definition, and leaks when that search fails
  // (inlined code whose origin is in another unit, as in LTO builds).
  Dwarf_Die innermost_scope;
  if (cu != nullptr &&
      InnermostScope(cu, address - dwarf_bias, &innermost_scope, 0)) {
    count = dwarf_getscopes_die(&innermost_scope, &scopes);
  }
  Frame next = innermost;
  for (int i = 0; i < count; ++i) {
    const int tag = dwarf_tag(&scopes[i]);
    if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine &&
        tag != DW_TAG_entry_point) {
      continue;  // Lexical blocks and the like.
    }
    next.inlined = tag == DW_TAG_inlined_subroutine;
    next.function = LinkageName(&scopes[i]);
    if (next.function.empty() && !next.inlined) {
      // GCC omits linkage names for internal-linkage C++ functions; the
      // symbol still has the qualified name. C symbols would only add
      // suffixes like ".cold", so they are not used here.
      const char* symbol = SymbolName(mod, address);
      if (symbol != nullptr && std::strncmp(symbol, "_Z", 2) == 0) {
        next.function = Demangle(symbol);
      }
    }
    if (next.function.empty()) next.function = PlainName(&scopes[i]);
    frames.push_back(next);
    if (!next.inlined) break;
    next = Frame();
    std::tie(next.file, next.line) = CallSite(&scopes[i]);
  }
  std::free(scopes);

  if (frames.empty()) frames.push_back(innermost);
  // The out-of-line function can still be named when DWARF is missing or
  // incomplete; inlined ones cannot, since they have no symbol.
  if (frames.back().function.empty() && !frames.back().inlined) {
    frames.back().function = Demangle(SymbolName(mod, address));
  }
  return frames;
}

}  // namespace

struct Symbolizer::Module {
  // Opens `path` for symbolization; the error says why it cannot be used.
  static absl::StatusOr<std::unique_ptr<Module>> Open(const std::string& path);

  std::unique_ptr<Dwfl, DwflDeleter> dwfl;
  Dwfl_Module* mod = nullptr;  // Owned by dwfl.
  std::string build_id;        // As found in the file; may be empty.
  // libdwfl address = ELF virtual address + bias.
  Dwarf_Addr bias = 0;
  // Frames by ELF virtual address, with module/address not yet filled in.
  absl::flat_hash_map<uint64_t, std::vector<Frame>> cache;
  // Whether some frame of code in it had a name, and whether one had none.
  bool named = false;
  bool unnamed = false;
};

absl::StatusOr<std::unique_ptr<Symbolizer::Module>> Symbolizer::Module::Open(
    const std::string& path) {
  // Checked first because open() on a FIFO or device could block or have
  // side effects, and the path comes from the traced process.
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError("not a regular file");
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return absl::PermissionDeniedError(std::strerror(errno));

  auto module = std::make_unique<Module>();
  module->dwfl.reset(dwfl_begin(&kCallbacks));
  if (module->dwfl == nullptr) {
    close(fd);
    return absl::InternalError(dwfl_errmsg(-1));
  }
  Dwfl* dwfl = module->dwfl.get();
  dwfl_report_begin(dwfl);
  // With base 0, ET_EXEC modules sit at their link-time addresses (libdwfl
  // ignores the base for them). For ET_DYN, add_p_vaddr=true does the same;
  // with false the first PT_LOAD would be moved to 0. Either way the bias read
  // back below is the one that counts, so both ELF types map the same way.
  module->mod = dwfl_report_elf(dwfl, path.c_str(), path.c_str(), fd,
                                /*base=*/0, /*add_p_vaddr=*/true);
  if (module->mod == nullptr) {
    absl::Status error = absl::InvalidArgumentError(
        absl::StrCat("not a usable ELF file: ", dwfl_errmsg(-1)));
    close(fd);  // Only owned by libdwfl once the report succeeded.
    return error;
  }
  if (dwfl_report_end(dwfl, nullptr, nullptr) != 0) {
    return absl::InternalError(dwfl_errmsg(-1));
  }
  // Loads the ELF (needed for the build-id) and reports its bias.
  if (dwfl_module_getelf(module->mod, &module->bias) == nullptr) {
    return absl::InvalidArgumentError(dwfl_errmsg(-1));
  }
  const unsigned char* bits = nullptr;
  GElf_Addr note_vaddr = 0;
  const int length = dwfl_module_build_id(module->mod, &bits, &note_vaddr);
  if (length > 0) module->build_id.assign(bits, bits + length);
  return module;
}

Symbolizer::Symbolizer() {
  // CLOSEAUDIT_DEBUGINFO_PATH=DIR[:DIR...]: where else separate debug files
  // live (DIR/.build-id/xx/<rest>.debug, or by .gnu_debuglink), looked at
  // before libdwfl's own places. Read once per process: libdwfl keeps the
  // pointer.
  static const bool once = [] {
    const char* extra = std::getenv("CLOSEAUDIT_DEBUGINFO_PATH");
    if (extra != nullptr && *extra != '\0') {
      static std::string path = std::string(extra) + "::.debug:/usr/lib/debug";
      debuginfo_path = path.data();
    }
    return true;
  }();
  (void)once;
}
Symbolizer::~Symbolizer() = default;

void Symbolizer::Warn(std::string message) {
  if (warned_.insert(message).second) warnings_.push_back(std::move(message));
}

Symbolizer::Module* Symbolizer::GetModule(const std::string& path) {
  auto it = modules_.find(path);
  if (it != modules_.end()) return it->second.get();
  absl::StatusOr<std::unique_ptr<Module>> module = Module::Open(path);
  if (!module.ok()) {
    Warn(absl::StrCat("cannot open ", path, ": ", module.status().message()));
    modules_.emplace(path, nullptr);
    return nullptr;
  }
  return modules_.emplace(path, *std::move(module)).first->second.get();
}

std::vector<Frame> Symbolizer::Resolve(const ModuleRef& module,
                                       uint64_t address) {
  Frame unknown;
  unknown.module = module.path;
  unknown.address = address;

  Module* m = GetModule(module.path);
  if (m == nullptr) return {unknown};
  // A different build-id means the file was replaced after the process loaded
  // it; its symbols would name the wrong code, which is worse than none.
  if (!module.build_id.empty() && !m->build_id.empty() &&
      module.build_id != m->build_id) {
    Warn(absl::StrCat("build-id mismatch for ", module.path,
                      ": file on disk is not the one loaded; not symbolized"));
    return {unknown};
  }

  // Unsigned wrap-around is intended: garbage input lands outside the module.
  const uint64_t elf_address = address - module.load_bias;
  auto it = m->cache.find(elf_address);
  if (it == m->cache.end()) {
    const Dwarf_Addr dwfl_address = elf_address + m->bias;
    std::vector<Frame> frames = {Frame()};
    if (IsCode(m->mod, dwfl_address)) {
      frames = Symbolize(m->mod, dwfl_address);
    }
    it = m->cache.emplace(elf_address, std::move(frames)).first;
  }
  std::vector<Frame> frames = it->second;
  if (!frames.back().function.empty()) {
    m->named = true;
  } else if (IsCode(m->mod, elf_address + m->bias)) {
    m->unnamed = true;
  }
  for (Frame& frame : frames) {
    frame.module = module.path;
    frame.address = address;
  }
  return frames;
}

const std::vector<std::string>& Symbolizer::warnings() {
  all_warnings_ = warnings_;
  for (const auto& [path, m] : modules_) {
    if (m != nullptr && m->unnamed && !m->named) {
      std::string w = UnnamedWarning(*m, path);
      if (!w.empty()) all_warnings_.push_back(std::move(w));
    }
  }
  // modules_ is a hash map: its order is not the report's.
  std::sort(all_warnings_.begin() + static_cast<long>(warnings_.size()),
            all_warnings_.end());
  return all_warnings_;
}

std::string Symbolizer::UnnamedWarning(const Module& m,
                                       const std::string& path) {
  Dwarf_Addr bias = 0;
  bool dwarf = dwfl_module_getdwarf(m.mod, &bias) != nullptr;
  bool symtab = false;
  if (Elf* elf = dwfl_module_getelf(m.mod, &bias)) {
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr;
         scn = elf_nextscn(elf, scn)) {
      GElf_Shdr shdr;
      if (gelf_getshdr(scn, &shdr) != nullptr && shdr.sh_type == SHT_SYMTAB) {
        symtab = true;
      }
    }
  }
  if (dwarf) return "";  // named what it could
  return absl::StrCat(
      path, ": frames in it are bare offsets: it has no debug information",
      symtab ? " (built without -g)" : " and no symbol table (stripped)",
      "; rebuild it with -g, or install its separate debug file (for a "
      "Debian package, its -dbgsym package) under /usr/lib/debug or in a "
      "directory named by CLOSEAUDIT_DEBUGINFO_PATH");
}

}  // namespace closeaudit
