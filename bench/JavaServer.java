// The Java servers scripts/bench drives with wrk: each answers every HTTP
// request it reads (up to the blank line) with a fixed 13-byte response,
// keeping the connection unless the request says "Connection: close".
//
// Usage: java JavaServer.java thread|nio PORT_FILE
//   thread  a thread per connection (java.net.Socket)
//   nio     one selector thread (java.nio SocketChannel)
// Also: java JavaServer.java hello   (prints "hello": JVM start-up)
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

public class JavaServer {
  static final byte[] KEEP = ("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello, world\n")
      .getBytes(StandardCharsets.ISO_8859_1);
  static final byte[] CLOSE = ("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhello, world\n")
      .getBytes(StandardCharsets.ISO_8859_1);

  // The requests complete in `pending` (consumed from it); false if one
  // asked to close.
  static boolean answer(StringBuilder pending, OutputStream out, ByteBuffer[] nio)
      throws IOException {
    int end;
    while ((end = pending.indexOf("\r\n\r\n")) >= 0) {
      boolean close = pending.substring(0, end).toLowerCase().contains("connection: close");
      pending.delete(0, end + 4);
      if (out != null) {
        out.write(close ? CLOSE : KEEP);
      } else {
        nio[0] = ByteBuffer.wrap(close ? CLOSE : KEEP);
      }
      if (close) return false;
    }
    return true;
  }

  static void serve(Socket conn) {
    try (conn) {
      InputStream in = conn.getInputStream();
      OutputStream out = conn.getOutputStream();
      byte[] buf = new byte[4096];
      StringBuilder pending = new StringBuilder();
      int n;
      while ((n = in.read(buf)) != -1) {
        pending.append(new String(buf, 0, n, StandardCharsets.ISO_8859_1));
        if (!answer(pending, out, null)) return;
      }
    } catch (IOException e) {
      // the client went away
    }
  }

  static void threads(ServerSocket listener) throws IOException {
    while (true) {
      Socket s = listener.accept();
      Thread t = new Thread(() -> serve(s));
      t.setDaemon(true);
      t.start();
    }
  }

  static void nio(ServerSocketChannel server) throws IOException {
    Selector selector = Selector.open();
    server.configureBlocking(false);
    server.register(selector, SelectionKey.OP_ACCEPT);
    ByteBuffer buf = ByteBuffer.allocate(4096);
    ByteBuffer[] reply = new ByteBuffer[1];
    while (true) {
      selector.select();
      for (SelectionKey key : selector.selectedKeys()) {
        if (key.isAcceptable()) {
          SocketChannel ch = server.accept();
          if (ch == null) continue;
          ch.configureBlocking(false);
          ch.register(selector, SelectionKey.OP_READ, new StringBuilder());
          continue;
        }
        SocketChannel ch = (SocketChannel) key.channel();
        StringBuilder pending = (StringBuilder) key.attachment();
        buf.clear();
        int n;
        try {
          n = ch.read(buf);
        } catch (IOException e) {
          n = -1;
        }
        if (n == -1) {
          ch.close();
          continue;
        }
        pending.append(new String(buf.array(), 0, n, StandardCharsets.ISO_8859_1));
        boolean keep = true;
        while (keep) {
          reply[0] = null;
          int before = pending.length();
          keep = answer(pending, null, reply);
          if (reply[0] == null) break;
          while (reply[0].hasRemaining()) ch.write(reply[0]);
          if (pending.length() == before) break;
        }
        if (!keep) ch.close();
      }
      selector.selectedKeys().clear();
    }
  }

  public static void main(String[] args) throws Exception {
    if (args[0].equals("hello")) {
      System.out.println("hello");
      return;
    }
    InetSocketAddress any = new InetSocketAddress(InetAddress.getLoopbackAddress(), 0);
    Path portFile = Path.of(args[1]);
    Path tmp = Path.of(args[1] + ".tmp");
    if (args[0].equals("thread")) {
      ServerSocket listener = new ServerSocket();
      listener.bind(any, 512);
      Files.writeString(tmp, String.valueOf(listener.getLocalPort()));
      Files.move(tmp, portFile, StandardCopyOption.ATOMIC_MOVE);
      threads(listener);
    } else {
      ServerSocketChannel server = ServerSocketChannel.open();
      server.bind(any, 512);
      Files.writeString(tmp, String.valueOf(server.socket().getLocalPort()));
      Files.move(tmp, portFile, StandardCopyOption.ATOMIC_MOVE);
      nio(server);
    }
  }
}
