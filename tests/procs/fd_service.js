// A small HTTP service that leaks one fd per request in "leak" mode, or opens and
// closes it in "healthy" mode. Prints {"port": N} when listening; in leak mode it
// prints "EMFILE <ns>" (process.hrtime, CLOCK_MONOTONIC) the first time open fails.
"use strict";
const http = require("http");
const fs = require("fs");

const mode = process.argv[2] || "healthy";
const kept = [];
let reported = false;

const server = http.createServer((req, res) => {
  let fd;
  try {
    fd = fs.openSync("/dev/null", "r");
  } catch (err) {
    if (err.code === "EMFILE" && !reported) {
      reported = true;
      process.stdout.write(`EMFILE ${process.hrtime.bigint()}\n`);
    }
    res.writeHead(500, { "content-type": "text/plain" });
    res.end(err.code + "\n");
    return;
  }
  if (mode === "leak") kept.push(fd);
  else fs.closeSync(fd);
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(`ok ${kept.length}\n`);
});
server.keepAliveTimeout = 60000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
