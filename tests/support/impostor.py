"""A listener where a device sends HTTP, pretending to be the cloud, recording every byte.

It answers as a cloud that accepts anyone would: a segment list (luring an appliance into a
git fetch at the same address), 401 with a Basic challenge for anything else (asking a client
for its password). Plain HTTP, or TLS with a key of its own (not the cloud's).
"""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import ssl
import threading

CHALLENGE = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="bluegrass"\r\n'
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


class Impostor:
    def __init__(self, port: int, user: str, context: ssl.SSLContext | None = None) -> None:
        self.user = user
        self.context = context
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        impostor = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                impostor._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        # Bound and listening once constructed: a client connecting after this is served.
        self.server = Server(("127.0.0.1", port), Handler)
        self.port = port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Impostor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it saw -------------------------------------------------------------------------

    def everything(self) -> bytes:
        with self._lock:
            return b"".join(self.received)

    def leaked(self, user: str, password: str) -> list[str]:
        """Which forms of the device's secret reached this listener (none, if all is well)."""
        seen = self.everything()
        forms = {
            "the password": password.encode(),
            "the secret": password.partition(".")[2].encode(),
            "Basic user:password": base64.b64encode(f"{user}:{password}".encode()),
            "an Authorization header": b"authorization:",
        }
        return [name for name, form in forms.items() if form in seen.lower() or form in seen]

    def requests(self) -> list[str]:
        """The request lines received (an HTTP request got through, in clear or in TLS)."""
        lines = []
        for chunk in self.received:
            first = chunk.split(b"\r\n", 1)[0]
            if first.startswith((b"GET ", b"POST ")):
                lines.append(first.decode("latin-1"))
        return lines

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 1 << 20:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            with self._lock:
                self.received.append(data)
            if b"\r\n\r\n" not in data:
                return
            if data.startswith(b"GET /api/v1/segments "):
                body = json.dumps(
                    {
                        "user": self.user,
                        "segments": [
                            {"name": "docs", "git": f"/git/{self.user}/docs.git", "head": "ab" * 20}
                        ],
                    }
                ).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            else:
                conn.sendall(CHALLENGE)
        except (OSError, ssl.SSLError):
            return  # a client that gave up (a pin mismatch closes right after the handshake)
        finally:
            conn.close()
