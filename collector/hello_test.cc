// The handshake a traced process sends first: HelloSize() and DecodeHello().
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "collector/ingest.h"
#include "common/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

wire::HelloMsg Header(uint32_t exe_len, uint32_t argv_len) {
  wire::HelloMsg m{};
  m.magic = wire::kHelloMagic;
  m.version = wire::kWireVersion;
  m.hello_size = sizeof(wire::HelloMsg);
  m.pid = 4242;
  m.ppid = 1;
  m.flags = wire::kHelloForked | wire::kHelloAfterExec;
  m.exe_len = exe_len;
  m.argv_len = argv_len;
  m.lib_version = 0x000102;  // 0.1.2
  m.start_mono_ns = 123456789;
  m.start_real_ns = 987654321;
  m.ring_bytes = 1 << 20;
  return m;
}

std::string Encode(const wire::HelloMsg& m, std::string_view tail = {}) {
  std::string out(reinterpret_cast<const char*>(&m), sizeof(m));
  out.append(tail);
  return out;
}

// A well-formed hello for exe and a NUL-separated argv blob.
std::string MakeHello(std::string_view exe, std::string_view argv) {
  return Encode(Header(static_cast<uint32_t>(exe.size()),
                       static_cast<uint32_t>(argv.size())),
                std::string(exe) + std::string(argv));
}

TEST(Hello, ValidHelloDecodes) {
  const std::string exe = "/usr/bin/server";
  const std::string argv("server\0--port\0" "8080\0", 19);
  std::string bytes = MakeHello(exe, argv);

  absl::StatusOr<size_t> size = HelloSize(bytes.substr(0, sizeof(wire::HelloMsg)));
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, sizeof(wire::HelloMsg) + exe.size() + argv.size());
  EXPECT_EQ(*size, bytes.size());

  absl::StatusOr<Hello> hello = DecodeHello(bytes);
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->exe, exe);
  EXPECT_THAT(hello->argv, ElementsAre("server", "--port", "8080"));
  EXPECT_EQ(hello->msg.pid, 4242u);
  EXPECT_EQ(hello->msg.ppid, 1u);
  EXPECT_EQ(hello->msg.flags, wire::kHelloForked | wire::kHelloAfterExec);
  EXPECT_EQ(hello->msg.start_mono_ns, 123456789u);
  EXPECT_EQ(hello->msg.start_real_ns, 987654321u);
  EXPECT_EQ(hello->msg.ring_bytes, 1u << 20);
  EXPECT_EQ(hello->msg.lib_version, 0x000102u);
}

TEST(Hello, ALibraryOlderThanItsVersionFieldStillDecodes) {
  // Before the field, those four bytes were reserved and always 0.
  wire::HelloMsg m = Header(1, 0);
  m.lib_version = 0;
  absl::StatusOr<Hello> hello = DecodeHello(Encode(m, "x"));
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->msg.lib_version, 0u);
  EXPECT_EQ(offsetof(wire::HelloMsg, lib_version), 28u);
}

TEST(Hello, EmptyArgvAndEmptyArguments) {
  absl::StatusOr<Hello> none = DecodeHello(MakeHello("/bin/x", ""));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->exe, "/bin/x");
  EXPECT_THAT(none->argv, IsEmpty());

  absl::StatusOr<Hello> blanks =
      DecodeHello(MakeHello("", std::string("a\0\0b\0", 5)));
  ASSERT_TRUE(blanks.ok()) << blanks.status();
  EXPECT_EQ(blanks->exe, "");
  EXPECT_THAT(blanks->argv, ElementsAre("a", "", "b"));
}

TEST(Hello, ArgvWithoutTrailingNulStillDecodes) {
  absl::StatusOr<Hello> hello =
      DecodeHello(MakeHello("/bin/cat", std::string("cat\0-n\0file", 11)));
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_THAT(hello->argv, ElementsAre("cat", "-n", "file"));

  absl::StatusOr<Hello> single = DecodeHello(MakeHello("/bin/cat", "cat"));
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_THAT(single->argv, ElementsAre("cat"));
}

