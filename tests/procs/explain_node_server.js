// A real Node.js server in one of the shapes `fdguard explain` must tell apart.
//
//   node explain_node_server.js closewait N   accepts N connections and keeps each
//                                             open after its peer hung up (CLOSE-WAIT)
//   node explain_node_server.js files N       opens N files with fs.openSync, never closes
//   node explain_node_server.js unowned ADDON a native addon opens a socket outside any
//                                             handle and forgets it
//   node explain_node_server.js sockets N     N/2 loopback connections to itself (N fds)
//   node explain_node_server.js worker        a worker thread (its own libuv loop) listens too
//   node explain_node_server.js watch DIR     fs.watch(DIR) and one fs.readFile: libuv's
//                                             inotify instance (and io_uring rings when
//                                             UV_USE_IO_URING=1)
//
// The first stdout line is {"port", "listen_fd", ...ground truth}; closewait prints a
// second line {"closewait": [fds]} once every peer has hung up. stdin keeps it alive.
'use strict';
const fs = require('fs');
const net = require('net');

const [mode, arg] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const truth = {};
const conns = [];

const srv = net.createServer({ allowHalfOpen: mode === 'closewait' }, (c) => {
  conns.push(c);
  if (mode === 'closewait') {
    c.on('end', () => {
      // The bug being shown: the peer hung up, the application never closes.
      truth.closewait.push(c._handle.fd);
      if (truth.closewait.length === Number(arg)) out({ closewait: truth.closewait });
    });
  }
  c.resume();
});

srv.listen(0, '127.0.0.1', () => {
  truth.port = srv.address().port;
  truth.listen_fd = srv._handle.fd;
  truth.uv = process.versions.uv;
  if (mode === 'closewait') {
    truth.closewait = [];
    out(truth);
  } else if (mode === 'files') {
    truth.files = [];
    for (let i = 0; i < Number(arg); i++) truth.files.push(fs.openSync(__filename, 'r'));
    out(truth);
  } else if (mode === 'unowned') {
    truth.leaked = require(arg).leakSocket();
    out(truth);
  } else if (mode === 'worker') {
    const { Worker } = require('worker_threads');
    const w = new Worker(`
      const net = require('net');
      const { parentPort } = require('worker_threads');
      const s = net.createServer(() => {}).listen(0, '127.0.0.1', () =>
        parentPort.postMessage(s._handle.fd));`, { eval: true });
    w.once('message', (fd) => { truth.worker_listen_fd = fd; out(truth); });
  } else if (mode === 'watch') {
    truth.watcher = fs.watch(arg, () => {}) && true;
    fs.readFile(__filename, () => out(truth));
  } else if (mode === 'sockets') {
    const pairs = Math.floor(Number(arg) / 2);
    let up = 0;
    const connectMore = (start) => {
      // Bounded batches: at most 500 connects in flight.
      for (let i = start; i < Math.min(start + 500, pairs); i++) {
        const c = net.connect(truth.port, '127.0.0.1', () => {
          up++;
          if (up === pairs) setTimeout(() => out(truth), 100);
          else if (up % 500 === 0) connectMore(up);
        });
        c.on('error', (e) => { out({ error: String(e) }); process.exit(1); });
        conns.push(c);
      }
    };
    connectMore(0);
  } else {
    out(truth);
  }
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
