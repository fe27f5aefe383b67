"""A loopback HTTP server that misbehaves on purpose, for the hostile-feed
tests.  Unlike feedserver.py (a well-behaved feed), every answer here is
written by hand on a raw socket, so it can be anything: an endless body
(with or without a Content-Length, or gzip-compressed on the fly), a body
dripped one byte at a time, headers that never end, a redirect to any
Location, or raw bytes.  Nothing big is ever held in memory or on disk:
streams are generated as they are sent.

    srv = HostileServer().start()
    srv.set(mode="stream", total=2 << 30, prefix=b'{"courses":[', fill=b" ")
    ... srv.url ...
    srv.requests   # one dict per request: method, path, headers, sent
                   # (body bytes written), done (all sent), aborted (the
                   # client went away)
    srv.stop()

Modes (set(mode=..., **options)):
  stream   status 200, `prefix` then `fill` repeated until `total` bytes;
           length="declared" sends Content-Length: total, length="close"
           none (the body ends when the connection closes), length="chunked"
           uses chunked transfer encoding.
  gzip     like stream, the body gzip-compressed as it is produced
           (Content-Encoding: gzip, no length): a decompression bomb.
  drip     status 200, `body` sent `step` bytes every `interval` seconds.
  headers  a status line, then header lines forever (`total` bytes at most).
  redirect 302 to `location`.
  raw      the bytes `raw` as they are, then close.
"""
import socket
import socketserver
import threading
import zlib

CHUNK = 64 * 1024


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server.owner
        sock = self.request
        sock.settimeout(30)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                b = sock.recv(4096)
                if not b:
                    return
                data += b
        except OSError:
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip()] = v.strip()
        rec = {"method": parts[0], "path": parts[1] if len(parts) > 1 else "",
               "headers": headers, "sent": 0, "done": False, "aborted": False}
        with srv.lock:
            conf = dict(srv.conf)
            srv.requests.append(rec)
        try:
            srv.answer(sock, conf, rec)
            rec["done"] = True
        except OSError:
            rec["aborted"] = True
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class HostileServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.conf = {"mode": "raw", "raw": b"HTTP/1.1 500 x\r\n\r\n"}
        self.stopping = threading.Event()
        self.httpd = None

    def set(self, **conf):
        with self.lock:
            self.conf = conf
        return self

    def start(self):
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d/feed.json" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is None:
            return
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
        self.httpd = None

    def last(self):
        with self.lock:
            return dict(self.requests[-1]) if self.requests else None

    # -- answers -----------------------------------------------------------
    def _send(self, sock, data, rec):
        if self.stopping.is_set():
            raise OSError("stopping")
        sock.sendall(data)
        rec["sent"] += len(data)

    def _body_chunks(self, conf):
        """prefix, then fill repeated, up to total bytes, in CHUNK pieces."""
        total = conf.get("total", 2 << 30)
        prefix = conf.get("prefix", b"")
        fill = conf.get("fill", b"\0")
        block = (fill * (CHUNK // len(fill) + 1))[:CHUNK]
        left = total
        if prefix:
            yield prefix[:left]
            left -= min(len(prefix), left)
        while left > 0:
            piece = block[:left]
            yield piece
            left -= len(piece)

    def answer(self, sock, conf, rec):
        mode = conf["mode"]
        if mode == "raw":
            sock.sendall(conf["raw"])
            rec["sent"] = len(conf["raw"])
            return
        if mode == "redirect":
            sock.sendall(("HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n" % conf["location"]).encode())
            return
        if mode == "headers":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
            total = conf.get("total", 256 << 20)
            while rec["sent"] < total:
                self._send(sock, line, rec)
            return
        if mode == "drip":
            body = conf["body"]
            step = conf.get("step", 1)
            sock.sendall(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\nConnection: close\r\n\r\n"
                          % len(body)).encode())
            for i in range(0, len(body), step):
                if self.stopping.wait(conf.get("interval", 1.0)):
                    raise OSError("stopping")
                self._send(sock, body[i:i + step], rec)
            return
        if mode == "stream":
            length = conf.get("length", "declared")
            hdr = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            if length == "declared":
                hdr += "Content-Length: %d\r\n" % conf.get("total", 2 << 30)
            elif length == "chunked":
                hdr += "Transfer-Encoding: chunked\r\n"
            hdr += "Connection: close\r\n\r\n"
            sock.sendall(hdr.encode())
            for piece in self._body_chunks(conf):
                if length == "chunked":
                    self._send(sock, b"%x\r\n%s\r\n" % (len(piece), piece), rec)
                else:
                    self._send(sock, piece, rec)
            if length == "chunked":
                sock.sendall(b"0\r\n\r\n")
            return
        if mode == "gzip":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Encoding: gzip\r\nConnection: close\r\n\r\n")
            z = zlib.compressobj(9, zlib.DEFLATED, 31)
            rec["expanded"] = 0
            for piece in self._body_chunks(conf):
                rec["expanded"] += len(piece)
                out = z.compress(piece)
                if out:
                    self._send(sock, out, rec)
            self._send(sock, z.flush(), rec)
            return
        raise ValueError("unknown mode %s" % mode)
