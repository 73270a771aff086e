#include "collector/app_frames.h"

#include <unistd.h>

#include <array>
#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "collector/report.h"

namespace closeaudit {
namespace {

// Where the system keeps its libraries, and the sources and headers that
// come with them (debug info names glibc's and libstdc++'s sources so).
constexpr std::array<std::string_view, 8> kSystemLibDirs = {
    "/lib/", "/lib32/", "/lib64/", "/libx32/", "/usr/lib/", "/usr/lib32/",
    "/usr/lib64/", "/usr/libexec/"};
constexpr std::array<std::string_view, 4> kIncludeDirs = {
    "/usr/include/", "/usr/local/include/", "/usr/lib/gcc/", "/usr/src/"};

// Interpreters and runtimes, by the name of their executable or library,
// wherever they are installed (pyenv puts python under $HOME).
constexpr std::array<std::string_view, 7> kRuntimeExes = {
    "python", "node", "nodejs", "java", "ruby", "perl", "php"};
constexpr std::array<std::string_view, 7> kRuntimeLibs = {
    "libpython", "libnode.", "libjvm.", "libjli.", "libruby", "libperl.",
    "libv8"};

// Namespaces of the C++ runtime and of libraries that live in headers: a
// frame in one is library code even where no file says so.
constexpr std::array<std::string_view, 4> kLibraryNamespaces = {
    "std::", "__gnu_cxx::", "__cxxabiv1::", "boost::"};

bool Starts(std::string_view s, std::string_view p) { return s.starts_with(p); }
bool Ends(std::string_view s, std::string_view p) { return s.ends_with(p); }
bool Contains(std::string_view s, std::string_view p) {
  return s.find(p) != std::string_view::npos;
}

std::string_view Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool UnderDir(std::string_view path, std::string_view dir) {
  if (path.empty() || !Starts(path, dir)) return false;
  return path.size() == dir.size() || dir.back() == '/' ||
         path[dir.size()] == '/';
}

template <size_t N>
bool UnderAny(std::string_view path,
              const std::array<std::string_view, N>& dirs) {
  for (std::string_view d : dirs) {
    if (Starts(path, d)) return true;
  }
  return false;
}

// "python3.11", "python3.11d", "node", "java": a runtime's executable. The
// name may carry a version, never other letters ("nodeapp" is a program).
bool IsRuntimeExe(std::string_view name) {
  if (name.ends_with("-dbg")) name.remove_suffix(4);
  for (std::string_view exe : kRuntimeExes) {
    if (!Starts(name, exe)) continue;
    std::string_view rest = name.substr(exe.size());
    bool version = true;
    for (char c : rest) {
      if (!(c >= '0' && c <= '9') && c != '.' && c != 'd' && c != 'm' &&
          c != 'u') {
        version = false;
      }
    }
    if (version) return true;
  }
  return false;
}

// A Python file of the interpreter's own library or of an installed
// package: the standard library (.../lib/python3.11/), site-packages and
// dist-packages, and the modules frozen into the interpreter.
bool IsPythonLibraryFile(std::string_view file) {
  return Starts(file, "<frozen ") || Contains(file, "/site-packages/") ||
         Contains(file, "/dist-packages/") || Contains(file, "/lib/python") ||
         Contains(file, "/lib64/python");
}

// Node.js's own modules ("node:net", "internal/..." before Node 16) and
// packages installed from npm.
bool IsJsLibraryFile(std::string_view file) {
  return file.empty() || Starts(file, "node:") || Starts(file, "internal/") ||
         Contains(file, "/node_modules/");
}

// The JDK's own classes, by their package: what the JVM ships.
bool IsJdkClass(std::string_view function) {
  for (std::string_view p : {"java.", "javax.", "jdk.", "sun.", "com.sun."}) {
    if (Starts(function, p)) return true;
  }
  return false;
}

bool IsSystemModule(std::string_view module) {
  std::string_view name = Basename(module);
  if (UnderAny(module, kSystemLibDirs)) return true;
  if (Starts(name, "linux-vdso") || Starts(name, "[")) {
    return true;
  }
  if (IsRuntimeExe(name) || IsPythonLibraryFile(module)) return true;
  for (std::string_view lib : kRuntimeLibs) {
    if (Starts(name, lib)) return true;
  }
  return false;
}


}  // namespace

std::string ShortFunction(std::string_view f) {
  std::string out;
  int depth = 0;  // inside <>, () or {}
  for (size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (depth == 0 && Ends(out, "operator")) {
      // operator(), operator<<, operator->...: the symbol is the name.
      if (Starts(f.substr(i), "()")) {
        out += "()";
        ++i;
        continue;
      }
      size_t n = 0;
      while (i + n < f.size() && f[i + n] != '(' && f[i + n] != ' ') ++n;
      if (n > 0) {
        out.append(f.substr(i, n));
        i += n - 1;
        continue;
      }
    }
    if (depth == 0 && c == '(' && !out.empty() && out.back() != ':' &&
        out.back() != ' ') {
      // The parameters, unless a scope follows them: a lambda's enclosing
      // function, "Session::do_read()::{lambda()#1}".
      int d = 0;
      size_t close = i;
      for (; close < f.size(); ++close) {
        if (f[close] == '(') ++d;
        if (f[close] == ')' && --d == 0) break;
      }
      if (!f.substr(close + (close < f.size())).starts_with("::")) break;
      out += "()";
      i = close;
      continue;
    }
    if (c == '<' || c == '(' || c == '{') {
      ++depth;
      if (depth == 1 && c == '(') out += "(...)";  // (anonymous namespace)
      if (depth == 1 && c == '{') out += "{lambda}";
      continue;
    }
    if (c == '>' || c == ')' || c == '}') {
      if (depth > 0) --depth;
      continue;
    }
    if (depth == 0) out += c;
  }
  // A function template's name starts with its return type: "void f".
  size_t space = out.rfind(' ');
  if (space != std::string::npos) out = out.substr(space + 1);
  // An anonymous namespace says nothing a reader needs.
  for (size_t at; (at = out.find("(...)::")) != std::string::npos;) {
    out.erase(at, 7);
  }
  return out;
}

bool InApp(const Frame& f, const AppRules& rules) {
  // The C library's start-up code is linked into every program (_start).
  if (IsStartupFrame(f)) return false;
  bool java_packages = false;  // some --app-path java:PACKAGE was given
  for (const std::string& d : rules.app_paths) {
    if (Starts(d, kJavaPackagePrefix)) {
      java_packages = true;
      std::string_view package = std::string_view(d).substr(kJavaPackagePrefix.size());
      if (f.language == "java" && Starts(f.function, package) &&
          f.function.size() > package.size() && f.function[package.size()] == '.') {
        return true;
      }
      continue;
    }
    if (UnderDir(f.file, d) || UnderDir(f.module, d)) return true;
  }
  for (const std::string& p : rules.not_app) {
    if (Contains(f.file, p) || Contains(f.module, p) ||
        Contains(f.function, p)) {
      return false;
    }
  }
  if (f.language == "python") return !IsPythonLibraryFile(f.file);
  if (f.language == "js") return !IsJsLibraryFile(f.file);
  // Once the program's packages are named, other classes are libraries.
  if (f.language == "java") return !IsJdkClass(f.function) && !java_packages;
  if (!f.file.empty() && UnderAny(f.file, kIncludeDirs)) return false;
  // Code in no module with a name came from a JIT's perf map: the program's
  // own, unless the name says it is the runtime's: a path in the system's
  // library directories ("py::get:/usr/lib/python3.11/asyncio/..."), or
  // Node.js's own modules ("node:internal/...").
  if (f.module.empty()) {
    if (f.function.empty() || Contains(f.function, "node:")) return false;
    for (std::string_view dir : kSystemLibDirs) {
      if (Contains(f.function, dir)) return false;
    }
    return true;
  }
  if (IsSystemModule(f.module)) return false;
  std::string name = ShortFunction(f.function);
  for (std::string_view ns : kLibraryNamespaces) {
    if (Starts(name, ns)) return false;
  }
  return true;
}

std::string LibraryName(const Frame& f) {
  if (f.language == "js") {
    // The npm package (its scope too) a frame of node_modules is in.
    size_t at = f.file.rfind("/node_modules/");
    if (at != std::string::npos) {
      std::string_view rest = std::string_view(f.file).substr(at + 14);
      size_t slash = rest.find('/');
      if (Starts(rest, "@") && slash != std::string_view::npos) {
        slash = rest.find('/', slash + 1);
      }
      return std::string(rest.substr(0, slash));
    }
    return IsJsLibraryFile(f.file) ? "Node.js" : std::string(Basename(f.file));
  }
  if (f.language == "java") {
    return IsJdkClass(f.function) ? "the JDK" : std::string(Basename(f.file));
  }
  if (f.language == "python") {
    // The package a frame of site-packages is in; else the standard library.
    for (std::string_view dir : {"/site-packages/", "/dist-packages/"}) {
      size_t at = f.file.find(dir);
      if (at == std::string::npos) continue;
      std::string_view rest = std::string_view(f.file).substr(at + dir.size());
      std::string_view package = rest.substr(0, rest.find('/'));
      if (package.ends_with(".py")) package.remove_suffix(3);
      return std::string(package);
    }
    return IsPythonLibraryFile(f.file) ? "the Python standard library"
                                       : std::string(Basename(f.file));
  }
  for (std::string_view dir : kIncludeDirs) {
    std::string_view file = f.file;
    if (!file.starts_with(dir)) continue;
    file.remove_prefix(dir.size());
    if (dir == "/usr/lib/gcc/") return "gcc";
    std::string_view first = file.substr(0, file.find('/'));
    if (Starts(first, "c++")) return "libstdc++";
    if (first == file) break;  // a header right in the directory: the module
    if (first == "boost") {
      std::string_view rest = file.substr(first.size() + 1);
      size_t slash = rest.find('/');
      if (slash != std::string_view::npos) {
        return "boost/" + std::string(rest.substr(0, slash));
      }
      // boost/asio.hpp and the like: boost/asio
      return "boost/" + std::string(rest.substr(0, rest.find('.')));
    }
    return std::string(first);
  }
  if (f.module.empty()) return f.function.empty() ? "" : "JIT code";
  return std::string(Basename(f.module));
}

std::string SourceName(const Frame& f) {
  if (f.language == "js" && Starts(f.file, "node:")) return f.file;
  return std::string(Basename(f.file));
}

bool ParseJsPerfName(std::string_view name, Frame* frame) {
  std::string_view rest;
  for (std::string_view tag : {"JS:", "LazyCompile:", "Function:", "Script:"}) {
    if (Starts(name, tag)) {
      rest = name.substr(tag.size());
      break;
    }
  }
  if (rest.empty()) return false;
  // V8's tier: ~ interpreted, ^ baseline, + Maglev, * optimized.
  if (rest.front() == '~' || rest.front() == '^' || rest.front() == '+' ||
      rest.front() == '*') {
    rest.remove_prefix(1);
  }
  // "NAME SCRIPT:LINE:COLUMN": the name may hold spaces ("get x"), the
  // script (a path) rarely does.
  size_t space = rest.rfind(' ');
  std::string_view function = space == std::string_view::npos ? "" : rest.substr(0, space);
  std::string_view where = space == std::string_view::npos ? rest : rest.substr(space + 1);
  while (!function.empty() && function.back() == ' ') function.remove_suffix(1);
  auto number = [](std::string_view digits, int* out) {
    if (digits.empty() || digits.size() > 9) return false;
    int n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + (c - '0');
    }
    *out = n;
    return true;
  };
  int line = 0, column = 0;
  size_t c2 = where.rfind(':');
  if (c2 == std::string_view::npos || !number(where.substr(c2 + 1), &column)) {
    return false;
  }
  size_t c1 = where.rfind(':', c2 - 1);
  if (c2 == 0 || c1 == std::string_view::npos ||
      !number(where.substr(c1 + 1, c2 - c1 - 1), &line)) {
    return false;
  }
  std::string_view file = where.substr(0, c1);
  if (Starts(file, "file://")) file.remove_prefix(7);
  frame->language = "js";
  frame->function = function.empty() ? "(anonymous)" : std::string(function);
  frame->file = std::string(file);
  frame->line = line;
  return true;
}

