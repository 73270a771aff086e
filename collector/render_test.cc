// The HTML and folded renderers, on hand-made reports.
#include <string>

#include "absl/strings/str_split.h"
#include "collector/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Frame At(std::string function, std::string file, int line) {
  Frame f;
  f.function = std::move(function);
  f.file = std::move(file);
  f.line = line;
  return f;
}

Finding Leak(int64_t count, std::string caller) {
  Finding f;
  f.kind = "close_wait_leak";
  f.severity = "error";
  f.count = count;
  f.message = "left in CLOSE_WAIT";
  f.advice = "close it";
  // Innermost first, as the analyzer gives them.
  f.stacks.emplace_back(
      "eof_seen", std::vector<Frame>{At("read_eof", "/src/server.c", 10),
                                     At(caller, "/src/server.c", 20),
                                     At("main", "/src/server.c", 30),
                                     At("__libc_start_main", "", 0)});
  f.stacks.emplace_back("created", std::vector<Frame>{});
  return f;
}

int Count(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST(FoldedTest, OneLinePerStackOutermostFirstWithItsCount) {
  Report r;
  r.findings.push_back(Leak(3, "handle_a"));
  r.findings.push_back(Leak(5, "handle_b"));
  EXPECT_EQ(RenderFolded(r),
            "close_wait_leak;eof_seen;main (server.c:30);handle_a "
            "(server.c:20);read_eof (server.c:10) 3\n"
            "close_wait_leak;eof_seen;main (server.c:30);handle_b "
            "(server.c:20);read_eof (server.c:10) 5\n");
}

TEST(FoldedTest, IdenticalStacksAddUpAndSeparatorsStayOut) {
  Report r;
  r.findings.push_back(Leak(2, "ns;handler"));
  r.findings.push_back(Leak(4, "ns;handler"));
  std::string out = RenderFolded(r);
  std::vector<std::string> lines =
      absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << out;
  EXPECT_THAT(lines[0], HasSubstr("ns:handler (server.c:20)"));
  EXPECT_THAT(lines[0], testing::EndsWith(" 6"));
  EXPECT_EQ(Count(lines[0], ";"), 4) << lines[0];
}

// The text shows the program's frames, the library frame each called, and
// one line for each longer run of library frames it leaves out.
TEST(TextTest, StacksShowTheProgramsFramesAndSumUpTheLibraries) {
  auto lib = [](std::string function, std::string module) {
    Frame f;
    f.function = std::move(function);
    f.module = std::move(module);
    return f;
  };
  auto own = [](std::string function, int line) {
    Frame f = At(std::move(function), "/src/server.cc", line);
    f.module = "/src/server";
    f.in_app = true;
    return f;
  };
  std::vector<Frame> frames;
  for (int i = 0; i < 4; ++i) frames.push_back(lib("uv__read", "/usr/lib/libuv.so.1"));
  frames.push_back(lib("uv_run", "/usr/lib/libuv.so.1"));  // entered here
  frames.push_back(own("on_read", 30));
  frames.push_back(lib("helper", "/usr/lib/libfoo.so"));  // one: shown
  frames.push_back(own("main", 80));
  for (int i = 0; i < 3; ++i) frames.push_back(lib("outer", "/usr/lib/libbar.so"));
  Report r;
  Finding f = Leak(1, "x");
  f.stacks = {{"eof_seen", frames}};
  r.findings.push_back(f);
  std::string text = RenderText(r);
  EXPECT_THAT(text, HasSubstr("eof_seen:     ... 4 frames in libuv.so.1\n"
                              "                  uv_run (libuv.so.1)\n"
                              "                  on_read (server.cc:30)\n"
                              "                  helper (libfoo.so)\n"
                              "                  main (server.cc:80)\n"
                              "                  ... 3 frames in libbar.so\n"));
  EXPECT_THAT(text, Not(HasSubstr("uv__read")));
}

// The wrappers a command runs through are counted apart from the processes
// that held sockets.
TEST(TextTest, ProcessesWithoutSocketsAreCountedApart) {
  Report r;
  r.processes = 7;
  r.processes_with_sockets = 1;
  EXPECT_THAT(RenderText(r),
              HasSubstr(" in 1 process with sockets (6 others without); "));
  EXPECT_THAT(RenderJson(r), HasSubstr("\"processes\":7,\"processes_with_sockets\":1,"));
  r.processes_with_sockets = 7;
  EXPECT_THAT(RenderText(r), HasSubstr(" in 7 processes; "));
}

TEST(FoldedTest, EmptyReportIsEmpty) {
  EXPECT_EQ(RenderFolded(Report{}), "");
}

TEST(HtmlTest, OneCulpritRowPerFindingAndNoExternalResources) {
  Report r;
  r.findings.push_back(Leak(3, "handle_a"));
  r.findings.push_back(Leak(5, "handle_b"));
  std::string html = RenderHtml(r);
  EXPECT_EQ(Count(html, "<tr class=row>"), 2);
  EXPECT_THAT(html, HasSubstr("data-count=5"));
  EXPECT_THAT(html, HasSubstr("<td class=fn title=\"handle_b\">handle_b</td>"));
  EXPECT_THAT(html, HasSubstr(">server.c:20</td>"));
  // The culprit row names the innermost frame.
  EXPECT_THAT(html, HasSubstr("<td class=where>read_eof (server.c:10)</td>"));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("http://")));
  EXPECT_THAT(html, Not(HasSubstr("https://")));
  EXPECT_THAT(html, Not(HasSubstr("__libc_start_main")));
  // The kind's explanation is embedded, and open since it is present.
  EXPECT_THAT(html, HasSubstr("<details id=\"doc-close_wait_leak\" open>"));
  EXPECT_THAT(html, HasSubstr("What happens in TCP"));
}

