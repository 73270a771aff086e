'use strict';
// A server in a worker thread (worker_threads) with the half-open bug: its
// 'end' listener never ends the socket. The main thread is the client.
//
// Usage: node worker_server.js DONE_FILE [HOLD_MS]
const fs = require('fs');
const net = require('net');
const { Worker, isMainThread, parentPort } = require('worker_threads');

if (isMainThread) {
  const done = process.argv[2];
  const hold = Number(process.argv[3] || 2000);
  const worker = new Worker(__filename);
  worker.on('message', (message) => {
    if (message.port) {
      for (let i = 0; i < 3; i++) {
        const c = net.connect(message.port, '127.0.0.1', () => c.write('hello\n'));
        c.on('data', () => c.destroy());
      }
    } else if (message.ends === 3) {
      setTimeout(() => {
        fs.writeFileSync(done, 'done\n');
        process.exit(0);
      }, hold);
    }
  });
} else {
  let ends = 0;
  const held = [];  // BUG (deliberate): never ended
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {  // E2E:node_worker_server
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('end', () => {  // E2E:node_worker_end
      held.push(socket);
      parentPort.postMessage({ ends: ++ends });
    });
  });
  server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
}
