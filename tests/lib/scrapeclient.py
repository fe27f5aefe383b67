"""A scraper for the tests and benchmarks of the daemon's HTTP front: one
GET /metrics on a fresh connection from a chosen loopback address, and the
samples of the answer."""
import re
import socket
import time

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def scrape(port, src="127.0.0.1", timeout=10, path="/metrics"):
    """(status, body, seconds) of GET path, or None when the connection
    failed."""
    start = time.monotonic()
    try:
        with socket.socket() as s:
            s.settimeout(timeout)
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                      % (path.encode(), port))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d+)", head)
    return (int(m.group(1)) if m else 0), body.decode(), time.monotonic() - start


def sample(body, name, **labels):
    """The value of the series name{labels} in an exposition, or None."""
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name and \
                dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")) == labels:
            return float(m.group(3))
    return None


def metric(port, name, **labels):
    r = scrape(port)
    return sample(r[1], name, **labels) if r and r[0] == 200 else None
