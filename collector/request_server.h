// A one-request-per-connection server that lives inside the collector's
// loop: the control socket (`closeaudit status`, `closeaudit snapshot`) and
// the Prometheus /metrics endpoint. Everything is non-blocking and Poll()
// never waits, so a slow or silent client cannot stall draining the rings.
//
// A connection sends one request, ended by `terminator` ("\n" for the
// control socket, "\r\n\r\n" for HTTP); the handler's reply is written back
// and the connection closed. Requests over 8 KiB, or not complete within
// 2 s, get no reply, and a reply not taken within 2 s is dropped; at most 32
// connections are served at once. A handler may answer later (a snapshot
// that takes seconds): the connection then waits up to 2 minutes for it,
// while Poll() goes on serving the others.
#ifndef CLOSEAUDIT_COLLECTOR_REQUEST_SERVER_H_
#define CLOSEAUDIT_COLLECTOR_REQUEST_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace closeaudit {

class RequestServer {
 public:
  // Gives the answer to one request, once, from the thread that calls
  // Poll(); a no-op once the connection or the server is gone.
  using Reply = std::function<void(std::string answer)>;
  // Answers a request at once, or returns nullopt and calls `later`.
  using Handler = std::function<std::optional<std::string>(
      std::string_view request, Reply later)>;

  RequestServer(std::string terminator, Handler handler);
  ~RequestServer();
  RequestServer(const RequestServer&) = delete;
  RequestServer& operator=(const RequestServer&) = delete;

  // A Unix stream socket at `path` (mode 0600), replacing a stale one.
  absl::Status ListenUnix(const std::string& path);
  // A TCP socket on "HOST:PORT" ("127.0.0.1:9464", "[::1]:0"; port 0 picks
  // one). Returns the address it is bound to, in the same form.
  absl::StatusOr<std::string> ListenTcp(const std::string& host_port);

  // Accepts, reads, answers and closes whatever is ready, without waiting.
  void Poll();

 private:
  struct Conn {
    int fd = -1;
    uint64_t id = 0;
    std::string in;
    std::string out;
    size_t sent = 0;
    bool waiting = false;  // for the handler's later answer
    bool answered = false;
    uint64_t deadline_ns = 0;
  };
  void Accept();
  // False when the connection is done (closed).
  bool Serve(Conn& conn, short revents);
  void Answer(uint64_t id, std::string answer);

  std::string terminator_;
  Handler handler_;
  int listen_fd_ = -1;
  std::string unix_path_;
  std::vector<Conn> conns_;
  uint64_t next_id_ = 1;
  // What a Reply holds of the server: gone with it.
  std::shared_ptr<RequestServer*> self_ = std::make_shared<RequestServer*>(this);
};

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_REQUEST_SERVER_H_
