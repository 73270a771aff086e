// The finding rules that keep well-behaved programs free of findings, on
// hand-built records: which closes are bad_close, which inherited sockets
// are exec_inherited; and what a report of a program that could not be
// audited shows instead of findings.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "collector/analyzer_feed.h"
#include "collector/report.h"
#include "common/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using namespace testing_feed;  // NOLINT: the fixtures of analyzer_feed.h

std::vector<const Finding*> OfKind(const Report& r, const std::string& kind) {
  std::vector<const Finding*> out;
  for (const Finding& f : r.findings) {
    if (f.kind == kind) out.push_back(&f);
  }
  return out;
}

// --- bad_close ---------------------------------------------------------------

TEST(BadClose, CloseOfANumberNeverOpenIsNoFinding) {
  Feed run;
  run.Process(1, 100);
  // What bash does in every pipeline: it closes pipe ends that may be
  // closed already. The audit never saw a socket on those numbers.
  for (int i = 0; i < 3; ++i) {
    run.CloseUntracked(1, 3 + i % 2, kT0 + (i + 1) * kMs);
  }
  run.End(kT0 + kSec);
  EXPECT_THAT(run.Build().findings, IsEmpty());
}

TEST(BadClose, SecondCloseOfASocketIsADoubleClose) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  run.CloseUntracked(1, 5, kT0 + 3 * kMs, kEofRef);
  // A never-opened number beside it changes nothing.
  run.CloseUntracked(1, 9, kT0 + 4 * kMs, kEofRef2);
  run.End(kT0 + kSec);
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.kind, "bad_close");
  EXPECT_EQ(f.severity, "error");
  EXPECT_EQ(f.reason, "double_close");
  EXPECT_EQ(f.count, 1);
  ASSERT_NE(Stack(f, "close"), nullptr);
  EXPECT_THAT(Addresses(*Stack(f, "close")), ElementsAreArray(kEofFrames));
  ASSERT_NE(Stack(f, "previous_close"), nullptr);
  EXPECT_THAT(Addresses(*Stack(f, "previous_close")),
              ElementsAreArray(kCloseFrames));
  ASSERT_EQ(f.examples.size(), 1u);
  EXPECT_EQ(f.examples[0].pid, 100u);
  EXPECT_EQ(f.examples[0].fd, 5);
}

TEST(BadClose, EbadfInAnotherProcessIsNoDoubleClose) {
  Feed run;
  run.Process(1, 100);
  run.Process(2, 200);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  run.CloseUntracked(2, 5, kT0 + 3 * kMs);
  run.End(kT0 + kSec);
  EXPECT_THAT(run.Build().findings, IsEmpty());
}

TEST(BadClose, ANewSocketOnTheNumberEndsTheDoubleCloseWindow) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  run.Accept(1, 5, 102, kT0 + 3 * kMs);
  run.Close(1, 5, 102, kT0 + 4 * kMs);
  run.End(kT0 + kSec);
  EXPECT_THAT(OfKind(run.Build(), "bad_close"), IsEmpty());
}

TEST(BadClose, SweepAfterClosingASocketIsNoDoubleClose) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  // close(3) ... close(20) from one loop: fd 5 among them.
  for (int fd = 3; fd <= 20; ++fd) {
    run.CloseUntracked(1, fd, kT0 + (10 + fd) * kMs, kEofRef2);
  }
  run.End(kT0 + kSec);
  EXPECT_THAT(OfKind(run.Build(), "bad_close"), IsEmpty());
}

// --- exec_inherited ------------------------------------------------------------

constexpr uint16_t kConnectedTcp =
    wire::kStateStream | wire::kStateInet | wire::kStateConnected;

// A server (pid 100) that accepted `fds.size()` connections, then exec'd a
// program that found connection i open on fds[i] (with kInherited's aux[i]),
// never used them and exited 5 s later.
Report ExecWith(const std::vector<int>& fds, const std::vector<uint32_t>& aux) {
  Feed run;
  run.Process(1, 100);
  for (size_t i = 0; i < fds.size(); ++i) {
    run.Accept(1, 10 + static_cast<int>(i), 101 + i, kT0 + kMs);
  }
  run.Process(2, 100, "/usr/sbin/helper", {"helper"});  // the exec
  for (size_t i = 0; i < fds.size(); ++i) {
    run.Inherited(2, fds[i], 101 + i, kT0 + 2 * kMs, aux[i], kConnectedTcp);
  }
  run.Exit(2, kT0 + 5 * kSec);
  run.End(kT0 + 6 * kSec);
  return run.Build();
}

