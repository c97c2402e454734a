"""Reference gRPC health server for the probe tests: grpcio's own health service
(grpcio-health-checking), driven over stdin.

Prints "ready PORT" once listening. Commands, one per line on stdin:
  set SERVICE STATUS   STATUS is SERVING, NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN; SERVICE "" is
                       written as -
  watchers             prints how many Watch streams are open
  watch_calls          prints how many Watch calls came (with --no-watch)
  stop                 stops serving (connections are refused from then on)
Options: --no-health (no health service at all), --no-watch (Check only: Watch ends
UNIMPLEMENTED, as on servers that predate it), --cert/--key (TLS), --client-ca (mTLS),
--require-metadata key=value (calls without it end UNAUTHENTICATED).
"""
import argparse
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class RequireMetadata(grpc.ServerInterceptor):
    """Refuses calls that lack any of the required metadata entries."""

    def __init__(self, required):
        self.required = required

    def intercept_service(self, continuation, details):
        got = dict(details.invocation_metadata)
        if all(got.get(k) == v for k, v in self.required.items()):
            return continuation(details)

        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong metadata")

        return grpc.unary_unary_rpc_method_handler(refuse)


class CheckOnly(health.HealthServicer):
    """grpcio's health service without Watch, counting the Watch calls it refuses."""

    def __init__(self):
        # Blocking mode: grpcio then calls Watch as a plain stream handler.
        super().__init__(experimental_non_blocking=False)
        self.watch_calls = 0
        self.calls_lock = threading.Lock()

    def Watch(self, request, context, send_response_callback=None):
        with self.calls_lock:
            self.watch_calls += 1
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-health", action="store_true")
    parser.add_argument("--no-watch", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    parser.add_argument("--require-metadata", action="append", default=[],
                        help="key=value every call must carry, else UNAUTHENTICATED")
    parser.add_argument("--serving", action="append", default=[],
                        help="a service that is SERVING from the start")
    args = parser.parse_args()

    required = dict(item.split("=", 1) for item in args.require_metadata)
    interceptors = [RequireMetadata(required)] if required else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=interceptors)
    servicer = None
    if not args.no_health:
        servicer = CheckOnly() if args.no_watch else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        for name in args.serving:
            servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"127.0.0.1:{args.port}"
    if args.cert:
        with open(args.cert, "rb") as f:
            cert = f.read()
        with open(args.key, "rb") as f:
            key = f.read()
        ca = None
        if args.client_ca:
            with open(args.client_ca, "rb") as f:
                ca = f.read()
        creds = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    server.start()
    print(f"ready {port}", flush=True)

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "set" and len(words) == 3 and servicer is not None:
            service = "" if words[1] == "-" else words[1]
            status = health_pb2.HealthCheckResponse.ServingStatus.Value(words[2])
            servicer.set(service, status)
            print("ok", flush=True)
        elif words[0] == "watchers":
            # Watch streams still open: grpcio keeps one condition waiter per stream.
            count = 0
            if servicer is not None:
                with servicer._lock:
                    count = sum(len(s) for s in servicer._send_response_callbacks.values())
            print(count, flush=True)
        elif words[0] == "watch_calls":
            print(getattr(servicer, "watch_calls", 0), flush=True)
        elif words[0] == "stop":
            server.stop(grace=None).wait()
            print("stopped", flush=True)
        else:
            print(f"unknown command {line.strip()!r}", flush=True)
    server.stop(grace=None)


if __name__ == "__main__":
    main()
