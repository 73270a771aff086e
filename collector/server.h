// Collector: accepts traced processes on a Unix socket and drains their rings.
//
// One thread runs everything: Poll() waits for new connections, hellos and
// process exits (pidfds), and drains every ring at least every
// kDrainIntervalMs. Each record goes to the sink (the analyzer and the trace
// file), which must outlive the Collector. A connection that sends anything but a valid hello is dropped with
// one log line; other processes are unaffected.
#ifndef CLOSEAUDIT_COLLECTOR_SERVER_H_
#define CLOSEAUDIT_COLLECTOR_SERVER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "collector/ingest.h"

namespace closeaudit {

inline constexpr int kDrainIntervalMs = 10;

class Collector {
 public:
  explicit Collector(IngestSink& sink);
  ~Collector();
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Creates the socket's directory (mode 0700) if needed and listens.
  absl::Status Listen(const std::string& socket_path);

  // Waits up to timeout_ms for something to do, then does it.
  void Poll(int timeout_ms);

  // Drains every ring completely; processes that have exited are finished.
  void DrainAll();

  // Streams whose process is still alive.
  size_t live_streams() const;
  // The exit status (as a shell shows it) of a process this program reaped
  // itself, for a stream that registers or finishes after the reaping.
  void NoteExit(pid_t pid, int status) { known_exits_[pid] = status; }

  // Events the processes still alive could not hand over so far (their
  // rings were full); a finished process's count is in its exit record.
  uint64_t live_dropped_events() const;
  // The pids of the processes still alive.
  std::vector<uint32_t> live_pids() const;
  // Streams ever accepted.
  uint32_t streams_seen() const { return next_stream_ - 1; }
  // The longest time between the end of one Poll()'s wait and the start of
  // the next: all the work of one turn of the caller's loop, draining
  // included, while the rings waited.
  uint64_t longest_away_ns() const { return longest_away_ns_; }
  const std::string& socket_path() const { return socket_path_; }

 private:
  struct Pending;  // a connection that has not finished its hello
  struct Stream;   // a registered process image

  void Accept();
  void ReadHello(Pending& pending);
  void StartStream(Pending& pending, Hello hello);
  void FinishStream(Stream& stream, bool exited);
  // Whether a live ring still has events after this turn's budget.
  bool DrainStream(Stream& stream, bool producer_dead);
  void Drop(Pending& pending, const std::string& why);

  IngestSink& sink_;
  int listen_fd_ = -1;
  std::string socket_path_;
  uint32_t next_stream_ = 1;
  uint64_t woke_ns_ = 0;  // when the latest Poll() stopped waiting
  uint64_t longest_away_ns_ = 0;
  bool backlog_ = false;  // the last Poll() left events in a ring
  std::vector<std::unique_ptr<Pending>> pending_;
  std::vector<std::unique_ptr<Stream>> streams_;
  absl::flat_hash_map<pid_t, int> known_exits_;
};

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_SERVER_H_
