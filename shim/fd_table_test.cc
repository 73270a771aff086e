#include "shim/fd_table.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace closeaudit::shim {
namespace {

// The table is 256 KiB of top-level pointers: keep it off the stack, and give
// every test a fresh one so chunk creation is exercised each time.
std::unique_ptr<FdTable> NewTable() { return std::make_unique<FdTable>(); }

constexpr int kThreads = 8;

TEST(FdTable, FindBeforeAnySetIsNull) {
  auto table = NewTable();
  EXPECT_EQ(table->Find(0), nullptr);
  EXPECT_EQ(table->Find(3), nullptr);
  EXPECT_EQ(table->Find(FdTable::kChunkSize), nullptr);
}

TEST(FdTable, SetThenFindSeesFields) {
  auto table = NewTable();
  table->Set(3, 0x1234, 77, kStateStream | kStateInet);
  FdEntry* e = table->Find(3);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->cookie.load(), 0x1234u);
  EXPECT_EQ(e->inode.load(), 77u);
  EXPECT_EQ(e->state.load(), kStateStream | kStateInet);
  EXPECT_EQ(e->last_use_ip.load(), 0u);
  // Neighbours in the same chunk exist but are not tracked.
  FdEntry* other = table->Find(4);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->cookie.load(), 0u);
  EXPECT_EQ(table->Release(4), 0u);
}

TEST(FdTable, SetOverwritesAndResetsLastUse) {
  auto table = NewTable();
  table->Set(9, 1, 10, kStateStream);
  table->Find(9)->last_use_ip.store(0xdeadbeef);
  table->Set(9, 2, 20, kStateListening);
  FdEntry* e = table->Find(9);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->cookie.load(), 2u);
  EXPECT_EQ(e->inode.load(), 20u);
  EXPECT_EQ(e->state.load(), static_cast<uint32_t>(kStateListening));
  EXPECT_EQ(e->last_use_ip.load(), 0u);
}

TEST(FdTable, ZeroCookieStillTracksTheSocket) {
  // A socket whose cookie could not be read is still a socket: it must be
  // visible to Release() and ForEach().
  auto table = NewTable();
  table->Set(5, 0, 99, kStateStream);
  int visited = 0;
  table->ForEach([&](int fd, FdEntry&) {
    EXPECT_EQ(fd, 5);
    ++visited;
  });
  EXPECT_EQ(visited, 1);
  EXPECT_NE(table->Release(5), 0u);
  EXPECT_EQ(table->Release(5), 0u);
}

TEST(FdTable, ReleaseReturnsCookieOnceAndCopiesEntry) {
  auto table = NewTable();
  table->Set(7, 0xabc, 42, kStateStream | kStateEofSeen);
  table->Find(7)->last_use_ip.store(0x401000);
  uint32_t generation = table->Find(7)->generation.load();

  FdEntry copy{};
  EXPECT_EQ(table->Release(7, &copy), 0xabcu);
  EXPECT_EQ(copy.inode.load(), 42u);
  EXPECT_EQ(copy.state.load(), kStateStream | kStateEofSeen);
  EXPECT_EQ(copy.last_use_ip.load(), 0x401000u);
  EXPECT_EQ(copy.generation.load(), generation);

  EXPECT_EQ(table->Find(7)->cookie.load(), 0u);
  EXPECT_EQ(table->Release(7), 0u);
  EXPECT_EQ(table->Release(7, &copy), 0u);
}

TEST(FdTable, ReleaseOfUnknownFdReturnsZero) {
  auto table = NewTable();
  EXPECT_EQ(table->Release(12), 0u);  // no chunk at all
  table->Set(1, 5, 5, 0);
  EXPECT_EQ(table->Release(12), 0u);  // chunk, but not tracked
  EXPECT_EQ(table->Release(1), 5u);
}

TEST(FdTable, GenerationIncrementsOnEachSet) {
  auto table = NewTable();
  table->Set(11, 1, 1, 0);
  uint32_t g0 = table->Find(11)->generation.load();
  table->Set(11, 2, 2, 0);
  EXPECT_EQ(table->Find(11)->generation.load(), g0 + 1);
  EXPECT_EQ(table->Release(11), 2u);
  table->Set(11, 3, 3, 0);
  EXPECT_EQ(table->Find(11)->generation.load(), g0 + 2);
  // Another fd's Set does not touch this one.
  table->Set(12, 4, 4, 0);
  EXPECT_EQ(table->Find(11)->generation.load(), g0 + 2);
}

