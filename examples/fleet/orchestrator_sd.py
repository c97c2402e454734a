#!/usr/bin/env python3
"""An orchestrator's HTTP SD endpoint for agent-health-exporter, in the Prometheus HTTP SD
format: GET /sd/agents answers a JSON list of {"targets": [...], "labels": {...}}. Standard
library only; a real orchestrator answers from its own list of running agents."""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer

TOKEN = "example-sd-token"

# What the orchestrator runs now: one entry per agent.
RUNNING = [
    {"name": "worker-a1", "type": "worker", "address": "127.0.0.1:8101", "probe": True},
    {"name": "worker-a2", "type": "worker", "address": "127.0.0.1:8102", "probe": True},
    {"name": "batch-7", "type": "worker", "address": "127.0.0.1:8107", "probe": False},
]


class SD(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/sd/agents":
            self.send_error(404)
            return
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.send_error(401)
            return
        groups = [{
            "targets": [a["address"]],
            "labels": {"agent": a["name"], "agent_type": a["type"],
                       "probe": "true" if a["probe"] else "false",
                       "__path__": "/health"},
        } for a in RUNNING]
        body = json.dumps(groups).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", 8000), SD).serve_forever()
