// A thread-per-connection server whose handler returns when read() gives
// -1 without closing the socket, which it keeps in a map: each connection
// its clients close stays in CLOSE_WAIT.
//
// Usage: java ThreadServer.java DONE_FILE [HOLD_SECONDS [gc]]
//
// Its own client: connects three times, sends a line, reads the echo and
// closes; waits until the server saw the three EOFs, holds the sockets
// HOLD_SECONDS more (2 by default: past the audit's grace), writes
// DONE_FILE and exits 0. With "gc", the handler keeps no reference to the
// socket, and after the hold the program runs the garbage collector, whose
// Cleaner closes the sockets late; it then waits a second more.
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

public class ThreadServer {
  static final Map<Integer, Socket> connections = new ConcurrentHashMap<>();  // BUG (deliberate)
  static final Semaphore eofs = new Semaphore(0);

  static int readSome(InputStream in, byte[] buf) throws IOException {
    return in.read(buf);  // E2E:java_read
  }

  static boolean keep = true;

  static void handle(Socket conn) {
    if (keep) connections.put(conn.getPort(), conn);
    try {
      InputStream in = conn.getInputStream();
      OutputStream out = conn.getOutputStream();
      byte[] buf = new byte[4096];
      while (true) {
        int n = readSome(in, buf);  // E2E:java_handle
        if (n == -1) {
          eofs.release();
          return;  // the peer closed: but conn is never closed
        }
        out.write(buf, 0, n);
      }
    } catch (IOException e) {
      System.err.println("handler: " + e);
    }
  }

  static void serve(ServerSocket listener) {
    try {
      while (true) {
        Socket conn = listener.accept();  // E2E:java_accept
        Thread t = new Thread(() -> handle(conn));
        t.setDaemon(true);
        t.start();
      }
    } catch (IOException e) {
      System.err.println("accept: " + e);
    }
  }

  public static void main(String[] args) throws Exception {
    long hold = args.length > 1 ? Long.parseLong(args[1]) : 2;
    keep = !(args.length > 2 && args[2].equals("gc"));
    ServerSocket listener = new ServerSocket(0, 16, InetAddress.getLoopbackAddress());
    Thread acceptor = new Thread(() -> serve(listener));
    acceptor.setDaemon(true);
    acceptor.start();
    for (int i = 0; i < 3; i++) {
      try (Socket c = new Socket(InetAddress.getLoopbackAddress(), listener.getLocalPort())) {
        c.getOutputStream().write("hello\n".getBytes(StandardCharsets.UTF_8));
        c.getInputStream().read(new byte[100]);
      }  // E2E:java_client_close
    }
    for (int i = 0; i < 3; i++) {
      if (!eofs.tryAcquire(10, TimeUnit.SECONDS)) {
        System.err.println("the server did not see three EOFs");
        System.exit(1);
      }
    }
    Thread.sleep(hold * 1000);
    if (!keep) {
      for (int i = 0; i < 5; i++) {
        System.gc();
        Thread.sleep(200);
      }
    }
    Files.writeString(Path.of(args[0]), "done\n");
    System.exit(0);
  }
}
