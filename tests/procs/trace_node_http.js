// A healthy Node.js HTTP server: answers every request and keeps nothing.
// Prints {"port": N} once listening. Used by trace tests (churn) and bench/trace_cost.py.
'use strict';
const http = require('http');
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('ok\n');
});
server.keepAliveTimeout = 1000;
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port, pid: process.pid }));
});