TEST(ExecInherited, ASocketNobodyHandedOverIsReported) {
  Report r = ExecWith({7}, {0});
  std::vector<const Finding*> fs = OfKind(r, "exec_inherited");
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0]->count, 1);
  ASSERT_EQ(fs[0]->examples.size(), 1u);
  EXPECT_EQ(fs[0]->examples[0].fd, 7);
  EXPECT_EQ(fs[0]->examples[0].exe, "/usr/sbin/helper");
}

TEST(ExecInherited, StdinStdoutAndStderrAreHandedOverOnPurpose) {
  // inetd: the connection becomes the program's input and output.
  EXPECT_THAT(OfKind(ExecWith({0, 1, 2}, {0, 0, 0}), "exec_inherited"),
              IsEmpty());
}

TEST(ExecInherited, ListenFdsAreHandedOverOnPurpose) {
  EXPECT_THAT(OfKind(ExecWith({3, 4}, {wire::kInheritedListenFd,
                                       wire::kInheritedListenFd}),
                     "exec_inherited"),
              IsEmpty());
  // The same numbers without the shim's word for it are leaks.
  Report r = ExecWith({3, 4}, {0, 0});
  std::vector<const Finding*> fs = OfKind(r, "exec_inherited");
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0]->count, 2);
}

// --- a run where nothing could be audited -------------------------------------

constexpr int kCloseWait = 8, kFinWait2 = 5;  // the kernel's TCP states

// A program the shim could not enter, whose sockets the kernel sampled: two
// in CLOSE_WAIT for 3 s, one in CLOSE_WAIT only briefly, one in FIN_WAIT2
// for 2 s.
Feed UnauditedServer() {
  Feed run;
  run.Note("server is statically linked", /*unaudited=*/true);
  auto sample = [&](uint64_t t, uint64_t inode, int state, int fd) {
    run.Kernel(t, 9000 + inode, inode, state, {{4242, fd}}, "127.0.0.1:8080",
               absl::StrCat("127.0.0.1:", 50000 + inode));
  };
  for (uint64_t t = kT0 + kSec; t <= kT0 + 4 * kSec; t += kSec / 2) {
    sample(t, 1, kCloseWait, 4);
    sample(t, 2, kCloseWait, 5);
    if (t <= kT0 + 3 * kSec) sample(t, 4, kFinWait2, 7);
  }
  sample(kT0 + 4 * kSec, 3, kCloseWait, 6);
  run.End(kT0 + 5 * kSec);
  return run;
}

TEST(Unaudited, NoFindingsButWhatTheKernelShowed) {
  Report r = UnauditedServer().Build();
  EXPECT_FALSE(r.audited);
  EXPECT_THAT(r.findings, IsEmpty());
  ASSERT_EQ(r.kernel_observations.size(), 2u);
  const KernelObservation& fin = r.kernel_observations[0];
  EXPECT_EQ(fin.pid, 4242u);
  EXPECT_EQ(fin.exe, "");
  EXPECT_EQ(fin.tcp_state, "FIN_WAIT2");
  EXPECT_EQ(fin.count, 1);
  EXPECT_EQ(fin.longest_ms, 2000);
  const KernelObservation& cw = r.kernel_observations[1];
  EXPECT_EQ(cw.tcp_state, "CLOSE_WAIT");
  EXPECT_EQ(cw.count, 2);  // not the one seen once, within the grace period
  EXPECT_EQ(cw.longest_ms, 3000);
  ASSERT_EQ(cw.sockets.size(), 2u);
  EXPECT_EQ(cw.sockets[0].fd, 4);
  EXPECT_EQ(cw.sockets[0].local, "127.0.0.1:8080");
  EXPECT_EQ(cw.sockets[0].peer, "127.0.0.1:50001");
  EXPECT_EQ(cw.sockets[1].fd, 5);
}

TEST(Unaudited, TheLiveCountsHaveNoFindingsEither) {
  Feed run = UnauditedServer();
  LiveStatus live = run.analyzer().Live(kT0 + 5 * kSec);
  EXPECT_EQ(live.findings, 0);
  EXPECT_TRUE(live.finding_sockets.empty());
}

