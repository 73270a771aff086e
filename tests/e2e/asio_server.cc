// E2E test program: a boost.asio server whose read handler ignores the EOF.
//
// Usage: asio_server DONE_FILE bad|good
//
// Each accepted connection is a Session kept in a registry (g_sessions)
// that reads with async_read_some. When the peer closes, the completion
// handler gets asio::error::eof:
//
//   bad:  it just returns (E2E:asio_handler). The registry still owns the
//         session, so its socket stays open in CLOSE_WAIT.
//   good: it closes the socket.
//
// asio reads the EOF in one of two places, by timing: speculatively inside
// the async_read_some call itself (when the FIN is already there), or later
// from its reactor inside io_context::run. Both happen here: two clients
// send a line and hang up before the server runs (speculative), two more
// wait 300 ms before they hang up (reactor). They are one bug, and must be
// one finding; the program's frames sit under more than 20 of asio's.
//
// After 2.5 s (past the driver's 1 s grace period) the io_context stops,
// DONE_FILE gets "done\n" and the program exits 0.
// boost 1.74's awaitable.hpp uses std::exchange without <utility>.
#include <utility>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

bool g_good = false;

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket socket) : socket_(std::move(socket)) {}

  void Start() { DoRead(); }

 private:
  void DoRead() {
    auto self = shared_from_this();
    socket_.async_read_some(  /* E2E:async_read */
        asio::buffer(buf_), [this, self](boost::system::error_code ec,
                                         std::size_t) {
          if (ec) {  /* E2E:asio_handler */
            if (g_good) socket_.close();
            return;
          }
          DoRead();
        });
  }

  tcp::socket socket_;
  char buf_[1024];
};

std::vector<std::shared_ptr<Session>> g_sessions;

void DoAccept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](boost::system::error_code ec,
                                    tcp::socket socket) {
    if (!ec) {
      auto s = std::make_shared<Session>(std::move(socket));
      g_sessions.push_back(s);
      s->Start();
    }
    DoAccept(acceptor);
  });
}

void HangUp(const tcp::endpoint& to, std::chrono::milliseconds after) {
  asio::io_context io;
  tcp::socket c(io);
  c.connect(to);
  asio::write(c, asio::buffer("hello\n", 6));
  std::this_thread::sleep_for(after);
  c.close();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[2], "bad") != 0 &&
                    std::strcmp(argv[2], "good") != 0)) {
    std::fprintf(stderr, "usage: asio_server DONE_FILE bad|good\n");
    return 2;
  }
  g_good = std::strcmp(argv[2], "good") == 0;
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  tcp::endpoint at = acceptor.local_endpoint();
  // Hung up before the server reads: asio finds the EOF speculatively.
  for (int i = 0; i < 2; ++i) HangUp(at, std::chrono::milliseconds(0));
  // Hung up while the server waits in its reactor.
  std::thread late([at] {
    for (int i = 0; i < 2; ++i) HangUp(at, std::chrono::milliseconds(300));
  });
  DoAccept(acceptor);
  asio::steady_timer stop(io, std::chrono::milliseconds(2500));
  stop.async_wait([&io](boost::system::error_code) { io.stop(); });
  io.run();  /* E2E:loop */
  late.join();
  // The sessions' sockets belong to `io`: they go before it does.
  g_sessions.clear();
  std::string tmp = std::string(argv[1]) + ".tmp";
  std::ofstream(tmp) << "done\n";
  std::rename(tmp.c_str(), argv[1]);
  return 0;
}
