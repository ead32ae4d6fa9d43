#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for tests/it/otel.rs, on loopback.

Each POST body is decoded as an ExportTraceServiceRequest with opentelemetry-proto (the
published schema's generated code: a decoder that owes nothing to hookflow's encoder) and every
span is appended to the file named by the first argument as one JSON line. A body that does not
decode is written as an `error` line. The port is printed on the first line of stdout.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT = sys.argv[1]


def any_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(pairs):
    return {pair.key: any_value(pair.value) for pair in pairs}


def spans_of(request, path, content_type, raw):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "path": path,
                    "content_type": content_type,
                    "resource": resource,
                    "scope": scope_spans.scope.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "start": span.start_time_unix_nano,
                    "end": span.end_time_unix_nano,
                    "status": span.status.code,
                    "flags": span.flags,
                    "attributes": attributes(span.attributes),
                }
    # The bytes as sent, readable, for the check that no secret is in them.
    yield {"path": path, "raw": raw.decode("latin-1")}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        content_type = self.headers.get("content-type")
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
            lines = list(spans_of(request, self.path, content_type, body))
        except Exception as error:  # a malformed body is the test's finding, not a crash
            lines = [{"path": self.path, "error": str(error)}]
        with open(OUT, "a", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(line) + "\n")
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