TEST(Unaudited, EveryFormSaysItIsTheKernelsViewWithoutStacksOrAdvice) {
  Report r = UnauditedServer().Build();
  std::string text = RenderText(r);
  EXPECT_THAT(text, HasSubstr("NOTHING WAS AUDITED"));
  EXPECT_THAT(text, HasSubstr("pid 4242: 2 sockets in CLOSE_WAIT for longer "
                              "than the 1000 ms grace period"));
  EXPECT_THAT(text, HasSubstr("fd 4 127.0.0.1:8080 <- 127.0.0.1:50001"));
  EXPECT_THAT(text, Not(HasSubstr("fix:")));
  std::string json = RenderJson(r);
  EXPECT_THAT(json, HasSubstr("\"kernel_observations\":[{\"pid\":4242,"
                              "\"exe\":null,\"tcp_state\":\"FIN_WAIT2\""));
  EXPECT_THAT(json, HasSubstr("\"findings\":[\n  ]"));
  std::string html = RenderHtml(r);
  EXPECT_THAT(html, HasSubstr("What the kernel showed"));
  EXPECT_THAT(html, Not(HasSubstr("<tr class=row>")));
  EXPECT_EQ(RenderFolded(r), "");
}

TEST(Unaudited, AnAuditedRunKeepsItsKernelConfirmedFindings) {
  // The same samples in a run that was audited: findings, not observations.
  Feed run;
  run.Process(1, 4242);
  for (uint64_t t = kT0 + kSec; t <= kT0 + 4 * kSec; t += kSec / 2) {
    run.Kernel(t, 9001, 1, kCloseWait, {{4242, 4}});
  }
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  EXPECT_TRUE(r.audited);
  EXPECT_THAT(r.kernel_observations, IsEmpty());
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].kind, "close_wait_leak");
  EXPECT_TRUE(r.findings[0].confirmed_by_kernel);
}

// --- event libraries and the program's own frames -------------------------

// Two bugs whose EOF stacks are the same (the library's loop): the handlers
// the library passed the EOF to keep them apart.
TEST(CloseWaitLeak, HandlersTellApartLeaksWithOneEofStack) {
  Feed run;
  run.Process(1, 100);
  constexpr uint64_t kOnReadA = kBias + 0x6000, kOnReadB = kBias + 0x7000;
  for (uint64_t i = 0; i < 5; ++i) {
    uint64_t cookie = 200 + i;
    int fd = static_cast<int>(5 + i);
    run.Accept(1, fd, cookie, kT0 + kMs);
    run.Handler(1, fd, cookie, kT0 + 2 * kMs, wire::HandlerKind::kUvRead,
                i < 3 ? kOnReadA : kOnReadB);
    run.Eof(1, fd, cookie, kT0 + 3 * kMs);
  }
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  std::vector<const Finding*> leaks = OfKind(r, "close_wait_leak");
  ASSERT_EQ(leaks.size(), 2u);
  for (const Finding* f : leaks) {
    const std::vector<Frame>* handler = Stack(*f, "handler");
    ASSERT_NE(handler, nullptr);
    ASSERT_EQ(handler->size(), 1u);
    EXPECT_EQ((*handler)[0].address, f->count == 3 ? kOnReadA : kOnReadB);
    EXPECT_TRUE((*handler)[0].in_app);
    ASSERT_NE(Stack(*f, "registered"), nullptr);
    EXPECT_THAT(f->message, HasSubstr("UV_EOF"));
    EXPECT_THAT(f->advice, HasSubstr("uv_close"));
  }
}

TEST(CloseWaitLeak, BuffereventFreedWithoutCloseOnFreeIsSaidSo) {
  Feed run;
  run.Process(1, 100);
  for (uint32_t flags : {0u, wire::kHandlerCloseOnFree}) {
    uint64_t cookie = flags ? 301 : 300;
    int fd = flags ? 6 : 5;
    run.Accept(1, fd, cookie, kT0 + kMs);
    run.Handler(1, fd, cookie, kT0 + kMs, wire::HandlerKind::kBufferevent, 0,
                flags);
    run.Handler(1, fd, cookie, kT0 + kMs, wire::HandlerKind::kBuffereventCb,
                kBias + 0x6000);
    run.Eof(1, fd, cookie, kT0 + 2 * kMs);
    // Freed in the handler; with BEV_OPT_CLOSE_ON_FREE libevent would have
    // closed the fd, so a socket still open then is another bug.
    run.Handler(1, fd, cookie, kT0 + 3 * kMs,
                wire::HandlerKind::kBuffereventFree, 0, 0, kCloseRef);
  }
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  std::vector<const Finding*> leaks = OfKind(r, "close_wait_leak");
  ASSERT_EQ(leaks.size(), 2u);
  int freed = 0;
  for (const Finding* f : leaks) {
    if (Stack(*f, "freed") == nullptr) {
      EXPECT_THAT(f->advice, HasSubstr("bufferevent_free"));
      continue;
    }
    ++freed;
    ASSERT_NE(Stack(*f, "bufferevent"), nullptr);
    EXPECT_THAT(f->message, HasSubstr("BEV_OPT_CLOSE_ON_FREE"));
    EXPECT_THAT(f->advice, HasSubstr("BEV_OPT_CLOSE_ON_FREE"));
  }
  EXPECT_EQ(freed, 1);
}

