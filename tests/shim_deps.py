#!/usr/bin/env python3
"""libcloseaudit.so lives inside other people's processes: it may need the C
library and the loader, nothing else (no libstdc++, whose version the
program may not have, or may have another of), and in the sanitizer builds
their runtimes.

Usage: shim_deps.py LIBRARY
"""

import re
import subprocess
import sys

ALLOWED = {"libc.so.6", "libdl.so.2", "libpthread.so.0", "ld-linux-x86-64.so.2"}
# The sanitizer builds link their runtimes in.
SANITIZERS = re.compile(r"^lib(asan|ubsan|tsan|lsan)\.so")


def main():
    lib = sys.argv[1]
    dynamic = subprocess.run(["readelf", "-d", "-W", lib], capture_output=True,
                             text=True, check=True).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    symbols = subprocess.run(["nm", "-D", "--undefined-only", lib],
                             capture_output=True, text=True, check=True).stdout
    cxx = sorted({m for m in re.findall(r"\S+@(?:CXXABI|GLIBCXX)_\S+", symbols)})
    bad = sorted(n for n in needed - ALLOWED if not SANITIZERS.match(n))
    if bad or cxx:
        print(f"FAIL: {lib} needs {bad} and C++ runtime symbols {cxx[:10]}")
        return 1
    print(f"ok: {lib} needs only {sorted(needed)}")
    return 0


sys.exit(main())
