// A real Node.js line server for stress tests: each request line is answered
// after a round trip to an upstream (a backend listener in the same process).
// With --leaky it leaks on ONE error path: when the upstream connect fails it
// writes "502" but never ends the client socket; the server allows half-open
// sockets, so when the client hangs up its socket stays in CLOSE-WAIT forever.
// The healthy version ends the client on that path too.
// Prints the front port once ready; runs until killed.
'use strict';
const net = require('net');

const leaky = process.argv.includes('--leaky');

const backend = net.createServer((s) => {
  s.on('error', () => {});
  s.on('data', () => s.end('OK\n'));
});

function handle(client, upstreamPort) {
  client.on('error', () => client.destroy());
  let buf = '';
  client.on('end', () => client.end());
  client.on('data', (chunk) => {
    buf += chunk.toString();
    if (!buf.includes('\n')) return;
    const up = net.connect(upstreamPort, '127.0.0.1');
    up.on('connect', () => up.write('GET\n'));
    up.on('data', (d) => {
      client.end(`200 ${d.toString().trim()}\n`);
      up.end();
    });
    up.on('error', () => {
      if (leaky) {
        client.write('502\n');          // the bug: the client is never ended
        client.removeAllListeners('end');
      } else {
        client.end('502\n');
      }
    });
  });
}

backend.listen(0, '127.0.0.1', () => {
  const upstreamPort = backend.address().port;
  const front = net.createServer({ allowHalfOpen: true }, (c) => handle(c, upstreamPort));
  front.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${front.address().port}\n`);
  });
});
