'use strict';
// A net server made with allowHalfOpen: true whose 'end' listener forgets
// socket.end(): each connection its clients close stays in CLOSE_WAIT.
//
// Usage: node half_open_server.js DONE_FILE [HOLD_MS]
//
// Its own clients connect three times, send a line, read the echo and
// destroy their sockets. Once the server saw the three EOFs it holds the
// sockets HOLD_MS more (2000: past the audit's grace), writes DONE_FILE and
// exits 0.
const fs = require('fs');
const net = require('net');

const done = process.argv[2];
const hold = Number(process.argv[3] || 2000);
const sessions = new Set();  // BUG (deliberate): kept, never ended
let ends = 0;

function finished(socket) {
  sessions.add(socket);
  if (++ends === 3) {
    setTimeout(() => {
      fs.writeFileSync(done, 'done\n');
      process.exit(0);
    }, hold);
  }
}

const server = net.createServer({ allowHalfOpen: true }, (socket) => {  // E2E:node_create_server
  socket.on('data', (chunk) => socket.write(chunk));
  socket.on('end', () => finished(socket));  // E2E:node_end_listener
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  for (let i = 0; i < 3; i++) {
    const client = net.connect(port, '127.0.0.1', () => client.write('hello\n'));
    client.on('data', () => client.destroy());  // E2E:node_destroy
  }
});