absl::StatusOr<AppRules> ParseAppRules(const std::vector<std::string>& app_paths,
                                       const std::vector<std::string>& not_app) {
  AppRules rules;
  for (std::string dir : app_paths) {
    if (dir.empty()) {
      return absl::InvalidArgumentError("--app-path needs a directory");
    }
    if (Starts(dir, kJavaPackagePrefix)) {
      std::string_view package = std::string_view(dir).substr(kJavaPackagePrefix.size());
      bool valid = !package.empty() && package.front() != '.' && package.back() != '.';
      for (char c : package) {
        valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                          c == '_' || c == '$');
      }
      if (!valid) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--app-path ", dir, ": not a Java package (java:com.example)"));
      }
      rules.app_paths.push_back(std::move(dir));
      continue;
    }
    if (dir[0] != '/') {
      char cwd[4096];
      if (getcwd(cwd, sizeof(cwd)) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--app-path ", dir,
            ": relative, and the working directory is unknown; give an "
            "absolute path"));
      }
      dir = absl::StrCat(cwd, "/", dir);
    }
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    rules.app_paths.push_back(std::move(dir));
  }
  // What a trace can hold (collector/trace.cc).
  if (app_paths.size() > 1024 || not_app.size() > 1024) {
    return absl::InvalidArgumentError(
        "--app-path and --not-app: at most 1024 of each");
  }
  for (const std::string& p : rules.app_paths) {
    if (p.size() > 4096) {
      return absl::InvalidArgumentError("--app-path: a path of at most 4096 bytes");
    }
  }
  for (const std::string& p : not_app) {
    if (p.size() > 4096) {
      return absl::InvalidArgumentError("--not-app: a pattern of at most 4096 bytes");
    }
    if (p.empty()) {
      return absl::InvalidArgumentError(
          "--not-app needs a pattern: part of a path, module or function "
          "name");
    }
    rules.not_app.push_back(p);
  }
  return rules;
}

}  // namespace closeaudit