TEST(CloseWaitLeak, AnUnknownHandlerKindIsIgnored) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 200, kT0 + kMs);
  run.Event(1, wire::EventType::kHandler, 5, 200, kT0 + kMs, kTcp, kAcceptRef,
            kBias + 0x6000, 0xee);
  run.Handler(1, 5, 999, kT0 + kMs, wire::HandlerKind::kUvRead, kBias + 0x6000);
  run.Eof(1, 5, 200, kT0 + 2 * kMs);
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  std::vector<const Finding*> leaks = OfKind(r, "close_wait_leak");
  ASSERT_EQ(leaks.size(), 1u);
  EXPECT_EQ(Stack(*leaks[0], "handler"), nullptr);
}

TEST(InApp, NotAppAndAppPathDecideTheFramesOfAReport) {
  for (bool excluded : {false, true}) {
    AnalyzerOptions options;
    if (excluded) options.app.not_app = {"closeaudit-analyzer-test"};
    Feed run(kSec, options);
    run.Process(1, 100);
    run.Accept(1, 5, 200, kT0 + kMs);
    run.Eof(1, 5, 200, kT0 + 2 * kMs);
    run.End(kT0 + 5 * kSec);
    Report r = run.Build();
    ASSERT_EQ(r.findings.size(), 1u);
    const std::vector<Frame>* eof = Stack(r.findings[0], "eof_seen");
    ASSERT_NE(eof, nullptr);
    for (const Frame& f : *eof) EXPECT_EQ(f.in_app, !excluded);
    // Without any frame of the program's own, the sentence names the code
    // the EOF was read in, not a function of it.
    if (excluded) {
      EXPECT_THAT(r.findings[0].message, HasSubstr("code in server"));
    } else {
      EXPECT_THAT(r.findings[0].message, HasSubstr("server+0x2100"));
    }
  }
}

// A leak read inside an interpreter whose program's frames are not recorded:
// the sentence says so rather than naming an interpreter function, and the
// advice is Python's.
TEST(CloseWaitLeak, InsideAnInterpreterTheSentenceNamesNoFunctionOfIt) {
  Feed run;
  run.Process(1, 100, "/usr/bin/python3.11", {"python3"}, kBias,
              "/usr/bin/python3.11");
  run.Accept(1, 5, 200, kT0 + kMs);
  run.Eof(1, 5, 200, kT0 + 2 * kMs);
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_THAT(r.findings[0].message,
              HasSubstr("code in python3.11 (the program's frames in that "
                        "runtime are not recorded)"));
  EXPECT_THAT(r.findings[0].advice, HasSubstr("sock.close()"));
}

// The Node.js agent tells a server's listening socket, once, where its
// listeners were added; every socket accepted there, before the note as
// after it, is named by them rather than by uv__accept.
TEST(CloseWaitLeak, NodeServerToldOnItsListeningSocketNamesEachConnection) {
  Feed run;
  run.Process(1, 100, "/usr/bin/node", {"node"});
  constexpr uint64_t kListener = 50;
  run.Event(1, wire::EventType::kSocket, 3, kListener, kT0, kTcp);
  run.Event(1, wire::EventType::kListen, 3, kListener, kT0, kTcp, 0, 0, 0,
            wire::kStateListening);
  auto node = [&](wire::NodeRole role, uint32_t ref) {
    uint32_t aux = static_cast<uint32_t>(wire::HandlerKind::kNode) |
                   static_cast<uint32_t>(role) << wire::kHandlerNodeRoleShift |
                   wire::kHandlerNodeHalfOpen;
    run.Event(1, wire::EventType::kHandler, 3, kListener, kT0 + 2 * kMs, kTcp,
              ref, 0, aux);
  };
  for (uint64_t i = 0; i < 3; ++i) {
    uint64_t cookie = 200 + i;
    int fd = static_cast<int>(5 + i);
    run.Accept(1, fd, cookie, kT0 + kMs + i);  // accepted on fd 3
    if (i == 0) {
      node(wire::NodeRole::kServer, kEofRef2);
      node(wire::NodeRole::kEnd, kCloseRef);
    }
    run.Eof(1, fd, cookie, kT0 + 3 * kMs);
  }
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  std::vector<const Finding*> leaks = OfKind(r, "close_wait_leak");
  ASSERT_EQ(leaks.size(), 1u);
  const Finding& f = *leaks[0];
  EXPECT_EQ(f.count, 3);
  const std::vector<Frame>* created = Stack(f, "created");
  ASSERT_NE(created, nullptr);
  EXPECT_EQ(Addresses(*created), kEofFrames2);
  const std::vector<Frame>* end = Stack(f, "end_listener");
  ASSERT_NE(end, nullptr);
  EXPECT_EQ(Addresses(*end), kCloseFrames);
  EXPECT_THAT(f.message, HasSubstr("allowHalfOpen"));
}

