#!/usr/bin/env python3
"""A minimal Alertmanager webhook receiver, for the demo stack and the tests.

Alertmanager POSTs a JSON document per notification; this prints one line per
alert in it and, with --out, appends the alert as one JSON line to a file (with
the time it arrived, the receiver path and the group's status), so that a script
can wait for a given alert. It is an example endpoint, not a production one: no
authentication, no retries to report.
"""

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--listen",
        default="127.0.0.1:9099",
        help="host:port to listen on (a container needs 0.0.0.0:9099) [%(default)s]",
    )
    parser.add_argument("--out", help="append every alert received to this file, one JSON per line")
    parser.add_argument(
        "--address-file",
        help="once listening, write the bound host:port here (with --listen HOST:0, the port the kernel chose)",
    )
    return parser.parse_args()


class Handler(BaseHTTPRequestHandler):
    out = None

    def do_POST(self):  # noqa: N802 (name fixed by BaseHTTPRequestHandler)
        received = time.time()
        length = int(self.headers.get("Content-Length", "0"))
        try:
            notification = json.loads(self.rfile.read(length))
        except ValueError as error:
            self.send_error(400, f"not JSON: {error}")
            return
        for alert in notification.get("alerts", []):
            record = {
                "received": received,
                "receiver_path": self.path,
                "receiver": notification.get("receiver"),
                "status": alert.get("status"),
                "labels": alert.get("labels", {}),
                "annotations": alert.get("annotations", {}),
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
            }
            labels = record["labels"]
            print(
                f"{time.strftime('%H:%M:%S', time.localtime(received))} {self.path} "
                f"{record['status']:8} {labels.get('alertname', '?')} "
                f"{labels.get('agent', labels.get('instance', ''))} "
                f"severity={labels.get('severity', '')} "
                f"{record['annotations'].get('summary', '')}",
                flush=True,
            )
            if self.out:
                with open(self.out, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        # One line per alert above is the useful log; the access log is noise.
        pass


def main():
    args = parse_args()
    host, _, port = args.listen.rpartition(":")
    Handler.out = args.out
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    bound = "%s:%d" % server.server_address[:2]
    if args.address_file:
        # Written whole then renamed, so that a reader never sees half an address.
        with open(args.address_file + ".tmp", "w") as f:
            f.write(bound + "\n")
        os.replace(args.address_file + ".tmp", args.address_file)
    print(f"webhook receiver listening on {bound}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
