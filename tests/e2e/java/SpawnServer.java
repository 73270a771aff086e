// A server that, for each connection, runs a child process with
// ProcessBuilder while it holds the socket, answers with the child's
// output and closes the socket: correct, and the child inherits no socket
// (the JDK's spawn helper closes every descriptor the child is not given).
//
// Usage: java SpawnServer.java DONE_FILE
//
// Its own client: three connections, each read to its end and closed; then
// it writes DONE_FILE and exits 0.
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;

public class SpawnServer {
  static void serve(ServerSocket listener) {
    while (true) {
      try (Socket conn = listener.accept()) {
        Process p = new ProcessBuilder("/bin/echo", "spawned").start();
        byte[] out = p.getInputStream().readAllBytes();
        p.waitFor();
        OutputStream o = conn.getOutputStream();
        o.write(out);
      } catch (IOException | InterruptedException e) {
        return;
      }
    }
  }

  public static void main(String[] args) throws Exception {
    ServerSocket listener = new ServerSocket(0, 16, InetAddress.getLoopbackAddress());
    Thread t = new Thread(() -> serve(listener));
    t.setDaemon(true);
    t.start();
    for (int i = 0; i < 3; i++) {
      try (Socket c = new Socket(InetAddress.getLoopbackAddress(), listener.getLocalPort())) {
        InputStream in = c.getInputStream();
        String got = new String(in.readAllBytes());
        if (!got.equals("spawned\n")) {
          System.err.println("unexpected answer: " + got);
          System.exit(1);
        }
      }
    }
    listener.close();
    Files.writeString(Path.of(args[0]), "done\n");
    System.exit(0);
  }
}
