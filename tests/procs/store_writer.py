"""Write to an fdguard store in a tight loop, one transaction per "interval", until killed.

argv: DB_PATH READY_AFTER. Each transaction i writes one sample (count=i), three
kind counts and one event, so a torn transaction would show as a partial group.
Prints "ready" after READY_AFTER commits and keeps writing (bounded).
"""

import sys

from fdguard.model import ProcessRef
from fdguard.store import Store

path, ready_after = sys.argv[1], int(sys.argv[2])
store = Store(path)
tid = store.target_id(ProcessRef(1, 1), ("writer",), 0.0)
for i in range(2_000_000):
    with store.transaction():
        store.add_sample(tid, float(i), i, 1024)
        store.add_kind_counts(tid, float(i), {"file": i, "pipe": 2}, {"ESTAB": 1})
        store.add_event(tid, float(i), "tick", {"i": i})
    if i + 1 == ready_after:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
