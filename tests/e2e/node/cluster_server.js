'use strict';
// A cluster: the primary forks one worker, whose net server (allowHalfOpen:
// true) never ends the sockets its 'end' listener is told about. The
// primary is the client: it connects three times, sends a line and closes.
//
// Usage: node cluster_server.js DONE_FILE [HOLD_MS]
//
// The worker tells the primary when it saw the three EOFs; the primary
// waits HOLD_MS more, writes DONE_FILE, stops the worker and exits 0.
const cluster = require('cluster');
const fs = require('fs');
const net = require('net');

const done = process.argv[2];
const hold = Number(process.argv[3] || 2000);

if (cluster.isPrimary) {
  const worker = cluster.fork();
  worker.on('message', (message) => {
    if (message.port) {
      for (let i = 0; i < 3; i++) {
        const c = net.connect(message.port, '127.0.0.1', () => c.write('hello\n'));
        c.on('data', () => c.destroy());
      }
    } else if (message.ends === 3) {
      setTimeout(() => {
        fs.writeFileSync(done, 'done\n');
        worker.kill();
        process.exit(0);
      }, hold);
    }
  });
} else {
  let ends = 0;
  const held = [];  // BUG (deliberate): never ended
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {  // E2E:node_cluster_server
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => {  // E2E:node_cluster_end
      held.push(socket);
      process.send({ ends: ++ends });
    });
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
}