// JIT code replaced at an address: an event whose stack the library wrote
// before (the very same addresses) is named by the code there at its time.
TEST(CloseWaitLeak, JitCodeIsNamedAsOfEachEvent) {
  Feed run;
  run.Process(1, 100, "/usr/bin/node", {"node"});
  constexpr uint64_t kJit = 0x7f0000000000;
  constexpr uint32_t kJitRef = 300;
  auto jit = [&](uint64_t end, const char* name) {
    run.Add(ModuleRecord{1, kJit, kJit, end,
                         std::string(kJitModulePrefix) + name, ""});
  };
  jit(kJit + 0x80, "JS:~first /srv/a.js:3:1");
  run.Add(StackRecord{1, kJitRef, {kJit + 0x10}, {}});
  run.Accept(1, 5, 200, kT0 + kMs);
  run.Eof(1, 5, 200, kT0 + 2 * kMs, kJitRef);
  jit(kJit + 0x40, "JS:~second /srv/b.js:7:1");  // after the first EOF
  run.Accept(1, 6, 201, kT0 + 3 * kMs);
  run.Eof(1, 6, 201, kT0 + 4 * kMs, kJitRef);
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  std::vector<const Finding*> leaks = OfKind(r, "close_wait_leak");
  ASSERT_EQ(leaks.size(), 2u);
  std::vector<std::string> named;
  for (const Finding* f : leaks) {
    const std::vector<Frame>* eof = Stack(*f, "eof_seen");
    ASSERT_NE(eof, nullptr);
    ASSERT_FALSE(eof->empty());
    EXPECT_EQ(eof->front().language, "js");
    named.push_back(absl::StrCat(eof->front().function, "@", eof->front().line));
  }
  std::sort(named.begin(), named.end());
  EXPECT_THAT(named, ElementsAreArray({"first@3", "second@7"}));
}

// --- a runtime's shutdown before its close ------------------------------------

void ClosedConnected(Feed& run, int fd, uint64_t cookie, uint64_t t) {
  run.Event(1, wire::EventType::kClose, fd, cookie, t, 0, kCloseRef, 0, 0,
            wire::kStateConnected);
}

// The JDK's Socket.close() shuts the output, then closes: the shutdown is
// sent without a stack, and the TIME_WAIT it leads to is the close's.
TEST(TimeWait, ARuntimesShutdownBeforeItsCloseHasTheClosesStack) {
  Feed run;
  run.Process(1, 100);
  for (uint64_t i = 0; i < 2; ++i) {
    uint64_t cookie = 200 + i;
    int fd = static_cast<int>(5 + i);
    run.Accept(1, fd, cookie, kT0 + kMs);
    run.Event(1, wire::EventType::kShutdown, fd, cookie, kT0 + 2 * kMs, kTcp,
              /*blob=*/0, /*arg=*/0, SHUT_WR | wire::kShutdownBeforeClose,
              wire::kStateConnected);
    ClosedConnected(run, fd, cookie, kT0 + 2 * kMs);
  }
  // One the program shut down itself, with its own stack: its own group.
  run.Accept(1, 7, 202, kT0 + kMs);
  run.Event(1, wire::EventType::kShutdown, 7, 202, kT0 + 2 * kMs, kTcp,
            kEofRef2, 0, SHUT_WR, wire::kStateConnected);
  ClosedConnected(run, 7, 202, kT0 + 3 * kMs);
  run.End(kT0 + 5 * kSec);
  Report r = run.Build();
  std::vector<const Finding*> waits = OfKind(r, "time_wait");
  ASSERT_EQ(waits.size(), 2u);
  for (const Finding* f : waits) {
    const std::vector<Frame>* close = Stack(*f, "close");
    ASSERT_NE(close, nullptr);
    ASSERT_FALSE(close->empty());
    EXPECT_EQ(close->front().address,
              f->count == 2 ? kCloseFrames.front() : kEofFrames2.front());
  }
}

}  // namespace
}  // namespace closeaudit
