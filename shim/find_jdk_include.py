#!/usr/bin/env python3
"""Prints the include directory of a JDK that has jvmti.h (JAVA_HOME's,
Debian's default-java, else the first under /usr/lib/jvm), or nothing."""
import glob
import os

homes = [os.environ.get("JAVA_HOME", ""), "/usr/lib/jvm/default-java"]
homes += sorted(glob.glob("/usr/lib/jvm/*"))
for home in homes:
    if home and os.path.exists(os.path.join(home, "include", "jvmti.h")):
        print(os.path.join(home, "include"))
        break
