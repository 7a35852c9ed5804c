#!/usr/bin/env bash
# Start a small real Node.js server holding a few sockets and inspect it with fdguard.
set -euo pipefail
cd "$(dirname "$0")/.."
node examples/node_server.js > /tmp/fdguard-example.port &
NODE_PID=$!
trap 'kill $NODE_PID 2>/dev/null; wait $NODE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    [ -s /tmp/fdguard-example.port ] && break
    sleep 0.1
done
echo "== fdguard inspect $NODE_PID (a Node.js server with open client connections)"
python3 -m fdguard inspect "$NODE_PID"
