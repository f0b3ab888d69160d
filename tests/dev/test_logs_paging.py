"""`pollinator logs` pages past the server's 500-line limit without losing lines that share a nanosecond.

The local server stamps every line with a distinct timestamp, but the real one only does so in
practice (FACTS: collisions possible in principle). So the rows are written straight into the
server's store with a tie across the page boundary, and the real CLI reads them over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pollinator.colonies.rpc import MAX_LOG_COUNT
from server_harness import start_colony


def test_logs_keeps_lines_sharing_a_nanosecond_at_a_page_boundary(tmp_path) -> None:
    colony = start_colony(tmp_path / "colony")
    try:
        status, reply = colony.raw({"msgtype": "submitfuncspecmsg", "spec": {
            "conditions": {"colonyname": "dev", "executortype": colony.executor_type}, "funcname": "execute",
            "maxwaittime": -1, "maxexectime": 60}}, colony.user_key)
        assert status == 200
        pid = reply["processid"]
        base = 1_700_000_000_000_000_000
        # line i at base+i, but the first line of page 2 shares the last timestamp of page 1; then one more
        stamps = [base + i for i in range(MAX_LOG_COUNT)] + [base + MAX_LOG_COUNT - 1, base + MAX_LOG_COUNT]
        rows = [(pid, "dev", colony.executor_name, ts, f"line {i}\n") for i, ts in enumerate(stamps)]
        with colony.server.app.state.store._tx() as db:
            db.executemany("INSERT INTO logs (pid, colony, executorname, ts, msg) VALUES (?, ?, ?, ?, ?)", rows)
        env = {**os.environ, "COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(colony.server.port),
               "COLONIES_TLS": "false", "COLONIES_COLONY_NAME": "dev", "COLONIES_PRVKEY": colony.user_key}
        out = subprocess.run([sys.executable, "-m", "pollinator.cli.main", "logs", pid, "--json"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        got = [entry["message"] for entry in json.loads(out.stdout)]
        assert got == [f"line {i}\n" for i in range(len(stamps))]
    finally:
        colony.server.stop()