TEST(Hello, BytesInExeAndArgvAreKept) {
  const std::string exe("/tmp/we\xff" "ird\n", 12);
  const std::string argv("\"quoted\"\0\x01\x80\0", 12);
  absl::StatusOr<Hello> hello = DecodeHello(MakeHello(exe, argv));
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->exe, exe);
  EXPECT_THAT(hello->argv, ElementsAre("\"quoted\"", std::string("\x01\x80", 2)));
}

TEST(Hello, ShortPrefixIsAnError) {
  std::string bytes = MakeHello("/bin/x", std::string("x\0", 2));
  for (size_t n = 0; n < sizeof(wire::HelloMsg); ++n) {
    EXPECT_FALSE(HelloSize(std::string_view(bytes).substr(0, n)).ok()) << n;
    EXPECT_FALSE(DecodeHello(std::string_view(bytes).substr(0, n)).ok()) << n;
  }
}

TEST(Hello, BadMagicIsAnError) {
  wire::HelloMsg m = Header(0, 0);
  m.magic = 0x46464947;
  absl::StatusOr<size_t> size = HelloSize(Encode(m));
  ASSERT_FALSE(size.ok());
  EXPECT_THAT(size.status().message(), HasSubstr("magic"));
  EXPECT_FALSE(DecodeHello(Encode(m)).ok());
}

TEST(Hello, WrongVersionIsAnErrorThatNamesTheVersion) {
  wire::HelloMsg m = Header(0, 0);
  m.version = 37;
  absl::StatusOr<size_t> size = HelloSize(Encode(m));
  ASSERT_FALSE(size.ok());
  EXPECT_THAT(size.status().message(), HasSubstr("version 37"));
  EXPECT_THAT(size.status().message(),
              HasSubstr(std::to_string(wire::kWireVersion)));
  EXPECT_FALSE(DecodeHello(Encode(m)).ok());
}

TEST(Hello, HelloSizeMismatchIsAnError) {
  for (uint16_t claimed : {0, 48, 55, 57, 64, 0xffff}) {
    wire::HelloMsg m = Header(0, 0);
    m.hello_size = claimed;
    EXPECT_FALSE(HelloSize(Encode(m)).ok()) << claimed;
    EXPECT_FALSE(DecodeHello(Encode(m)).ok()) << claimed;
  }
}

TEST(Hello, ExeLongerThanMaxPathIsAnError) {
  wire::HelloMsg m = Header(wire::kMaxPathBytes + 1, 0);
  EXPECT_FALSE(HelloSize(Encode(m)).ok());
  EXPECT_FALSE(
      DecodeHello(Encode(m, std::string(wire::kMaxPathBytes + 1, 'a'))).ok());
  // The limit itself is fine.
  m = Header(wire::kMaxPathBytes, 0);
  absl::StatusOr<size_t> size = HelloSize(Encode(m));
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, sizeof(m) + wire::kMaxPathBytes);
  absl::StatusOr<Hello> hello =
      DecodeHello(Encode(m, std::string(wire::kMaxPathBytes, 'a')));
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->exe.size(), wire::kMaxPathBytes);
}

TEST(Hello, TotalLargerThanMaxHelloIsAnError) {
  uint32_t room = wire::kMaxHelloBytes - sizeof(wire::HelloMsg);
  EXPECT_TRUE(HelloSize(Encode(Header(10, room - 10))).ok());
  EXPECT_FALSE(HelloSize(Encode(Header(10, room - 9))).ok());
  EXPECT_FALSE(HelloSize(Encode(Header(0, 0xffffffffu))).ok());
  EXPECT_FALSE(HelloSize(Encode(Header(0xffffffffu, 0xffffffffu))).ok());
  EXPECT_FALSE(DecodeHello(Encode(Header(10, room - 9),
                                  std::string(room + 1, 'x')))
                   .ok());
}

TEST(Hello, LengthMismatchIsAnError) {
  std::string bytes = MakeHello("/bin/x", std::string("x\0y\0", 4));
  ASSERT_TRUE(DecodeHello(bytes).ok());
  EXPECT_FALSE(DecodeHello(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(DecodeHello(bytes + "z").ok());
  EXPECT_FALSE(DecodeHello(bytes.substr(0, sizeof(wire::HelloMsg))).ok());
  // HelloSize only needs the header and ignores what follows.
  absl::StatusOr<size_t> size = HelloSize(bytes + "garbage");
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, bytes.size());
}

}  // namespace
}  // namespace closeaudit
