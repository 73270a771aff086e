'use strict';
// The torture matrix's Node.js workloads (node_torture.py runs each with
// and without closeaudit, and compares). Each writes a transcript of what
// the program could observe to TRANSCRIPT: the order of events, stream
// modes, listener counts, what emit() returned, errors and how they
// propagated, stack traces' own format. Nothing in it depends on ports,
// pids or timing.
//
// Usage: node node_workload.js MODE TRANSCRIPT
//   semantics  net and http servers and clients, half-open and not, with
//              the listener and stack-trace machinery the agent wraps
//   cluster    a primary and two workers sharing a server
//   worker     the semantics workload in a worker thread
//   load       2000 http requests through a keep-alive Agent, and 500
//              connections closed by each side
//   exit       process.exit() while connections are open and reading
const cluster = require('cluster');
const fs = require('fs');
const http = require('http');
const net = require('net');
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

const mode = isMainThread ? process.argv[2] : workerData.mode;
const out = isMainThread ? process.argv[3] : null;
const lines = [];
function log(...parts) {
  lines.push(parts.join(' '));
}
function finish(code = 0) {
  if (isMainThread) {
    fs.writeFileSync(out, lines.join('\n') + '\n');
    process.exit(code);
  } else {
    parentPort.postMessage(lines);
  }
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

// A net server: echoes, and on the peer's end either ends (or not, with
// allowHalfOpen). Logs what a program sees of its sockets.
async function netCase(halfOpen) {
  const tag = halfOpen ? 'halfopen' : 'default';
  const events = [];
  let serverSocket;
  const server = net.createServer({ allowHalfOpen: halfOpen }, (socket) => {
    serverSocket = socket;
    events.push(`server flowing=${socket.readableFlowing} end=${socket.listenerCount('end')} ` +
                `close=${socket.listenerCount('close')} data=${socket.listenerCount('data')}`);
    socket.once('data', (d) => {
      events.push(`server data ${d} flowing=${socket.readableFlowing}`);
      socket.write(d);
    });
    socket.prependListener('end', () => events.push('server end (prepended)'));
    socket.on('end', () => {
      events.push(`server end writable=${socket.writable} halfopen=${socket.allowHalfOpen}`);
      if (halfOpen) socket.end('bye');
    });
    socket.on('close', (hadError) => events.push(`server close hadError=${hadError}`));
  });
  events.push(`connection listeners=${server.listenerCount('connection')}`);
  const port = await listen(server);
  await new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    events.push(`client connecting=${c.connecting} connect=${c.listenerCount('connect')}`);
    const ret = c.on('connect', () => {
      events.push(`client connect emitted, connect listeners=${c.listenerCount('connect')}`);
      c.end('hi');
    });
    events.push(`on() returns the socket: ${ret === c}`);
    let got = '';
    c.on('data', (d) => { got += d; });
    c.on('end', () => events.push(`client end got=${got}`));
    c.on('close', () => { events.push('client close'); resolve(); });
  });
  await new Promise((resolve) => server.close(resolve));
  events.push(`server socket destroyed=${serverSocket.destroyed}`);
  for (const e of events) log(tag, e);
}

// emit()'s return value and a listener that throws, through the wrapped
// emit of sockets and servers.
async function emitCase() {
  const s = new net.Socket();
  log('emit with no listener', s.emit('connect'));
  s.on('connect', () => { throw new Error('thrown by a connect listener'); });
  try {
    s.emit('connect');
    log('no throw');
  } catch (err) {
    log('caught', err.message);
  }
  const server = net.createServer();
  log('server emit upgrade with no listener', server.emit('upgrade', null, s, null));
  server.once('upgrade', (req, sock) => log('upgrade listener got the socket', sock === s));
  log('server emit upgrade', server.emit('upgrade', null, s, null));
  log('after once', server.listenerCount('upgrade'));
  s.destroy();
  // once() wrappers keep their .listener, as Node documents.
  const fn = () => {};
  server.once('connection', fn);
  log('rawListeners[0].listener is fn', server.rawListeners('connection')[0].listener === fn);
  log('listeners[0] is fn', server.listeners('connection')[0] === fn);
  server.removeListener('connection', fn);
  log('removed', server.listenerCount('connection'));
}

// The program's own stack-trace settings survive the agent's captures.
async function stackCase() {
  Error.stackTraceLimit = 3;
  Error.prepareStackTrace = (err, sites) => `custom:${sites.length}:${err.message}`;
  const server = net.createServer(() => {});
  server.on('connection', () => {});
  const port = await listen(server);
  await new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(); });
  });
  server.close();
  log('stack', new Error('mine').stack);
  log('limit', Error.stackTraceLimit);
  Error.prepareStackTrace = undefined;
  Error.stackTraceLimit = 10;
}

