'use strict';
// closeaudit's Node.js agent, loaded before the program with
// `--require` (NODE_OPTIONS; `closeaudit run` and the library set it up).
//
// Node.js reads a peer's EOF and accepts connections in libuv, with no
// JavaScript on the stack: the library sees uv__read, never the program's
// listeners. This agent tells it which JavaScript owns each socket: the
// listeners of the server that accepted it (said once, of the server's
// listening socket), the 'end' and 'close' listeners the program added to
// it, the 'upgrade' listener it was handed to, or the call that opened it
// (net.connect, http.request). It does so through its addon (addon.c) into
// libcloseaudit.so.
//
// It changes nothing the program can rely on: it adds no listener to any
// socket or server (a 'data' listener would switch a stream to flowing
// mode, an 'end' one would change what allowHalfOpen does), only wraps
// on/addListener/once/prepend* and emit of net.Server and net.Socket to
// watch the calls go by (each only while it has something to learn), and
// subscribes to two diagnostics channels. A
// stack is captured only where a listener is added to a server, the first
// few times one is added to a server's sockets, and once per connection a
// client opens. Whatever fails in here is swallowed: the program never sees
// an error of ours.
(() => {
  let addon;
  try {
    addon = require(require('path').join(__dirname, 'closeaudit_node.node'));
  } catch {
    return;  // no addon for this platform: nothing to tell
  }
  if (!addon || !addon.active) return;  // the library is not in the process

  const net = require('net');
  const dc = require('diagnostics_channel');

  // Whether V8 writes its perf map only because closeaudit asked: its flag
  // leads NODE_OPTIONS (common/node_options.h), and neither the rest of them
  // nor the command line asks for a map. The collector then removes the
  // map when the process ends.
  function ownPerfMap() {
    const ours = '--perf-basic-prof-only-functions --interpreted-frames-native-stack --require';
    const options = process.env.NODE_OPTIONS || '';
    if (!options.startsWith(ours)) return false;
    const rest = options.slice(ours.length);
    const perf = /--perf-(basic-)?prof/;
    return !perf.test(rest) && !process.execArgv.some((a) => perf.test(a));
  }
  try {
    const [major, minor, patch] = process.versions.node.split('.').map(Number);
    if (typeof addon.hello === 'function') {
      addon.hello((major << 16) | (minor << 8) | (patch & 0xff), ownPerfMap() ? 1 : 0);
    }
  } catch {
    // ignored
  }

  // common/wire.h: NodeRole << 8, and the flags above it.
  const SERVER = 1 << 8;
  const END = 2 << 8;
  const CLOSE = 3 << 8;
  const CLIENT = 4 << 8;
  const UPGRADE = 5 << 8;
  const HALF_OPEN = 1 << 12;
  const HTTP = 1 << 13;

  const MAX_FRAMES = 16;
  const MAX_TRIES = 16;  // stacks taken per server and socket event

  // --- Stacks ---------------------------------------------------------------

  const ids = new Map();  // frames, joined -> the addon's id
  const MAX_IDS = 4096;

  function isLibrary(file) {
    return file.startsWith('node:') || file.startsWith('internal/');
  }

  // The JavaScript frames above `below` (a function of ours), innermost
  // first, as [function, file, line, column, ...]; those of
  // diagnostics_channel and frames without a script are left out.
  function capture(below) {
    const limit = Error.stackTraceLimit;
    const prepare = Error.prepareStackTrace;
    let sites;
    try {
      Error.stackTraceLimit = MAX_FRAMES + 4;
      Error.prepareStackTrace = (e, callsites) => callsites;
      const holder = {};
      Error.captureStackTrace(holder, below);
      sites = holder.stack;
    } finally {
      Error.stackTraceLimit = limit;
      Error.prepareStackTrace = prepare;
    }
    const out = [];
    if (!Array.isArray(sites)) return out;
    for (const site of sites) {
      let file = site.getFileName() || '';
      if (file === '' || file === __filename ||
          file === 'node:diagnostics_channel') {
        continue;
      }
      if (file.startsWith('file://')) {
        try { file = decodeURIComponent(file.slice(7)); } catch { file = file.slice(7); }
      }
      // As V8 prints it in a stack trace: "Server.<anonymous>", "main".
      const type = site.isToplevel() ? null : site.getTypeName();
      let name = site.getFunctionName() || site.getMethodName() || '';
      if (name === '') {
        name = type ? `${type}.<anonymous>` : '<anonymous>';
      } else if (type && !name.includes('.') && type !== 'Object') {
        name = `${type}.${name}`;
      }
      out.push(name, file, site.getLineNumber() || 0, site.getColumnNumber() || 0);
      if (out.length >= MAX_FRAMES * 4) break;
    }
    return out;
  }

  // Whether the frames show the program's code (anything but Node.js's own
  // modules); `innermost`: the frame that made the call is the program's.
  function programs(frames, innermost) {
    if (innermost) return frames.length > 0 && !isLibrary(frames[1]);
    for (let i = 1; i < frames.length; i += 4) {
      if (!isLibrary(frames[i])) return true;
    }
    return false;
  }

  function idOf(frames) {
    if (frames.length === 0) return 0;
    const key = frames.join('\n');
    let id = ids.get(key);
    if (id === undefined) {
      if (ids.size >= MAX_IDS) return 0;
      id = addon.define(frames);
      ids.set(key, id);
    }
    return id;
  }

  // --- Servers and the sockets they accept ----------------------------------

  const SERVER_EVENTS = new Set(['connection', 'secureConnection', 'request',
                                 'upgrade']);
  const servers = new WeakMap();  // server -> what it was told
  const looking = new Set();  // those whose 'end' or 'close' slot still looks
  let unwatchSocketListeners = null;  // see watchSocketListeners()

  function infoOf(server) {
    let info = servers.get(server);
    if (info === undefined) {
      info = {
        sites: { connection: [], secureConnection: [], request: [], upgrade: [] },
        listeners: -1,  // the id of the frames naming its listeners; -1: stale
        upgrade: 0,
        end: { id: 0, tries: 0 },
        close: { id: 0, tries: 0 },
        told: { fd: -1, flags: 0, id: 0, end: 0, close: 0 },  // tellListener()
        accepted: 0,  // connections, counted up to MAX_TRIES
      };
      servers.set(server, info);
      looking.add(server);
      watchSocketListeners();
    }
    return info;
  }

  // The stack that stands for a server's listeners: of an http(s) server,
  // where its 'request' listeners were added ('connection' is Node.js's
  // own); else its 'secureConnection' or 'connection' listeners.
  function listenersId(server, info) {
    if (info.listeners < 0) {
      const s = info.sites;
      const chosen = s.request.length ? s.request
        : s.secureConnection.length ? s.secureConnection : s.connection;
      info.listeners = chosen.length ? idOf(chosen[0]) : 0;
    }
    return info.listeners;
  }

  let adding = false;  // once() adds through on(): one stack per call
  // Wraps proto's listener adders to call onAdd first. Returns what undoes
  // it: each wrapper still in place is removed, so proto inherits the
  // adder again (one the program put over ours stays).
  function wrapAdd(proto, names, onAdd) {
    const installed = [];
    for (const name of names) {
      const original = proto[name];
      if (typeof original !== 'function') continue;
      const wrapper = {
        [name](event, listener) {
          if (!adding && typeof event === 'string') {
            adding = true;
            try {
              onAdd(this, event, wrapper);
            } catch {
              // never the program's problem
            } finally {
              adding = false;
            }
          }
          return original.apply(this, arguments);
        },
      }[name];
      const own = Object.getOwnPropertyDescriptor(proto, name);
      Object.defineProperty(proto, name, {
        value: wrapper, writable: true, configurable: true, enumerable: false,
      });
      installed.push([name, wrapper, own]);
    }
    return () => {
      for (const [name, wrapper, own] of installed) {
        if (proto[name] !== wrapper) continue;
        if (own === undefined) {
          delete proto[name];
        } else {
          Object.defineProperty(proto, name, own);
        }
      }
    };
  }

  const ADDERS = ['on', 'addListener', 'once', 'prependListener',
                  'prependOnceListener'];

  wrapAdd(net.Server.prototype, ADDERS, (server, event, below) => {
    if (!SERVER_EVENTS.has(event)) return;
    const frames = capture(below);
    if (!programs(frames, false)) return;
    const info = infoOf(server);
    if (info.sites[event].length < 4) info.sites[event].push(frames);
    if (event === 'upgrade') {
      info.upgrade = 0;
      watchUpgrades();
    }
    info.listeners = -1;
  });

  // 'end' and 'close' listeners the program adds to a server's sockets
  // (those Node.js's http adds are not the program's): where the first one
  // was added, for every later socket of the server too. A slot is settled
  // once it has that stack or has tried MAX_TRIES times, and a server is
  // done looking once both are, once it has accepted MAX_TRIES connections,
  // or once it accepted and stopped listening.
  // While no server looks, sockets' adders are not wrapped at all: Node.js's
  // http adds about ten listeners to every connection, each of which would
  // go through a wrapper for nothing.
  function settled(slot) {
    return slot.id !== 0 || slot.tries >= MAX_TRIES;
  }
  function watchSocketListeners() {
    if (unwatchSocketListeners !== null) return;
    unwatchSocketListeners = wrapAdd(net.Socket.prototype, ADDERS, onSocketAdd);
  }
  function onSocketAdd(socket, event, below) {
    if (event !== 'end' && event !== 'close') return;
    const server = socket.server;
    if (server == null || typeof server !== 'object') return;
    const info = servers.get(server);
    if (info === undefined) return;
    const slot = info[event];
    if (settled(slot)) return;
    slot.tries++;
    const frames = capture(below);
    if (programs(frames, true)) slot.id = idOf(frames);
    if (settled(slot)) lookAgain();
  }
  function lookAgain() {
    if (unwatchSocketListeners === null) return;
    for (const s of looking) {
      const i = servers.get(s);
      if ((settled(i.end) && settled(i.close)) || i.accepted >= MAX_TRIES ||
          (i.accepted > 0 && !s.listening)) {
        looking.delete(s);
      }
    }
    if (looking.size === 0) {
      unwatchSocketListeners();
      unwatchSocketListeners = null;
    }
  }

  // A socket's or a server's fd; -1 for none (a cluster worker's server
  // under round-robin has no listening socket of its own).
  function fdOf(socketOrServer) {
    const handle = socketOrServer._handle;
    const fd = handle != null ? handle.fd : -1;
    return typeof fd === 'number' ? fd : -1;
  }

  function flagsOf(server, socket) {
    let flags = socket.allowHalfOpen ? HALF_OPEN : 0;
    // http.Server and https.Server set it; net.Server does not.
    if ('httpAllowHalfOpen' in server) flags |= HTTP;
    return flags;
  }

  function tell(server, socket, role, id) {
    const fd = fdOf(socket);
    if (fd < 0) return;
    const info = servers.get(server);
    const flags = flagsOf(server, socket);
    if (id) addon.note(fd, role | flags, id);
    if (info === undefined) return;
    if (info.end.id) addon.note(fd, END | flags, info.end.id);
    if (info.close.id) addon.note(fd, CLOSE | flags, info.close.id);
  }

  // A server that accepts on a listening socket of its own is told once,
  // on that socket, and again only when what it says changes: the library
  // and the collector apply it to every socket accepted there. Telling each
  // connection cost a call into the addon and an event per request, about
  // 5% of a small http server's throughput under Connection: close.
  function tellListener(server, socket, info, fd) {
    const id = listenersId(server, info);
    const flags = flagsOf(server, socket);
    const told = info.told;
    const again = told.fd !== fd || told.flags !== flags;
    if (!again && told.id === id && told.end === info.end.id &&
        told.close === info.close.id) {
      return;  // the common case: nothing new since the last connection
    }
    if (id && (again || told.id !== id)) addon.note(fd, SERVER | flags, id);
    if (info.end.id && (again || told.end !== info.end.id)) {
      addon.note(fd, END | flags, info.end.id);
    }
    if (info.close.id && (again || told.close !== info.close.id)) {
      addon.note(fd, CLOSE | flags, info.close.id);
    }
    info.told = { fd, flags, id, end: info.end.id, close: info.close.id };
  }

  // Published after the server emitted 'connection': its listeners have
  // run, and added theirs to the socket.
  dc.subscribe('net.server.socket', (message) => {
    try {
      const socket = message && message.socket;
      const server = socket && socket.server;
      if (server == null) return;
      const info = servers.get(server);
      if (info === undefined) return;  // no listener of the program's
      if (info.accepted < MAX_TRIES && ++info.accepted === MAX_TRIES) lookAgain();
      const fd = fdOf(server);
      if (fd >= 0) {
        tellListener(server, socket, info, fd);
      } else {
        tell(server, socket, SERVER, listenersId(server, info));
      }
    } catch {
      // ignored
    }
  });

  // Wraps proto's emit (once) to call watch(emitter, arguments) when it
  // emits `event`: before its listeners run, or after they ran.
  function watchEmit(proto, event, after, watch) {
    const original = proto.emit;
    Object.defineProperty(proto, 'emit', {
      value: function emit(name) {
        if (name === event && !after) {
          try { watch(this, arguments); } catch { /* ignored */ }
        }
        const result = original.apply(this, arguments);
        if (name === event && after) {
          try { watch(this, arguments); } catch { /* ignored */ }
        }
        return result;
      },
      writable: true, configurable: true, enumerable: false,
    });
  }

  // A socket an http server hands to its 'upgrade' listeners is theirs:
  // told after they ran. Servers' emit is wrapped only once the program
  // listens for 'upgrade': a server emits twice a request.
  let upgradesWatched = false;
  function watchUpgrades() {
    if (upgradesWatched) return;
    upgradesWatched = true;
    watchEmit(net.Server.prototype, 'upgrade', true, (server, args) => {
      const socket = args[2];
      const info = servers.get(server);
      if (info !== undefined && info.sites.upgrade.length &&
          socket instanceof net.Socket) {
        if (!info.upgrade) info.upgrade = idOf(info.sites.upgrade[0]);
        tell(server, socket, UPGRADE, info.upgrade);
      }
    });
  }

  // --- Connections the program opens -----------------------------------------

  // net.connect() publishes before the socket has an fd: its stack waits
  // for the socket's 'connect'.
  const opening = new WeakMap();  // socket -> id
  function onClient(message) {
    try {
      const socket = message && message.socket;
      if (!(socket instanceof net.Socket)) return;
      const frames = capture(onClient);
      if (!programs(frames, false)) return;
      const id = idOf(frames);
      if (id) {
        opening.set(socket, id);
        watchConnects();
      }
    } catch {
      // ignored
    }
  }
  dc.subscribe('net.client.socket', onClient);

  // Sockets' emit is wrapped only once the program opens one: every socket
  // emits several times a request, and a server's never emit 'connect'.
  let connectsWatched = false;
  function watchConnects() {
    if (connectsWatched) return;
    connectsWatched = true;
    watchEmit(net.Socket.prototype, 'connect', false, (socket) => {
      const id = opening.get(socket);
      if (id !== undefined) {
        opening.delete(socket);
        const fd = fdOf(socket);
        if (fd >= 0) addon.note(fd, CLIENT, id);
      }
    });
  }
})();
