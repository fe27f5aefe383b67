#!/usr/bin/env python3
"""A loopback HTTP server that plays the academic system's feed in tests.

As a class:
    srv = FeedServer(body=b'{"courses": [...]}', etag="auto")
    srv.start(); ... srv.url ...; srv.set(status=500); srv.stop()
    srv.requests  # one dict per request: method, path, headers, sent, aborted

As a program (for the C tests and the black-box scripts):
    feedserver.py --port-file F --file FEED.json [--log REQS.jsonl] ...
serves FEED.json as it is at each request (it may change in between), with
ETag = a hash of the content, and answers 304 to a matching If-None-Match.
--port-file - prints the port on stdout.  SIGTERM stops it after the
requests in progress have finished and been logged.
"""
import argparse
import gzip as gziplib
import hashlib
import http.server
import json
import os
import signal
import socket
import sys
import threading

CHUNK = 64 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the test output clean
        pass

    def setup(self):
        super().setup()
        self.server.feed._opened(self.connection)

    def finish(self):
        self.server.feed._closed(self.connection)
        super().finish()

    def do_GET(self):
        self.server.feed._answer(self)

    do_HEAD = do_GET


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in progress
    block_on_close = True


class FeedServer:
    def __init__(self, body=b"", status=200, etag=None, last_modified=None,
                 gzip=False, delay=0, content_type="application/json",
                 redirect_loop=False, file=None, echo_header=None,
                 log=None, port=0, redirects=None, tls=None, raw_headers=None):
        self.requests = []
        self._conns = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._log = log
        self._port = port
        self._tls = tls  # (certfile, keyfile): serve https
        self._httpd = None
        self._thread = None
        self.port = None
        self.url = None
        self.set(body=body, status=status, etag=etag,
                 last_modified=last_modified, gzip=gzip, delay=delay,
                 content_type=content_type, redirect_loop=redirect_loop,
                 file=file, echo_header=echo_header,
                 redirects=redirects or {}, raw_headers=raw_headers)

    def set(self, **kw):
        """Change how the next requests are answered.  etag="auto" means a
        hash of the body; file=PATH serves that file as read at each
        request; redirects={PATH: LOCATION} answers 302 to those paths;
        raw_headers=[b"Name: value", ...] are sent as they are (any byte)."""
        known = {"body", "status", "etag", "last_modified", "gzip", "delay",
                 "content_type", "redirect_loop", "file", "echo_header",
                 "redirects", "raw_headers"}
        for k, v in kw.items():
            if k not in known:
                raise TypeError("unknown setting %s" % k)
        with self._lock:
            for k, v in kw.items():
                setattr(self, "_" + k, v)

    def start(self):
        self._httpd = _Server(("127.0.0.1", self._port), _Handler)
        self._httpd.feed = self
        self.port = self._httpd.server_address[1]
        self.url = "http://127.0.0.1:%d/feed.json" % self.port
        if self._tls is not None:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self._tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            self.url = "https://127.0.0.1:%d/feed.json" % self.port
        self.origin = self.url[:self.url.index("/feed.json")]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is None:
            return
        self._stopping.set()  # cut any delay short
        self._httpd.shutdown()
        # Wake handlers idling on a kept-alive connection; answers being
        # written are left to finish.
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
        self._httpd.server_close()
        self._thread.join()
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _opened(self, conn):
        with self._lock:
            self._conns.add(conn)

    def _closed(self, conn):
        with self._lock:
            self._conns.discard(conn)

    def _record(self, rec):
        with self._lock:
            self.requests.append(rec)
            if self._log is not None:
                with open(self._log, "a") as f:
                    f.write(json.dumps(rec) + "\n")

    def _answer(self, h):
        with self._lock:
            conf = {k: getattr(self, "_" + k) for k in (
                "body", "status", "etag", "last_modified", "gzip", "delay",
                "content_type", "redirect_loop", "file", "echo_header",
                "redirects", "raw_headers")}
        rec = {"method": h.command, "path": h.path,
               "headers": {k: v for k, v in h.headers.items()},
               "status": None, "sent": 0, "aborted": False}
        try:
            self._respond(h, conf, rec)
        except (BrokenPipeError, ConnectionResetError):
            rec["aborted"] = True
            h.close_connection = True
        self._record(rec)

    def _respond(self, h, conf, rec):
        if conf["delay"] and self._stopping.wait(conf["delay"]):
            rec["aborted"] = True
            h.close_connection = True
            return
        if h.path in conf["redirects"]:
            rec["status"] = 302
            h.send_response(302)
            h.send_header("Location", conf["redirects"][h.path])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if conf["redirect_loop"]:
            rec["status"] = 302
            h.send_response(302)
            h.send_header("Location", h.path)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        body = conf["body"]
        if conf["file"] is not None:
            with open(conf["file"], "rb") as f:
                body = f.read()
        if conf["echo_header"] is not None:
            body = b"%s: %s\n" % (conf["echo_header"].encode(),
                                  h.headers.get(conf["echo_header"], "").encode()) + body
        etag = conf["etag"]
        if etag == "auto" or (etag is None and conf["file"] is not None):
            etag = '"%s"' % hashlib.sha256(body).hexdigest()[:32]
        status = conf["status"]
        lm = conf["last_modified"]
        inm = h.headers.get("If-None-Match")
        ims = h.headers.get("If-Modified-Since")
        if status == 200 and ((etag is not None and inm == etag) or
                              (inm is None and lm is not None and ims == lm)):
            rec["status"] = 304
            h.send_response(304)
            if etag is not None:
                h.send_header("ETag", etag)
            if lm is not None:
                h.send_header("Last-Modified", lm)
            h.end_headers()
            return
        encoding = None
        if conf["gzip"] and "gzip" in h.headers.get("Accept-Encoding", ""):
            body = gziplib.compress(body)
            encoding = "gzip"
        rec["status"] = status
        h.send_response(status)
        h.send_header("Content-Type", conf["content_type"])
        h.send_header("Content-Length", str(len(body)))
        if encoding:
            h.send_header("Content-Encoding", encoding)
        if etag is not None:
            h.send_header("ETag", etag)
        if lm is not None:
            h.send_header("Last-Modified", lm)
        for line in conf["raw_headers"] or []:
            h._headers_buffer.append(line + b"\r\n")  # as they are
        h.end_headers()
        if h.command == "HEAD":
            return
        for i in range(0, len(body), CHUNK):
            h.wfile.write(body[i:i + CHUNK])
            rec["sent"] += len(body[i:i + CHUNK])
        h.wfile.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True,
                    help="write the port here ('-': stdout)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--file", help="serve this file, re-read per request")
    ap.add_argument("--body", default="", help="serve this text")
    ap.add_argument("--size", type=int,
                    help="serve a JSON array padded to this many bytes")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--etag", help="ETag to send ('auto': content hash)")
    ap.add_argument("--last-modified")
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--delay", type=float, default=0)
    ap.add_argument("--content-type", default="application/json")
    ap.add_argument("--redirect-loop", action="store_true")
    ap.add_argument("--echo-header", metavar="NAME",
                    help="start the body with this request header")
    ap.add_argument("--log", help="append each request as a JSON line")
    a = ap.parse_args()

    body = os.fsencode(a.body)
    if a.size is not None:
        body = b"[" + b" " * max(0, a.size - 2) + b"]"
    srv = FeedServer(body=body, status=a.status, etag=a.etag,
                     last_modified=a.last_modified, gzip=a.gzip,
                     delay=a.delay, content_type=a.content_type,
                     redirect_loop=a.redirect_loop, file=a.file,
                     echo_header=a.echo_header, log=a.log, port=a.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    srv.start()
    if a.port_file == "-":
        print(srv.port, flush=True)
    else:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.port)
        os.rename(tmp, a.port_file)
    while not stop.wait(3600):
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
