// A small real Node.js server that holds a few sockets: a listener, three
// loopback clients it connected to itself, one of them half-closed by its peer
// (CLOSE-WAIT on the server side), and a file it opened.
// Prints its port once ready; stays up until killed.
'use strict';
const net = require('net');
const fs = require('fs');

const held = [];
let connected = false;
let halfClosed = false;
let port = 0;
function ready() {
  if (connected && halfClosed) process.stdout.write(`${port}\n`);
}
const server = net.createServer({ allowHalfOpen: true }, (sock) => {
  held.push(sock); // never closed by the server: the peer's FIN leaves it in CLOSE-WAIT
  sock.on('end', () => { halfClosed = true; ready(); });
  sock.resume();
});
server.listen(0, '127.0.0.1', () => {
  port = server.address().port;
  let pending = 3;
  for (let i = 0; i < 3; i++) {
    const c = net.connect(port, '127.0.0.1', () => {
      held.push(c);
      if (i === 0) c.end(); // half-close: the server side sees FIN
      if (--pending === 0) {
        held.push(fs.openSync(__filename, 'r'));
        connected = true;
        ready();
      }
    });
  }
});
