// The source line of an instruction in a CPython code object, from the code
// object's line table, as the interpreter itself would compute it.
//
// The table's format depends on the version: co_lnotab (3.8, 3.9), the
// 3.10 co_linetable, and the location table of 3.11 and later (CPython's
// Objects/locations.md). The collector decodes them itself, from bytes the
// library copied out of the process: asking the interpreter would mean
// calling into it from a thread that holds no GIL.
//
// Every table is treated as hostile: a malformed or truncated one yields no
// line, never a read past its end.
#ifndef CLOSEAUDIT_COLLECTOR_PYTHON_LINES_H_
#define CLOSEAUDIT_COLLECTOR_PYTHON_LINES_H_

#include <cstdint>
#include <string_view>

namespace closeaudit {

// The line of the instruction at byte offset `offset` of co_code in a code
// object of CPython 3.`minor` whose first line is `firstlineno`; 0 when the
// table gives it none, or the version or table is not one this knows.
int PythonLine(int minor, int firstlineno, std::string_view table,
               uint32_t offset);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_PYTHON_LINES_H_