TEST(HtmlTest, EscapesEverythingThatCameFromTheProgram) {
  Report r;
  Finding f = Leak(1, "<script>alert(1)</script>");
  f.message = "a \"quoted\" <b>message</b> & more";
  Example e;
  e.exe = "/tmp/<evil>";
  e.peer = "1.2.3.4:5'";
  f.examples.push_back(e);
  r.findings.push_back(f);
  ProcessSummary p;
  p.exe = "/bin/<x>";
  p.argv = {"<x>", "--flag=\"v\""};
  r.process_list.push_back(p);
  r.warnings.push_back("<warning>");
  std::string html = RenderHtml(r);
  EXPECT_THAT(html, Not(HasSubstr("<script>alert")));
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(html, Not(HasSubstr("<b>message</b>")));
  EXPECT_THAT(html, Not(HasSubstr("<evil>")));
  EXPECT_THAT(html, Not(HasSubstr("<warning>")));
  EXPECT_THAT(html, Not(HasSubstr("<x>")));
  EXPECT_THAT(html, HasSubstr("5&#39;"));
}

TEST(HtmlTest, TimelineDrawsCurvesKernelSamplesAndMarkers) {
  Report r;
  r.duration_s = 4;
  Finding f = Leak(2, "handle_a");
  f.began_ms = 1500;
  f.began_pid = 42;
  r.findings.push_back(f);
  Finding elsewhere = Leak(1, "handle_b");
  elsewhere.began_ms = 100;
  elsewhere.began_pid = 7;  // another process: no marker here
  r.findings.push_back(elsewhere);
  ProcessTimeline t;
  t.pid = 42;
  t.exe = "/srv/server";
  t.end_ms = 4000;
  t.points = {{0, 1, 0, std::nullopt},
              {1000, 3, 0, std::nullopt},
              {1500, 3, 2, std::nullopt},
              {2000, 3, 2, 2}};
  r.timelines.push_back(t);
  std::string html = RenderHtml(r);
  EXPECT_EQ(Count(html, "<figure class=timeline"), 1);
  EXPECT_EQ(Count(html, "<circle class=kcw"), 1);
  EXPECT_EQ(Count(html, "<line class=\"marker"), 1);
  EXPECT_THAT(html, HasSubstr("href=\"#f1\""));
  EXPECT_THAT(html, HasSubstr("<path class=open d=\"M"));
  EXPECT_THAT(html, HasSubstr("<path class=cw d=\"M"));
}

TEST(HtmlTest, NotAuditedSaysSoAndCleanSaysSo) {
  Report r;
  r.audited = false;
  EXPECT_THAT(RenderHtml(r), HasSubstr("NOTHING WAS AUDITED"));
  r.audited = true;
  EXPECT_THAT(RenderHtml(r), HasSubstr("No socket problems found"));
}

}  // namespace
}  // namespace closeaudit