// An http server in keep-alive and Connection: close, and an upgrade with
// and without a listener.
async function httpCase() {
  const server = http.createServer((req, res) => {
    res.setHeader('x-conn', req.headers.connection || '');
    res.end(`hello ${req.url}`);
  });
  server.keepAliveTimeout = 200;  // an upgrade nobody listens for is a request
  const port = await listen(server);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (const [path, headers] of [['/a', {}], ['/b', {}], ['/c', { connection: 'close' }]]) {
    await new Promise((resolve) => {
      http.get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          log('http', path, res.statusCode, res.headers['x-conn'], body,
              `reused=${res.req.reusedSocket}`);
          resolve();
        });
      });
    });
  }
  agent.destroy();
  // No 'upgrade' listener: the server destroys the socket.
  await new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => {
      c.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    });
    c.on('data', () => {});
    c.on('close', () => { log('upgrade without a listener: answered, then closed by the server'); resolve(); });
  });
  server.on('upgrade', (req, socket) => {
    socket.end('HTTP/1.1 101 Switching Protocols\r\n\r\nupgraded');
  });
  await new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => {
      c.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    });
    let got = '';
    c.on('data', (d) => { got += d; });
    c.on('end', () => { log('upgrade answered:', got.split('\r\n\r\n')[1]); c.end(); resolve(); });
  });
  await new Promise((resolve) => server.close(resolve));
}

async function semantics() {
  await netCase(false);
  await netCase(true);
  await emitCase();
  await stackCase();
  await httpCase();
}

async function load() {
  const server = http.createServer((req, res) => res.end('x'.repeat(100)));
  const port = await listen(server);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  let ok = 0;
  let bytes = 0;
  await Promise.all(Array.from({ length: 2000 }, (_, i) => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `/${i}`, agent }, (res) => {
      res.on('data', (d) => { bytes += d.length; });
      res.on('end', () => { ok += res.statusCode === 200; resolve(); });
    }).on('error', reject);
  })));
  agent.destroy();
  log('keep-alive requests ok', ok, 'bytes', bytes);
  // Connections closed by the client, then by the server.
  for (const serverCloses of [false, true]) {
    const echo = net.createServer((s) => {
      s.on('data', (d) => (serverCloses ? s.end(d) : s.write(d)));
    });
    const p = await listen(echo);
    let done = 0;
    await Promise.all(Array.from({ length: 500 }, () => new Promise((resolve) => {
      const c = net.connect(p, '127.0.0.1', () => c.write('ping'));
      c.on('data', () => { if (!serverCloses) c.end(); });
      c.on('close', () => { done++; resolve(); });
    })));
    await new Promise((resolve) => echo.close(resolve));
    log(serverCloses ? 'server-closed' : 'client-closed', 'connections', done);
  }
  await new Promise((resolve) => server.close(resolve));
  // Once its servers have had a few connections, the agent has what it
  // needs of their sockets' listeners and leaves net.Socket.prototype's own
  // properties as it found them (all but emit, which it keeps wrapped once
  // the program has opened a connection).
  const again = http.createServer((req, res) => res.end('y'));
  const p = await listen(again);
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: p, agent: false, headers: { connection: 'close' } },
               (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
    });
  }
  await new Promise((resolve) => again.close(resolve));
  log('net.Socket.prototype own properties',
      Object.getOwnPropertyNames(net.Socket.prototype).filter((n) => n !== 'emit').join(','));
}

async function exitWhileOpen() {
  const server = net.createServer((s) => s.on('data', () => {}));
  const port = await listen(server);
  const clients = [];
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', resolve);
      clients.push(c);
    });
  }
  log('open', clients.length);
  let n = 0;
  const timer = setInterval(() => {
    for (const c of clients) c.write('x'.repeat(1000));
    if (++n === 5) {
      log('exiting with connections open');
      clearInterval(timer);
      finish(3);
    }
  }, 10);
}

async function clusterCase() {
  if (cluster.isPrimary) {
    const seen = [];
    let port = 0;
    let ready = 0;
    for (let i = 0; i < 2; i++) {
      const w = cluster.fork();
      w.on('message', (m) => {
        if (m.port) port = m.port;
        if (m.listening && ++ready === 2) drive();
        if (m.served) seen.push(m.served);
      });
    }
    async function drive() {
      for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => {
          http.get({ host: '127.0.0.1', port, path: `/${i}`, agent: false }, (res) => {
            res.resume();
            res.on('end', resolve);
          });
        });
      }
      log('served by the workers', 20);
      for (const id in cluster.workers) cluster.workers[id].kill();
      finish();
    }
    return;
  }
  const server = http.createServer((req, res) => {
    res.end('ok');
    process.send({ served: req.url });
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port, listening: true }));
}

async function main() {
  if (mode === 'semantics') {
    await semantics();
    finish();
  } else if (mode === 'worker') {
    if (isMainThread) {
      const w = new Worker(__filename, { workerData: { mode: 'worker' } });
      w.on('message', (worker_lines) => {
        for (const l of worker_lines) log('worker', l);
        w.terminate().then(() => finish());
      });
    } else {
      await semantics();
      finish();
    }
  } else if (mode === 'load') {
    await load();
    finish();
  } else if (mode === 'exit') {
    await exitWhileOpen();
  } else if (mode === 'cluster') {
    await clusterCase();
  } else {
    log('unknown mode', mode);
    finish(2);
  }
}

main().catch((err) => {
  log('failed', err && err.stack);
  finish(1);
});
