#include "collector/python_lines.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

// tests/data/python_lines/X.Y.txt: what CPython X.Y itself says of the lines
// of some functions (gen.py).
struct Function {
  std::string name;
  int firstlineno = 0;
  std::string table;
  std::vector<std::pair<uint32_t, int>> lines;  // (byte offset, line)
};

std::vector<Function> Load(const std::string& version, int* minor) {
  std::ifstream in(std::string(CLOSEAUDIT_TEST_DATA) + "/python_lines/" +
                   version + ".txt");
  std::vector<Function> out;
  std::string word;
  while (in >> word) {
    if (word == "version") {
      std::string v;
      in >> v;
      *minor = std::stoi(v.substr(v.find('.') + 1));
    } else if (word == "function") {
      Function f;
      std::string hex;
      in >> f.name >> f.firstlineno >> hex;
      if (hex != "-") f.table = absl::HexStringToBytes(hex);
      out.push_back(std::move(f));
    } else if (word == "line" && !out.empty()) {
      uint32_t offset;
      int line;
      in >> offset >> line;
      out.back().lines.emplace_back(offset, line);
    }
  }
  return out;
}

class PythonLineTest : public testing::TestWithParam<std::string> {};

TEST_P(PythonLineTest, AgreesWithTheInterpreterOnEveryInstruction) {
  int minor = 0;
  std::vector<Function> functions = Load(GetParam(), &minor);
  ASSERT_GE(functions.size(), 8u) << "no data for " << GetParam();
  int checked = 0;
  for (const Function& f : functions) {
    for (const auto& [offset, line] : f.lines) {
      EXPECT_EQ(PythonLine(minor, f.firstlineno, f.table, offset), line)
          << GetParam() << " " << f.name << " offset " << offset;
      ++checked;
    }
  }
  EXPECT_GT(checked, 300);
}

INSTANTIATE_TEST_SUITE_P(Versions, PythonLineTest,
                         testing::Values("3.8", "3.9", "3.10", "3.11", "3.12",
                                         "3.13"),
                         [](const auto& info) {
                           std::string name = "v" + info.param;
                           name.erase(name.find('.'), 1);
                           return name;
                         });

// A table cut anywhere, or full of garbage, gives a line or none, and never
// reads past its end (ASan would say so).
TEST(PythonLine, HostileTablesAreSafe) {
  for (const char* version : {"3.8", "3.10", "3.11", "3.13"}) {
    int minor = 0;
    std::vector<Function> functions = Load(version, &minor);
    ASSERT_FALSE(functions.empty());
    const Function& f = functions.back();
    for (size_t cut = 0; cut <= f.table.size(); ++cut) {
      std::string part = f.table.substr(0, cut);
      for (uint32_t offset : {0u, 2u, 40u, 1000u, 0xffffffffu}) {
        int line = PythonLine(minor, f.firstlineno, part, offset);
        EXPECT_GE(line, 0);
      }
    }
  }
  // Lines that would overflow give none, not undefined behaviour (UBSan).
  EXPECT_EQ(PythonLine(8, 2147483647, std::string("\x02\x7f", 2), 4), 0);
  EXPECT_EQ(PythonLine(10, 2147483647, std::string("\x04\x7f", 2), 0), 0);
  std::string big("\xf0\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x3f", 11);
  EXPECT_EQ(PythonLine(11, 1, big, 0), 0);  // a varint of 60 bits
  std::string junk(64, '\xff');
  EXPECT_GE(PythonLine(11, 1, junk, 10), 0);
  EXPECT_EQ(PythonLine(11, 1, std::string(8, '\x7f'), 0), 0);  // no entry start
  EXPECT_EQ(PythonLine(7, 1, "\x02\x01", 0), 0);   // a version it does not know
  EXPECT_EQ(PythonLine(15, 1, "\x80\x00", 0), 0);
}

}  // namespace
}  // namespace closeaudit
