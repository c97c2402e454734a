"""Shared start-up of the HTTP peers: pick a free loopback port, run a Starlette app with
uvicorn, print "ready PORT" once it accepts connections, then read stdin until it closes; with
`command`, each stdin line is answered with one line of what `command(line)` returns."""
import socket
import sys
import threading
import time

import uvicorn


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app, port=0, command=None):
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    print(f"ready {port}", flush=True)
    for line in sys.stdin:
        if command is not None:
            print(command(line.strip()), flush=True)
    server.should_exit = True
