// An NIO selector server whose EOF branch forgets channel.close(): it only
// cancels the key, so each connection its clients close stays in
// CLOSE_WAIT.
//
// Usage: java NioServer.java DONE_FILE [HOLD_SECONDS]
//
// Its own client (a thread): connects three times, sends a line, reads the
// echo and closes; once the selector saw the three EOFs, it holds the
// sockets HOLD_SECONDS more (2 by default), writes DONE_FILE and exits 0.
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

public class NioServer {
  static int eofs = 0;

  static void onReadable(SelectionKey key, ByteBuffer buf) throws IOException {
    SocketChannel ch = (SocketChannel) key.channel();
    buf.clear();
    int n = ch.read(buf);  // E2E:java_nio_read
    if (n == -1) {
      key.cancel();  // BUG (deliberate): the channel is never closed
      eofs++;
      return;
    }
    buf.flip();
    ch.write(buf);
  }

  public static void main(String[] args) throws Exception {
    long hold = args.length > 1 ? Long.parseLong(args[1]) : 2;
    Selector selector = Selector.open();
    ServerSocketChannel server = ServerSocketChannel.open();
    server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
    server.configureBlocking(false);
    server.register(selector, SelectionKey.OP_ACCEPT);
    int port = server.socket().getLocalPort();
    Thread client = new Thread(() -> {
      for (int i = 0; i < 3; i++) {
        try (Socket c = new Socket(InetAddress.getLoopbackAddress(), port)) {
          c.getOutputStream().write("hello\n".getBytes(StandardCharsets.UTF_8));
          c.getInputStream().read(new byte[100]);
        } catch (IOException e) {
          System.err.println("client: " + e);
        }
      }
    });
    client.setDaemon(true);
    client.start();
    ByteBuffer buf = ByteBuffer.allocate(4096);
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (eofs < 3) {
      if (System.nanoTime() > deadline) {
        System.err.println("the server did not see three EOFs");
        System.exit(1);
      }
      selector.select(500);
      for (SelectionKey key : selector.selectedKeys()) {
        if (key.isAcceptable()) {
          SocketChannel ch = server.accept();  // E2E:java_nio_accept
          ch.configureBlocking(false);
          ch.register(selector, SelectionKey.OP_READ);
        } else if (key.isReadable()) {
          onReadable(key, buf);
        }
      }
      selector.selectedKeys().clear();
    }
    Thread.sleep(hold * 1000);
    Files.writeString(Path.of(args[0]), "done\n");
    System.exit(0);
  }
}
