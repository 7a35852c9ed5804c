"""libuv runtimes seen from outside: detection, libuv version, loop internals, handle views.

Re-exports only. `detect` says which runtime a process runs (Node.js, uvloop,
any program on libuv) and the exact libuv version; `loops` reconstructs each
event loop and the fds libuv opened for itself; the handle views
(`node_report`, `agent_client`) say what libuv and the application hold.
"""

from fdguard.runtimes.detect import RuntimeInfo, detect, detect_json, runtime_json

__all__ = ["RuntimeInfo", "detect", "detect_json", "runtime_json"]
