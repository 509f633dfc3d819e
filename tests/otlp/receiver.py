#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for tests (a collector stand-in).

Accepts ``POST /v1/traces`` with ``Content-Type: application/x-protobuf``
(optionally ``Content-Encoding: gzip``), decodes the body with the
OpenTelemetry project's published schema (PyPI ``opentelemetry-proto``:
``ExportTraceServiceRequest``) and answers 200 with an empty
``ExportTraceServiceResponse``, as the OTLP/HTTP specification asks.
``scripts/test.sh`` installs that package, pinned, into ``.local/venv``;
``tests/integration/common/otlp_receiver.rs`` starts this script.

Files it writes (appended to, never truncated, so start each test with
fresh paths):

- ``--spans FILE``: one JSON object per received span (see ``span_json``):
  ids in lowercase hex, kind and status code as their names, attributes,
  event and link attributes and resource attributes as flat dicts.
- ``--raw FILE``: every request as received: request line, headers, a blank
  line, the body bytes as sent; for a gzip body the decompressed bytes
  follow as well, so a test can search every exported byte for a secret.
- ``--requests FILE`` (optional): one JSON object per request (path,
  content type and encoding, selected headers, body size, span count, the
  status answered), to count exports and retries.

Collector behaviour, set on the command line and changeable while running
with ``POST /_control`` (JSON body with any of the same keys):

- ``--delay S``: sleep S seconds before answering (a slow collector).
- ``--status CODE``: answer CODE instead of 200 (``--fail`` is 503); the
  spans of a request not answered 200 are not written to ``--spans`` (the
  raw bytes and the request line are).
- ``--retry-after V``: a ``Retry-After`` header on non-200 answers.
- ``--fail-first N``: answer ``--status`` (or 503 if that is 200) to the
  first N trace requests, then 200 to every later one (for retry tests).

``GET /_stats`` answers JSON counters (requests, spans, by status).

It binds 127.0.0.1 only. ``--port 0`` picks a free port; the first line on
stdout is ``listening on 127.0.0.1:PORT`` once it accepts connections
(``--port-file`` also receives the port).
"""

import argparse
import gzip
import json
import signal
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1 import trace_pb2

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
# A request body larger than this is refused (413); OTLP's recommended
# client-side limit is 64 MiB, tests send far less.
MAX_BODY = 64 * 1024 * 1024

KIND_NAMES = {
    value: name.removeprefix("SPAN_KIND_")
    for name, value in trace_pb2.Span.SpanKind.items()
}
STATUS_NAMES = {
    value: name.removeprefix("STATUS_CODE_")
    for name, value in trace_pb2.Status.StatusCode.items()
}


def any_value(value):
    """An OTLP AnyValue as a plain JSON value (bytes as hex)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes(key_values):
    """Repeated KeyValue as a flat dict (a repeated key: the last wins)."""
    return {kv.key: any_value(kv.value) for kv in key_values}


def span_json(span, resource, resource_schema_url, scope, request_no):
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "trace_state": span.trace_state,
        "flags": span.flags,
        "name": span.name,
        "kind": KIND_NAMES.get(span.kind, str(span.kind)),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "dropped_attributes_count": span.dropped_attributes_count,
        "events": [
            {
                "name": event.name,
                "time_ns": event.time_unix_nano,
                "attributes": attributes(event.attributes),
                "dropped_attributes_count": event.dropped_attributes_count,
            }
            for event in span.events
        ],
        "dropped_events_count": span.dropped_events_count,
        "links": [
            {
                "trace_id": link.trace_id.hex(),
                "span_id": link.span_id.hex(),
                "trace_state": link.trace_state,
                "flags": link.flags,
                "attributes": attributes(link.attributes),
            }
            for link in span.links
        ],
        "dropped_links_count": span.dropped_links_count,
        "status": {
            "code": STATUS_NAMES.get(span.status.code, str(span.status.code)),
            "message": span.status.message,
        },
        "resource": attributes(resource.attributes),
        "resource_schema_url": resource_schema_url,
        "scope": {"name": scope.name, "version": scope.version},
        "request": request_no,
    }


