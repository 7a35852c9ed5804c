// A real Node.js HTTP server for `fdguard guard` tests that leaks one fd every
// LEAK_EVERY requests (a file it opens and never closes).
//
// Under fdguard guard it takes its listening socket from the supervisor the way
// systemd socket activation hands it over: LISTEN_FDS=1 and LISTEN_PID=<own pid>,
// the socket at fd 3, picked up with `server.listen({fd: 3})`. Alone it listens
// on 127.0.0.1:<argv[2] or a free port> and prints the port.
//
// On SIGTERM it drains: it stops accepting (the supervisor and the new worker
// still hold the socket, so nothing queued is lost), answers each request still
// arriving on open connections with `Connection: close`, and exits when the last
// connection is gone. It does not close idle keep-alive connections right away:
// a client may be writing a request on one at that very moment, and that request
// would be lost -- this is exactly what a graceful restart must avoid.
'use strict';
const http = require('http');
const net = require('net');
const fs = require('fs');

const leakEvery = parseInt(process.env.LEAK_EVERY || '1', 10);
const idleCloseMs = parseInt(process.env.DRAIN_IDLE_MS || '1000', 10);
const leaked = [];
const conns = new Set();
let served = 0;
let draining = false;

const server = http.createServer((req, res) => {
  served++;
  const sock = req.socket;
  sock._busy = (sock._busy || 0) + 1;
  res.on('finish', () => {
    sock._busy--;
    sock._last = Date.now();
  });
  if (leakEvery > 0 && served % leakEvery === 0) {
    try {
      leaked.push(fs.openSync('/dev/null', 'r'));
    } catch (err) {
      res.statusCode = 500;
      res.end(`leak failed: ${err.code}\n`);
      return;
    }
  }
  if (draining) res.setHeader('Connection', 'close');
  res.end(`ok ${process.pid} ${served}\n`);
});
server.keepAliveTimeout = 30000;
server.on('connection', (sock) => {
  conns.add(sock);
  sock._last = Date.now();
  sock._busy = 0;
  sock.on('close', () => {
    conns.delete(sock);
    if (draining && conns.size === 0) process.exit(0);
  });
});

// LISTEN_PID names the process the sockets were passed to: this one, or the
// wrapper (`sh -c`, `npm start`) that started it without exec.
const listenPid = parseInt(process.env.LISTEN_PID, 10);
const inherited = process.env.LISTEN_FDS && (listenPid === process.pid || listenPid === process.ppid);
if (inherited) {
  server.listen({ fd: 3 });
} else {
  server.listen(parseInt(process.argv[2] || '0', 10), '127.0.0.1', () => {
    process.stdout.write(`${server.address().port}\n`);
  });
}

process.on('SIGTERM', () => {
  draining = true;
  // net.Server's close only stops accepting; http.Server's close (Node >= 19)
  // would also close idle keep-alive connections, racing with their next request.
  net.Server.prototype.close.call(server);
  if (conns.size === 0) process.exit(0);
  // A connection idle for a whole idle period gets no more requests: close it.
  setInterval(() => {
    for (const sock of conns) {
      if (sock._busy === 0 && Date.now() - sock._last >= idleCloseMs) sock.destroy();
    }
  }, idleCloseMs / 4).unref();
});
