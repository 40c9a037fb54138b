"""An OTLP/HTTP trace receiver for the tests, decoding with the official
`opentelemetry-proto` package.

    otlp_receiver.py            # answer every POST /v1/traces with 200
    otlp_receiver.py --blackhole   # accept connections, read, never answer

Prints {"listening": "127.0.0.1:PORT"} first, then (normal mode) one JSON line per
received span: ids in hex, name, kind, parent, status, times, attributes, the
resource's attributes, the request's content type and the SHA-256 of its x-api-key
header (never the header itself).
"""
import argparse
import hashlib
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

LOCK = threading.Lock()


def emit(obj):
    with LOCK:
        print(json.dumps(obj), flush=True)


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        key = self.headers.get("x-api-key")
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    emit(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("content-type"),
                            "api_key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
                            "resource": resource,
                            "scope": ss.scope.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": Span.SpanKind.Name(s.kind),
                            "status": s.status.code,
                            "start_ns": s.start_time_unix_nano,
                            "end_ns": s.end_time_unix_nano,
                            "attributes": attrs(s.attributes),
                        }
                    )
        data = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def blackhole():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    emit({"listening": "%s:%d" % srv.getsockname()})
    held = []
    while True:
        conn, _ = srv.accept()
        held.append(conn)  # never answered, never closed

        def drain(c=conn):
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass

        threading.Thread(target=drain, daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--blackhole", action="store_true")
    a = p.parse_args()
    if a.blackhole:
        blackhole()
        return 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    emit({"listening": "%s:%d" % server.server_address[:2]})
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