class State:
    """What the collector does, and what it has seen; shared by threads."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.delay = args.delay
        self.status = args.status
        self.retry_after = args.retry_after
        self.fail_first = args.fail_first
        self.spans_path = args.spans
        self.raw_path = args.raw
        self.requests_path = args.requests
        self.requests = 0
        self.trace_requests = 0
        self.spans = 0
        self.by_status = {}

    def behaviour(self):
        """(delay, status, request number) for the next trace request."""
        with self.lock:
            self.trace_requests += 1
            status = self.status
            if self.fail_first > 0:
                # The first N fail (with --status, or 503), then all succeed.
                status = self.status if self.status != 200 else 503
                self.fail_first -= 1
                if self.fail_first == 0:
                    self.status = 200
            return self.delay, status, self.trace_requests

    def control(self, changes):
        with self.lock:
            for key in ("delay", "status", "retry_after", "fail_first"):
                if key in changes:
                    setattr(self, key, changes[key])

    def stats(self):
        with self.lock:
            return {
                "requests": self.requests,
                "trace_requests": self.trace_requests,
                "spans": self.spans,
                "by_status": dict(self.by_status),
                "delay": self.delay,
                "status": self.status,
                "fail_first": self.fail_first,
            }

    def record(self, raw, request_line, spans, status):
        """Appends what one request brought; spans only when answered 200."""
        with self.lock:
            self.requests += 1
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1
            if raw is not None and self.raw_path:
                with open(self.raw_path, "ab") as out:
                    out.write(raw)
            if status == 200 and spans and self.spans_path:
                with open(self.spans_path, "a", encoding="utf-8") as out:
                    for span in spans:
                        out.write(json.dumps(span, sort_keys=True) + "\n")
            if status == 200:
                self.spans += len(spans)
            if self.requests_path:
                with open(self.requests_path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(dict(request_line, status=status)) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otlp-test-receiver/1"

    def log_message(self, fmt, *args):  # quiet unless -v
        if self.server.verbose:
            sys.stderr.write("receiver: " + (fmt % args) + "\n")

    def answer(self, status, body=b"", content_type=None, headers=()):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length)

    def do_GET(self):
        if self.path == "/_stats":
            body = json.dumps(self.server.state.stats()).encode()
            return self.answer(200, body, "application/json")
        self.answer(404)

    def do_POST(self):
        state = self.server.state
        try:
            body = self.read_body()
        except ValueError:
            self.close_connection = True
            return self.answer(413)
        if self.path == "/_control":
            state.control(json.loads(body or b"{}"))
            return self.answer(200, json.dumps(state.stats()).encode(), "application/json")
        head = (
            f"{self.requestline}\r\n".encode("latin-1")
            + bytes(self.headers)  # the header block as received, ends in a blank line
        )
        raw = head + body
        path = self.path.split("?", 1)[0]
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        summary = {
            "path": self.path,
            "content_type": content_type,
            "content_encoding": encoding,
            "body_bytes": len(body),
            "user_agent": self.headers.get("User-Agent"),
            "traceparent": self.headers.get("traceparent"),
            "headers": sorted(self.headers.keys()),
            "spans": 0,
        }
        if path != TRACES_PATH:
            state.record(raw, summary, [], 404)
            return self.answer(404)
        if content_type != PROTOBUF:
            state.record(raw, summary, [], 415)
            return self.answer(415, b"only application/x-protobuf", "text/plain")
        try:
            if encoding == "gzip":
                payload = gzip.decompress(body)
                raw += b"\r\n--- decompressed body ---\r\n" + payload
            elif encoding == "deflate":
                payload = zlib.decompress(body)
                raw += b"\r\n--- decompressed body ---\r\n" + payload
            elif encoding == "identity":
                payload = body
            else:
                state.record(raw, summary, [], 415)
                return self.answer(415, b"unsupported Content-Encoding", "text/plain")
            request = ExportTraceServiceRequest()
            request.ParseFromString(payload)
        except (OSError, EOFError, zlib.error, DecodeError) as err:
            state.record(raw + b"\r\n", summary, [], 400)
            return self.answer(400, f"cannot decode: {err}".encode(), "text/plain")
        raw += b"\r\n"

        delay, status, request_no = state.behaviour()
        spans = [
            span_json(span, rs.resource, rs.schema_url, ss.scope, request_no)
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        summary["spans"] = len(spans)
        if delay:
            time.sleep(delay)
        state.record(raw, summary, spans, status)
        if status == 200:
            return self.answer(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)
        headers = []
        if state.retry_after is not None:
            headers.append(("Retry-After", str(state.retry_after)))
        self.answer(status, b"", "text/plain", headers)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=4318, help="0 picks a free one")
    parser.add_argument("--port-file", help="write the bound port here")
    parser.add_argument("--spans", default="spans.jsonl", help="JSON lines, one per span")
    parser.add_argument("--raw", default="raw.bin", help="every request's bytes")
    parser.add_argument("--requests", help="JSON lines, one per request")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--status", type=int, default=200, help="status to answer")
    parser.add_argument("--fail", action="store_const", const=503, dest="status",
                        help="answer 503 (same as --status 503)")
    parser.add_argument("--retry-after", help="Retry-After on non-200 answers")
    parser.add_argument("--fail-first", type=int, default=0,
                        help="answer --status (503 if 200) to the first N trace requests")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args)
    server.verbose = args.verbose
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file, "w", encoding="utf-8") as out:
            out.write(f"{port}\n")
    print(f"listening on 127.0.0.1:{port}", flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
