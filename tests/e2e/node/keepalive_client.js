'use strict';
// A keep-alive http.Agent client that never reads its responses' bodies,
// against a local server that closes connections idle for 300 ms.
//
// Usage: node keepalive_client.js DONE_FILE [BODY_BYTES [HOLD_MS]]  (HOLD_MS: 4000)
//
// Whether the client's sockets end in CLOSE_WAIT depends on the release:
// Node.js 20 reads 16 KiB of a socket before it stops reading a response
// nobody consumes, so the server's FIN behind a 100 KB body is never read;
// Node.js 22 and later read 64 KiB, get to the FIN, and close. The program
// asks the kernel (/proc/net/tcp, what ss reads) what its client sockets are
// in after HOLD_MS, and writes the states to DONE_FILE as JSON:
// {"states": ["CLOSE_WAIT", ...]}.
const fs = require('fs');
const http = require('http');

const done = process.argv[2];
const size = Number(process.argv[3] || 100000);
const hold = Number(process.argv[4] || 4000);
const body = Buffer.alloc(size, 'x');

const server = http.createServer((req, res) => res.end(body));
server.keepAliveTimeout = 300;

function fetchStatus(port, agent, path) {
  http.get({ host: '127.0.0.1', port, agent, path }, (res) => {  // E2E:node_get
    console.log(`${path}: ${res.statusCode}`);  // BUG (deliberate): the body is never read
  });
}

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const agent = new http.Agent({ keepAlive: true });
  for (let i = 0; i < 3; i++) fetchStatus(port, agent, `/${i}`);
  setTimeout(() => {
    // Without a child process (ss): one would hold the sockets too while
    // it starts.
    const names = { '01': 'ESTABLISHED', '06': 'TIME_WAIT', '08': 'CLOSE_WAIT' };
    const states = [];
    for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      const remotePort = parseInt(f[2].split(':')[1], 16);
      if (remotePort === port) states.push(names[f[3]] || f[3]);
    }
    fs.writeFileSync(done, JSON.stringify({ states }) + '\n');
    process.exit(0);
  }, hold);
});
