"""A wire-level SignalFx ingest stand-in: no SignalFx server runs locally, so this records
what Switchyard sends and answers as the real intake does (200 "OK").

Usage: sfx_capture.py OUT.jsonl [FAIL_FIRST_N]
Prints the port it listens on (127.0.0.1), then appends one JSON object per request:
{"path", "headers", "body"} with the body gunzipped and parsed. The first FAIL_FIRST_N
requests are answered 503, to exercise the sender's retries.
"""
import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

OUT = sys.argv[1]
FAIL = [int(sys.argv[2]) if len(sys.argv) > 2 else 0]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if FAIL[0] > 0:
            FAIL[0] -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        rec = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": json.loads(raw)}
        with open(OUT, "a") as f:
            f.write(json.dumps(rec) + "\n")
        body = b'"OK"'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = HTTPServer(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
