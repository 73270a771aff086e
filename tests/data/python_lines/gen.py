"""Writes the line tables of a few functions, and the line of every
instruction as the interpreter itself reports it, for
collector/python_lines_test.cc.

Usage: pythonX.Y gen.py > X.Y.txt   (any CPython 3.8 or later)

For 3.8 and 3.9 the table is co_lnotab and the lines come from
dis.findlinestarts(); from 3.10 the table is co_linetable and the lines come
from co_lines(). Offsets are in bytes of co_code; a line of 0 is "none".
The output is lines of text: "version X.Y", then per function
"function QUALNAME FIRSTLINENO TABLE-IN-HEX" followed by its
"line OFFSET LINE" lines.
"""

import dis
import sys
import textwrap

# Functions with what line tables have to encode: forward and backward
# jumps in the line number, lines more than 127 apart, long runs of
# bytecode on one line, and lines with no code.
SOURCE = textwrap.dedent('''
    def simple(a, b):
        c = a + b
        return c


    def loop(n):
        total = 0
        for i in range(n):
            if i % 3:
                total += i
            else:
                total -= 1
        while total > 100:
            total //= 2
        return total


    def multiline(x):
        return (x +
                1 +
                2 +
                3)


    def long_line(x):
        return [x, x + 1, x + 2, x + 3, x + 4, x + 5, x + 6, x + 7, x + 8, x + 9, x + 10, x + 11, x + 12, x + 13, x + 14, x + 15, x + 16, x + 17, x + 18, x + 19, x + 20, x + 21, x + 22, x + 23, x + 24, x + 25, x + 26, x + 27, x + 28, x + 29, x + 30, x + 31, x + 32, x + 33, x + 34, x + 35, x + 36, x + 37, x + 38, x + 39, x + 40, x + 41, x + 42, x + 43, x + 44, x + 45, x + 46, x + 47, x + 48, x + 49, x + 50, x + 51, x + 52, x + 53, x + 54, x + 55, x + 56, x + 57, x + 58, x + 59, x + 60, x + 61, x + 62, x + 63, x + 64, x + 65, x + 66, x + 67, x + 68, x + 69, x + 70, x + 71, x + 72, x + 73, x + 74, x + 75, x + 76, x + 77, x + 78, x + 79]


    def far_apart(x):
        y = x
''' + "\n" * 300 + '''
        y += 1
''' + "\n" * 200 + '''
        return y


    def handler(sock):
        try:
            data = sock.recv(4096)
        except OSError:
            return None
        finally:
            pass
        if not data:
            return None
        with open("/dev/null") as f:
            f.write(data)
        return len(data)


    class Server:
        def serve(self, conn):
            def inner():
                return conn.recv(1)
            return inner()
''')


def lines_of(code):
    if sys.version_info >= (3, 10):
        out = []
        for start, end, line in code.co_lines():
            for off in range(start, end, 2):
                out.append([off, line or 0])
        return out
    starts = list(dis.findlinestarts(code))
    out = []
    for off in range(0, len(code.co_code), 2):
        line = 0
        for s, l in starts:
            if s <= off:
                line = l
        out.append([off, line])
    return out


def codes(code):
    yield code
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            yield from codes(c)


def main():
    top = compile(SOURCE, "sample.py", "exec")
    print("version %d.%d" % sys.version_info[:2])
    for code in codes(top):
        if code is top:
            continue
        table = code.co_linetable if sys.version_info >= (3, 10) else code.co_lnotab
        name = getattr(code, "co_qualname", code.co_name).replace(" ", "_")
        print("function %s %d %s" % (name, code.co_firstlineno, table.hex() or "-"))
        for off, line in lines_of(code):
            print("line %d %d" % (off, line))


main()
