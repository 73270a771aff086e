'use strict';
// The Node.js server scripts/bench drives with wrk: Node's own http module,
// one small response per request.
//
// Usage: node node_server.js PORT_FILE
const fs = require('fs');
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end('hello, world\n');
});
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(process.argv[2] + '.tmp', String(server.address().port));
  fs.renameSync(process.argv[2] + '.tmp', process.argv[2]);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
