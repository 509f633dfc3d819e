"""A webhook receiver for the tests: verifies every post with the Standard
Webhooks reference library (PyPI `standardwebhooks`) and records it.

    receiver.py --secret whsec_... [--fail-first N] [--hold SECONDS] [--port PORT]

Listens on 127.0.0.1 (on PORT, or a free port) and prints its port on the
first line of stdout. Answers 500 to the first N
posts, then 204 to posts that verify and 401 to those that do not; with
--hold, keeps the first post waiting that long before answering.
`GET /received` returns every post: its webhook-id, whether it verified,
its body and the status answered.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    webhook = Webhook(args.secret)
    lock = threading.Lock()
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                webhook.verify(body, headers)
                verified = True
            except Exception:
                verified = False
            with lock:
                number = len(received)
                if number == 0 and args.hold:
                    hold = args.hold
                else:
                    hold = 0
                status = 500 if number < args.fail_first else (204 if verified else 401)
                received.append(
                    {
                        "webhook_id": headers.get("webhook-id"),
                        "verified": verified,
                        "body": json.loads(body or b"null"),
                        "status": status,
                    }
                )
            if hold:
                time.sleep(hold)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            with lock:
                data = json.dumps(received).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
