'use strict';
// An Express-style http server whose 'upgrade' route keeps each raw socket
// in a Map of peers. With "leak", nothing ends a socket whose peer went
// away: http servers' sockets are half-open, and Node.js leaves an upgraded
// one to the program, so each stays in CLOSE_WAIT. With "clean", the route
// ends the socket on 'end' and deletes it from the Map on 'close'.
//
// Usage: node upgrade_map.js DONE_FILE leak|clean [HOLD_MS]
const fs = require('fs');
const http = require('http');
const net = require('net');

const done = process.argv[2];
const clean = process.argv[3] === 'clean';
const hold = Number(process.argv[4] || 2000);
const peers = new Map();
let gone = 0;

function peerGone() {
  if (++gone === 3) {
    setTimeout(() => {
      fs.writeFileSync(done, `done ${peers.size}\n`);
      process.exit(0);
    }, hold);
  }
}

const app = http.createServer((req, res) => {
  res.writeHead(404).end();
});

function onUpgrade(req, socket) {
  const id = req.headers['x-peer'];
  peers.set(id, socket);  // E2E:node_peers_set
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n' +
               'Connection: Upgrade\r\n\r\n');
  socket.on('data', (chunk) => socket.write(chunk));
  if (clean) {
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      peers.delete(id);
      peerGone();
    });
  } else {
    socket.on('end', peerGone);  // E2E:node_upgrade_end
  }
}
app.on('upgrade', onUpgrade);  // E2E:node_upgrade_listener

app.listen(0, '127.0.0.1', () => {
  const { port } = app.address();
  for (let i = 0; i < 3; i++) {
    const c = net.connect(port, '127.0.0.1', () => {
      c.write(`GET /peers HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n` +
              `Connection: Upgrade\r\nX-Peer: p${i}\r\n\r\n`);
    });
    c.once('data', () => c.destroy());
  }
});
