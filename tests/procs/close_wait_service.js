// A TCP service whose total fd count stays flat while its CLOSE-WAIT sockets grow, in
// "leak" mode: it holds SPARE files open, never closes a connection its peer has
// closed (allowHalfOpen, no end()), and closes one spare file for each such socket, as
// a service that frees one resource while it strands another. In "healthy" mode it
// closes its side when the peer does, and keeps its spares. Prints {"port": N} when
// listening; exits when stdin ends.
"use strict";
const net = require("net");
const fs = require("fs");

const mode = process.argv[2] || "healthy";
const spares = [];
for (let i = 0; i < Number(process.argv[3] || 300); i++) spares.push(fs.openSync("/dev/null", "r"));
const stranded = [];

const server = net.createServer({ allowHalfOpen: true }, (sock) => {
  sock.on("error", () => {});
  sock.on("end", () => {
    if (mode === "leak") {
      stranded.push(sock); // CLOSE-WAIT from now on
      const fd = spares.pop();
      if (fd !== undefined) fs.closeSync(fd);
    } else {
      sock.end();
    }
  });
  sock.resume();
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
