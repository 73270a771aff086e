// The torture matrix's Java programs (java_torture.py): each writes a
// transcript of what it observed, which must be the same with and without
// closeaudit.
//
// Usage: java Workload.java MODE TRANSCRIPT
//   load  a thread-per-connection server (a pool of 8 handlers) and 8 client
//         threads making 20,000 connections, then an NIO selector server
//         and 2,000 connections, each echoing a line and closed
//   exit  exits with status 3 while four connections are open
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
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
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

public class Workload {
  static PrintWriter out;

  static void echo(Socket conn) {
    try (conn) {
      InputStream in = conn.getInputStream();
      OutputStream o = conn.getOutputStream();
      byte[] buf = new byte[256];
      int n;
      while ((n = in.read(buf)) != -1) o.write(buf, 0, n);
    } catch (IOException e) {
      out.println("handler error: " + e);
    }
  }

  // Connects `count` times to port, sends a line, reads it back, closes;
  // returns the bytes echoed.
  static long client(int port, int count, int id) throws IOException {
    long bytes = 0;
    for (int i = 0; i < count; i++) {
      try (Socket c = new Socket(InetAddress.getLoopbackAddress(), port)) {
        byte[] line = ("ping " + id + " " + i + "\n").getBytes(StandardCharsets.UTF_8);
        c.getOutputStream().write(line);
        c.shutdownOutput();
        bytes += c.getInputStream().readAllBytes().length;
      }
    }
    return bytes;
  }

  static void threadServer() throws Exception {
    ServerSocket listener = new ServerSocket(0, 128, InetAddress.getLoopbackAddress());
    ExecutorService handlers = Executors.newFixedThreadPool(8);
    Thread acceptor = new Thread(() -> {
      while (true) {
        try {
          Socket s = listener.accept();
          handlers.execute(() -> echo(s));
        } catch (IOException e) {
          return;  // the listener was closed
        }
      }
    });
    acceptor.start();
    AtomicLong bytes = new AtomicLong();
    List<Thread> clients = new ArrayList<>();
    for (int t = 0; t < 8; t++) {
      int id = t;
      Thread c = new Thread(() -> {
        try {
          bytes.addAndGet(client(listener.getLocalPort(), 2500, id));
        } catch (IOException e) {
          out.println("client error: " + e);
        }
      });
      c.start();
      clients.add(c);
    }
    for (Thread c : clients) c.join();
    listener.close();
    acceptor.join();
    handlers.shutdown();
    out.println("thread server: handlers done " + handlers.awaitTermination(30, TimeUnit.SECONDS));
    out.println("thread server: bytes echoed " + bytes.get());
  }

  static void nioServer() throws Exception {
    Selector selector = Selector.open();
    ServerSocketChannel server = ServerSocketChannel.open();
    server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
    server.configureBlocking(false);
    server.register(selector, SelectionKey.OP_ACCEPT);
    int port = server.socket().getLocalPort();
    AtomicLong bytes = new AtomicLong();
    Thread client = new Thread(() -> {
      try {
        bytes.addAndGet(client(port, 2000, 99));
      } catch (IOException e) {
        out.println("nio client error: " + e);
      }
    });
    client.start();
    ByteBuffer buf = ByteBuffer.allocate(256);
    int closed = 0;
    while (closed < 2000) {
      selector.select(1000);
      for (SelectionKey key : selector.selectedKeys()) {
        if (key.isAcceptable()) {
          SocketChannel ch = server.accept();
          if (ch == null) continue;
          ch.configureBlocking(false);
          ch.register(selector, SelectionKey.OP_READ);
        } else if (key.isReadable()) {
          SocketChannel ch = (SocketChannel) key.channel();
          buf.clear();
          if (ch.read(buf) == -1) {
            ch.close();
            closed++;
            continue;
          }
          buf.flip();
          while (buf.hasRemaining()) ch.write(buf);
        }
      }
      selector.selectedKeys().clear();
    }
    client.join();
    server.close();
    selector.close();
    out.println("nio server: connections closed " + closed);
    out.println("nio server: bytes echoed " + bytes.get());
  }

  static void exitWhileOpen() throws Exception {
    ServerSocket listener = new ServerSocket(0, 16, InetAddress.getLoopbackAddress());
    List<Socket> held = new ArrayList<>();
    for (int i = 0; i < 2; i++) {
      held.add(new Socket(InetAddress.getLoopbackAddress(), listener.getLocalPort()));
      held.add(listener.accept());
    }
    out.println("open connections " + held.size());
    out.flush();
    System.exit(3);
  }

  public static void main(String[] args) throws Exception {
    out = new PrintWriter(args[1], StandardCharsets.UTF_8);
    if (args[0].equals("load")) {
      threadServer();
      nioServer();
    } else {
      exitWhileOpen();
    }
    out.close();
  }
}
