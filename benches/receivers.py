#!/usr/bin/env python3
"""Stand-in receivers for the exporter benchmark (benches/compare.sh): an
OTLP/HTTP endpoint that takes metrics and traces, a BlazeMeter API and data
host that answer the external-results flow, and a Prometheus-like scraper of
the run's /metrics every second. They only answer, as cheaply as they can:
the receivers that check what is sent are the test suite's (tests/otlp.rs,
tests/blazemeter.rs, tests/prometheus.rs).

    python3 benches/receivers.py PORT METRICS_ADDR
"""
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    "/api/v4/web/version": {"result": {}},
    "/api/v4/accounts": {"result": [{"id": 1}]},
    "/api/v4/workspaces": {"result": [{"id": 2, "enabled": True}], "total": 1},
    "/api/v4/tests": {"result": [{"id": 3, "name": "bench", "configuration": {"type": "external"}}]},
    "/api/v4/tests/3/start-external": {"result": {"session": {"id": "s", "userId": 4},
                                                  "master": {"id": 5}, "signature": "x"}},
    "/submit.php": {"result": {"session": {"statusCode": 100}}},
    "/api/v4/sessions/s/stop": {"result": {}},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        if path.startswith("/v1/"):
            body, kind = b"", "application/x-protobuf"  # an empty OTLP response
        elif path in ANSWERS:
            body, kind = json.dumps(ANSWERS[path]).encode(), "application/json"
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


def scrape(addr):
    while True:
        try:
            urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read()
        except OSError:
            pass
        time.sleep(1)


if __name__ == "__main__":
    threading.Thread(target=scrape, args=(sys.argv[2],), daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