TEST(FdTable, ChunksAreCreatedLazilyForLargeFds) {
  auto table = NewTable();
  constexpr int kBig = 5'000'000;
  EXPECT_EQ(table->Find(kBig), nullptr);
  table->Set(3, 3, 3, 0);
  // A low fd's chunk does not make the far one exist.
  EXPECT_EQ(table->Find(kBig), nullptr);

  table->Set(kBig, 0x5000, 6, kStateStream);
  FdEntry* e = table->Find(kBig);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->cookie.load(), 0x5000u);
  EXPECT_EQ(table->Get(kBig), e);

  // Exactly the 1024-entry chunk around it now exists.
  int chunk_start = kBig & ~(FdTable::kChunkSize - 1);
  ASSERT_NE(table->Find(chunk_start), nullptr);
  ASSERT_NE(table->Find(chunk_start + FdTable::kChunkSize - 1), nullptr);
  EXPECT_EQ(table->Find(chunk_start - 1), nullptr);
  EXPECT_EQ(table->Find(chunk_start + FdTable::kChunkSize), nullptr);
  EXPECT_EQ(table->Find(chunk_start + 1) - table->Find(chunk_start), 1);
}

TEST(FdTable, OutOfRangeFdsAreRejected) {
  auto table = NewTable();
  const long max = FdTable::kMaxFd;
  ASSERT_LE(max, static_cast<long>(INT32_MAX));
  for (int fd : {-1, -1024, INT32_MIN, static_cast<int>(max),
                 static_cast<int>(max) + 1, INT32_MAX}) {
    EXPECT_EQ(table->Find(fd), nullptr) << fd;
    EXPECT_EQ(table->Get(fd), nullptr) << fd;
    table->Set(fd, 1, 1, 0);  // must be a no-op, not a crash
    EXPECT_EQ(table->Find(fd), nullptr) << fd;
    EXPECT_EQ(table->Release(fd), 0u) << fd;
  }
  // The last valid fd works.
  int last = static_cast<int>(max - 1);
  table->Set(last, 0x77, 1, 0);
  ASSERT_NE(table->Find(last), nullptr);
  EXPECT_EQ(table->Release(last), 0x77u);
  int visited = 0;
  table->ForEach([&](int, FdEntry&) { ++visited; });
  EXPECT_EQ(visited, 0);
}

TEST(FdTable, ForEachVisitsExactlyTheTrackedFds) {
  auto table = NewTable();
  const std::map<int, uint64_t> want = {
      {0, 100},     {1, 101},         {1023, 102},
      {1024, 103},  {70000, 104},     {5'000'000, 105},
      {static_cast<int>(FdTable::kMaxFd - 1), 106}};
  for (const auto& [fd, cookie] : want) table->Set(fd, cookie, fd, 0);
  table->Set(2, 200, 2, 0);
  ASSERT_EQ(table->Release(2), 200u);  // released: not visited
  ASSERT_NE(table->Get(3000), nullptr);  // chunk exists, never set

  std::map<int, uint64_t> seen;
  std::vector<int> order;
  table->ForEach([&](int fd, FdEntry& e) {
    EXPECT_TRUE(seen.emplace(fd, e.cookie.load()).second) << "twice: " << fd;
    EXPECT_EQ(e.inode.load(), static_cast<uint64_t>(fd));
    order.push_back(fd);
  });
  EXPECT_EQ(seen, want);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

TEST(FdTable, ClearForgetsEverythingButKeepsChunks) {
  auto table = NewTable();
  table->Set(4, 1, 1, 0);
  table->Set(2000, 2, 2, 0);
  table->Clear();
  int visited = 0;
  table->ForEach([&](int, FdEntry&) { ++visited; });
  EXPECT_EQ(visited, 0);
  ASSERT_NE(table->Find(4), nullptr);
  EXPECT_EQ(table->Release(4), 0u);
  EXPECT_EQ(table->Release(2000), 0u);
}

TEST(FdTable, ConcurrentGetOfAFreshChunkAgreesOnOneChunk) {
  for (int iter = 0; iter < 50; ++iter) {
    auto table = NewTable();
    std::barrier start(kThreads);
    std::vector<FdEntry*> got(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        got[t] = table->Get(4096 + t);
      });
    }
    for (auto& th : threads) th.join();
    FdEntry* base = table->Find(4096);
    ASSERT_NE(base, nullptr);
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(got[t], base + t) << t;
  }
}

