#include "collector/python_lines.h"

namespace closeaudit {
namespace {

// 3.8 and 3.9: (bytecode delta, line delta) byte pairs, the line delta
// signed; a line applies from its bytecode offset on.
// Lines are kept in 64 bits and checked against this, so that no table can
// overflow them.
constexpr int64_t kMaxLine = 1 << 30;

int Line(int64_t line) { return line > 0 && line <= kMaxLine ? static_cast<int>(line) : 0; }

int FromLnotab(int firstlineno, std::string_view table, uint32_t offset) {
  int64_t line = firstlineno;
  uint64_t addr = 0;
  for (size_t i = 0; i + 1 < table.size(); i += 2) {
    addr += static_cast<unsigned char>(table[i]);
    if (addr > offset) break;
    line += static_cast<signed char>(table[i + 1]);
  }
  return Line(line);
}

// 3.10: (range length, line delta) byte pairs, each a range of bytecode
// with its line; a line delta of -128 is a range without one.
int FromLinetable310(int firstlineno, std::string_view table, uint32_t offset) {
  int64_t line = firstlineno;
  uint64_t start = 0;
  for (size_t i = 0; i + 1 < table.size(); i += 2) {
    uint64_t end = start + static_cast<unsigned char>(table[i]);
    int delta = static_cast<signed char>(table[i + 1]);
    bool none = delta == -128;
    if (!none) line += delta;
    if (offset >= start && offset < end) return none ? 0 : Line(line);
    start = end;
  }
  return 0;
}

// 3.11 and later: the location table. Each entry starts with a byte whose
// top bit is set: its code (bits 3-6) and its length in code units less one
// (bits 0-2). Varints are 6-bit chunks, least significant first, bit 6 set
// while more follow.
class Locations {
 public:
  explicit Locations(std::string_view t) : t_(t) {}
  bool done() const { return at_ >= t_.size(); }
  bool ok() const { return ok_; }
  uint8_t Byte() {
    if (at_ >= t_.size()) {
      ok_ = false;
      return 0;
    }
    return static_cast<uint8_t>(t_[at_++]);
  }
  // At most 32 bits: no line or column needs more, and the sums stay far
  // from overflowing.
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 36; shift += 6) {
      uint8_t b = Byte();
      if (!ok_ || (b & 0x80)) {  // ran off the end, or into the next entry
        ok_ = false;
        return 0;
      }
      v |= static_cast<uint64_t>(b & 0x3f) << shift;
      if (!(b & 0x40)) return v;
    }
    ok_ = false;
    return 0;
  }
  int64_t Svarint() {
    uint64_t u = Varint();
    return (u & 1) ? -static_cast<int64_t>(u >> 1) : static_cast<int64_t>(u >> 1);
  }

 private:
  std::string_view t_;
  size_t at_ = 0;
  bool ok_ = true;
};

int FromLocations(int firstlineno, std::string_view table, uint32_t offset) {
  Locations in(table);
  int64_t line = firstlineno;
  uint64_t start = 0;
  while (!in.done()) {
    uint8_t first = in.Byte();
    if (!(first & 0x80)) return 0;  // not the start of an entry
    int code = (first >> 3) & 0x0f;
    uint64_t end = start + 2 * (static_cast<uint64_t>(first & 0x07) + 1);
    bool none = false;
    switch (code) {
      case 15:  // no location
        none = true;
        break;
      case 14:  // long form
        line += in.Svarint();
        in.Varint();  // end line delta
        in.Varint();  // start column + 1
        in.Varint();  // end column + 1
        break;
      case 13:  // no column information
        line += in.Svarint();
        break;
      case 10:
      case 11:
      case 12:  // one line form: the line delta is in the code
        line += code - 10;
        in.Byte();
        in.Byte();
        break;
      default:  // short form: the same line, one byte of columns
        in.Byte();
        break;
    }
    if (!in.ok() || line > kMaxLine || line < -kMaxLine) return 0;
    if (offset >= start && offset < end) return none ? 0 : Line(line);
    start = end;
  }
  return 0;
}

}  // namespace

int PythonLine(int minor, int firstlineno, std::string_view table,
               uint32_t offset) {
  if (minor == 8 || minor == 9) return FromLnotab(firstlineno, table, offset);
  if (minor == 10) return FromLinetable310(firstlineno, table, offset);
  // 3.14 keeps 3.11's location table (InternalDocs/code_objects.md).
  if (minor >= 11 && minor <= 14) return FromLocations(firstlineno, table, offset);
  return 0;
}

}  // namespace closeaudit
