// A Node.js TCP server that leaks fds on request, for `fdguard trace` tests.
// One command per connection (first line):
//   LEAK    the server keeps the socket and never ends it: after the client
//           hangs up it sits in CLOSE-WAIT, owned by a live handle. Replies "kept".
//   FSLEAK  fs.open() a file and never close it. Replies "opened FD".
//   HI      a healthy exchange: reply "ok" and end the socket.
// Prints {"port": N} once listening.
'use strict';
const net = require('net');
const fs = require('fs');

const kept = [];
const server = net.createServer({ allowHalfOpen: true }, (sock) => {
  let buf = '';
  sock.on('data', (chunk) => {
    buf += chunk.toString();
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    const cmd = buf.slice(0, nl).trim();
    buf = '';
    if (cmd === 'LEAK') {
      kept.push(sock);
      sock.write('kept\n');
      sock.pause();
    } else if (cmd === 'FSLEAK') {
      fs.open(__filename, 'r', (err, fd) => sock.end(err ? `error ${err.code}\n` : `opened ${fd}\n`));
    } else {
      sock.end('ok\n');
    }
  });
  sock.on('end', () => { if (!kept.includes(sock)) sock.end(); });
  sock.on('error', () => {});
});
server.listen(0, process.argv[2] || '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port, pid: process.pid }));
});
