// The JDK's HTTP clients against a local server that closes a keep-alive
// connection after 1 s idle.
//
// Usage: java UrlClient.java DONE_FILE MODE [HOLD_SECONDS]
//   MODE unread:     HttpURLConnection, reading only getResponseCode() and
//                    never the body (BUG, deliberate): the connection never
//                    goes back to the JDK's keep-alive cache, and stays in
//                    CLOSE_WAIT once the server closed it;
//   MODE read:       HttpURLConnection, reading each body to its end and
//                    closing its stream (right): the JDK keeps the
//                    connection in its keep-alive cache, which closes it
//                    after its own timeout (5 s);
//   MODE httpclient: java.net.http.HttpClient, asking for each body as an
//                    InputStream and never reading or closing it (BUG,
//                    deliberate): each connection stays out of the client's
//                    pool, in CLOSE_WAIT.
// Makes three requests, waits HOLD_SECONDS (8 by default: past the cache's
// timeout), writes DONE_FILE and exits 0.
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandlers;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

public class UrlClient {
  // Answers each request on a connection until it is idle for 1 s.
  static void serve(Socket conn) {
    try (conn) {
      conn.setSoTimeout(1000);
      InputStream in = conn.getInputStream();
      OutputStream out = conn.getOutputStream();
      byte[] buf = new byte[4096];
      StringBuilder req = new StringBuilder();
      while (true) {
        int n;
        try {
          n = in.read(buf);
        } catch (java.net.SocketTimeoutException idle) {
          return;  // idle: close it
        }
        if (n == -1) return;
        req.append(new String(buf, 0, n, StandardCharsets.ISO_8859_1));
        while (req.indexOf("\r\n\r\n") >= 0) {
          req.delete(0, req.indexOf("\r\n\r\n") + 4);
          String body = "x".repeat(20000);
          out.write(("HTTP/1.1 200 OK\r\nContent-Length: " + body.length() +
                     "\r\n\r\n" + body).getBytes(StandardCharsets.ISO_8859_1));
        }
      }
    } catch (IOException e) {
      // the client went away
    }
  }

  static int fetch(URL url, boolean read) throws IOException {
    HttpURLConnection c = (HttpURLConnection) url.openConnection();
    int code = c.getResponseCode();  // E2E:java_url_request
    if (read) {
      try (InputStream body = c.getInputStream()) {
        body.readAllBytes();
      }
    }
    return code;
  }

  static final List<HttpResponse<InputStream>> responses = new ArrayList<>();

  static int send(HttpClient client, URI uri) throws Exception {
    HttpRequest request = HttpRequest.newBuilder(uri).build();
    HttpResponse<InputStream> r = client.send(request, BodyHandlers.ofInputStream());  // E2E:java_httpclient_send
    responses.add(r);  // kept, never read nor closed
    return r.statusCode();
  }

  public static void main(String[] args) throws Exception {
    boolean read = args[1].equals("read");
    boolean httpclient = args[1].equals("httpclient");
    long hold = args.length > 2 ? Long.parseLong(args[2]) : 8;
    ServerSocket listener = new ServerSocket(0, 16, InetAddress.getLoopbackAddress());
    Thread acceptor = new Thread(() -> {
      while (true) {
        try {
          Socket s = listener.accept();
          new Thread(() -> serve(s)).start();
        } catch (IOException e) {
          return;
        }
      }
    });
    acceptor.setDaemon(true);
    acceptor.start();
    String base = "http://127.0.0.1:" + listener.getLocalPort() + "/";
    URL url = new URL(base);
    HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    for (int i = 0; i < 3; i++) {
      int code = httpclient ? send(client, URI.create(base)) : fetch(url, read);
      if (code != 200) System.exit(1);
      if (read) Thread.sleep(1500);  // idle: the server closes each one
    }
    Thread.sleep(hold * 1000);
    Files.writeString(Path.of(args[0]), "done\n");
    System.exit(0);
  }
}
