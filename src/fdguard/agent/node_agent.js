// fdguard's agent for Node.js, preloaded by `fdguard run -- node app.js`
// (NODE_OPTIONS=--require <this file>). It answers one question on an
// owner-only unix socket: "what handles does this process hold?", with the
// process's own diagnostic report (process.report.getReport(): the libuv
// handles and their fds). It changes nothing else: its server is unref'd so it
// never keeps the process alive, and the socket is removed at exit.
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');

function start() {
  if (!process.report || typeof process.getuid !== 'function') return;
  const dir = process.env.FDGUARD_AGENT_DIR || `/tmp/fdguard-${process.getuid()}`;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  // Refuse a directory someone else owns or others can write: the socket must
  // be reachable by its owner only.
  if (!st.isDirectory() || st.uid !== process.getuid() || (st.mode & 0o077) !== 0) return;
  const sock = path.join(dir, `${process.pid}.sock`);
  try { fs.unlinkSync(sock); } catch (e) { /* none left over */ }
  const server = net.createServer((conn) => {
    conn.on('error', () => {});
    conn.once('data', () => {
      process.report.excludeNetwork = true;
      const report = process.report.getReport();
      const own = [server._handle && server._handle.fd, conn._handle && conn._handle.fd];
      conn.end(JSON.stringify({ agent: 'node', pid: process.pid, agent_fds: own, report }));
    });
  });
  server.on('error', () => {});
  const old = process.umask(0o177);
  try {
    server.listen(sock);
  } finally {
    process.umask(old);
  }
  server.unref();
  process.on('exit', () => { try { fs.unlinkSync(sock); } catch (e) { /* gone */ } });
}

try { start(); } catch (e) { /* the agent must never break the application */ }