// Several closers of the same fds: each cookie goes to exactly one of them.
TEST(FdTable, RacingReleaseHandsEachCookieToOneCaller) {
  constexpr int kFds = 64;
  constexpr int kIterations = 300;
  auto table = NewTable();
  std::barrier phase(kThreads + 1);
  std::vector<std::vector<uint64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int iter = 0; iter < kIterations; ++iter) {
        phase.arrive_and_wait();  // table filled
        // Start at different fds so the threads really collide.
        for (int i = 0; i < kFds; ++i) {
          int fd = (i + t * 7) % kFds;
          uint64_t c = table->Release(fd);
          if (c != 0) got[t].push_back(c);
        }
        phase.arrive_and_wait();  // all released
      }
    });
  }
  for (int iter = 0; iter < kIterations; ++iter) {
    for (int fd = 0; fd < kFds; ++fd) {
      table->Set(fd, uint64_t{1} + iter * kFds + fd, fd, kStateStream);
    }
    phase.arrive_and_wait();
    phase.arrive_and_wait();
  }
  for (auto& th : threads) th.join();

  std::vector<uint64_t> all;
  for (const auto& v : got) all.insert(all.end(), v.begin(), v.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kFds) * kIterations);
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i], i + 1) << "a cookie was lost or handed out twice";
  }
}

// Set/Find/Release from many threads on private and shared fds: no crash, no
// cookie handed out twice, and private fds behave exactly as if alone.
TEST(FdTable, ConcurrentSetFindReleaseStress) {
  constexpr int kShared = 48;
  constexpr int kPrivate = 32;
  constexpr int kRounds = 20000;
  constexpr int kSharedBase = 3 * FdTable::kChunkSize + 100;  // fresh chunk
  auto table = NewTable();
  auto private_fd = [](int t, int i) { return 10 * FdTable::kChunkSize + t * 200 + i; };
  auto cookie_of = [](int t, uint64_t n) { return (uint64_t(t + 1) << 48) | n; };

  std::barrier start(kThreads);
  std::vector<std::vector<uint64_t>> released(kThreads);
  std::atomic<int> private_errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t n = 0;
      uint32_t rng = 0x9e3779b9u * (t + 1);
      auto next = [&] {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        return rng;
      };
      start.arrive_and_wait();
      for (int round = 0; round < kRounds; ++round) {
        // Private fds: this thread alone, so it must see its own writes.
        int pfd = private_fd(t, round % kPrivate);
        uint64_t pc = cookie_of(t, ++n);
        table->Set(pfd, pc, pc, kStateStream);
        FdEntry* pe = table->Find(pfd);
        if (!pe || pe->cookie.load(std::memory_order_acquire) != pc ||
            pe->inode.load(std::memory_order_relaxed) != pc) {
          private_errors.fetch_add(1);
        }
        if (round % 3 == 0) {
          uint64_t got = table->Release(pfd);
          if (got != pc) private_errors.fetch_add(1);
        }
        // Shared fds: a free-for-all.
        int sfd = kSharedBase + static_cast<int>(next() % kShared);
        switch (next() % 3) {
          case 0:
            table->Set(sfd, cookie_of(t, ++n), sfd, kStateStream);
            break;
          case 1: {
            FdEntry* e = table->Find(sfd);
            if (e) (void)e->cookie.load(std::memory_order_acquire);
            break;
          }
          case 2: {
            uint64_t c = table->Release(sfd);
            if (c != 0) released[t].push_back(c);
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(private_errors.load(), 0);

  // Collect what is still tracked; it must be exactly the shared fds still
  // set plus the private fds whose last Set was not released.
  std::set<int> tracked;
  table->ForEach([&](int fd, FdEntry&) { tracked.insert(fd); });
  for (int fd : tracked) {
    bool shared = fd >= kSharedBase && fd < kSharedBase + kShared;
    bool priv = false;
    for (int t = 0; t < kThreads; ++t) {
      for (int i = 0; i < kPrivate; ++i) priv |= fd == private_fd(t, i);
    }
    EXPECT_TRUE(shared || priv) << "stray fd " << fd;
  }
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPrivate; ++i) {
      int fd = private_fd(t, i);
      // The last round touching slot i is the largest round < kRounds with
      // round % kPrivate == i; it released iff that round % 3 == 0.
      int last = i + ((kRounds - 1 - i) / kPrivate) * kPrivate;
      EXPECT_EQ(tracked.count(fd) == 1, last % 3 != 0) << "fd " << fd;
    }
  }
  // Drain the shared fds: no cookie ever came out twice.
  std::vector<uint64_t> all;
  for (const auto& v : released) all.insert(all.end(), v.begin(), v.end());
  for (int i = 0; i < kShared; ++i) {
    uint64_t c = table->Release(kSharedBase + i);
    if (c != 0) all.push_back(c);
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  int left = 0;
  table->ForEach([&](int fd, FdEntry&) {
    EXPECT_FALSE(fd >= kSharedBase && fd < kSharedBase + kShared);
    ++left;
  });
  EXPECT_LE(left, kThreads * kPrivate);
}

}  // namespace
}  // namespace closeaudit::shim
