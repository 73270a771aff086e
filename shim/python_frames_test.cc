// The 3.14 layout, read from a _Py_DebugOffsets (no 3.14 interpreter runs
// here, so its bytes are built by hand, at 3.14's positions).
#include "shim/python_frames.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

namespace closeaudit::shim::python {
namespace {

struct alignas(4096) Offsets {
  uint64_t word[760 / 8] = {};
  void Set(size_t byte, uint64_t v) { word[byte / 8] = v; }
};

// Plausible 3.14 values: each struct's size, and the offsets in it.
Offsets Sample() {
  Offsets o;
  std::memcpy(o.word, "xdebugpy", 8);
  o.Set(8, 0x030E00F0);  // 3.14.0 final
  o.Set(16, 0);          // free_threaded
  o.Set(24, 2000);  o.Set(32, 1600);        // runtime_state: _finalizing
  o.Set(48, 9000);  o.Set(64, 8);           // interpreter_state: next
  o.Set(176, 400);  o.Set(200, 16);         // thread_state: interp
  o.Set(208, 72);   o.Set(216, 152);        // current_frame, thread_id
  o.Set(248, 80);   o.Set(256, 8);          // interpreter_frame: previous
  o.Set(264, 0);    o.Set(272, 56);         // executable, instr_ptr
  o.Set(288, 74);                           // owner
  o.Set(312, 216);  o.Set(320, 112);        // code_object: filename
  o.Set(328, 120);  o.Set(336, 128);        // name, qualname
  o.Set(344, 136);  o.Set(352, 68);         // linetable, firstlineno
  o.Set(384, 208);                          // co_code_adaptive
  o.Set(400, 16);   o.Set(408, 8);          // pyobject: ob_type
  o.Set(592, 40);   o.Set(600, 16);         // bytes_object: ob_size
  o.Set(608, 32);                           // ob_sval
  o.Set(616, 40);   o.Set(624, 32);         // unicode_object: state
  o.Set(632, 16);   o.Set(640, 40);         // length, asciiobject_size
  return o;
}

TEST(Python314, ReadsTheLayoutFromTheDebugOffsets) {
  static Offsets o = Sample();
  internal::Offsets314 got{};
  bool free_threaded = true;
  ASSERT_TRUE(internal::Read314(&o, &got, &free_threaded));
  EXPECT_FALSE(free_threaded);
  EXPECT_EQ(got.ts_frame, 72);
  EXPECT_EQ(got.ts_thread_id, 152);
  EXPECT_EQ(got.fr_back, 8);
  EXPECT_EQ(got.fr_code, 0);
  EXPECT_EQ(got.fr_owner, 74);
  EXPECT_EQ(got.co_qualname, 128);
  EXPECT_EQ(got.co_code, 208);
  EXPECT_EQ(got.str_compact_data, 56);  // PyASCIIObject + utf8_length, utf8
  EXPECT_EQ(got.object_size, 16);
  EXPECT_EQ(got.code_tag_bits, 3);      // f_executable is a _PyStackRef
}

TEST(Python314, RefusesWhatIsNotA314ReleaseBuild) {
  internal::Offsets314 got{};
  bool free_threaded = false;
  static Offsets cookie = Sample();
  std::memcpy(cookie.word, "xdebugpx", 8);
  EXPECT_FALSE(internal::Read314(&cookie, &got, &free_threaded));
  static Offsets v315 = Sample();
  v315.Set(8, 0x030F00A1);
  EXPECT_FALSE(internal::Read314(&v315, &got, &free_threaded));
  static Offsets v313 = Sample();
  v313.Set(8, 0x030D00F0);
  EXPECT_FALSE(internal::Read314(&v313, &got, &free_threaded));
  static Offsets ft = Sample();
  ft.Set(16, 1);
  EXPECT_FALSE(internal::Read314(&ft, &got, &free_threaded));
  EXPECT_TRUE(free_threaded);
  // An offset outside its struct: not this layout (a pre-release, say).
  static Offsets outside = Sample();
  outside.Set(216, 4000);
  EXPECT_FALSE(internal::Read314(&outside, &got, &free_threaded));
  static Offsets no_size = Sample();
  no_size.Set(312, 0);
  EXPECT_FALSE(internal::Read314(&no_size, &got, &free_threaded));
}

}  // namespace
}  // namespace closeaudit::shim::python
