// A careless HTTP service for redaction tests: it logs its command line and some of
// its environment (secrets included) to the log file named by --log-file, and leaks
// one /dev/null fd per request. Prints {"port": N} once listening.
"use strict";
const http = require("http");
const fs = require("fs");

const args = process.argv.slice(2);
const logPath = args[args.indexOf("--log-file") + 1];
const log = fs.openSync(logPath, "a");
const say = (line) => fs.writeSync(log, line + "\n");
say(`starting: ${args.join(" ")}`);
say(`aws key ${process.env.AWS_ACCESS_KEY_ID} secret ${process.env.AWS_SECRET_ACCESS_KEY}`);
say(`upstream: Authorization: Bearer ${process.env.UPSTREAM_TOKEN}`);
say(`error: cannot reach ${process.env.DATABASE_URL}: ECONNREFUSED`);
const kept = [];
const server = http.createServer((req, res) => {
  try {
    kept.push(fs.openSync("/dev/null", "r"));
  } catch (err) {
    say(`Error: ${err.code} while serving ${req.url} for ${process.env.SESSION_SECRET}`);
  }
  res.end("ok\n");
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
