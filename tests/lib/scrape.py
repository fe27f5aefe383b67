"""Scraping the daemon's /metrics endpoint from a test: a free port, one
request, the samples of the Prometheus text format."""
import http.client
import re
import socket
import time

from harness import SLOWDOWN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, path="/metrics", method="GET", body=None, timeout=10):
    """One request on a fresh connection: (status, headers, body, seconds),
    or None when nothing listens (refused, or reset: a connection still in
    the backlog of a listener being closed)."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOWDOWN)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data.decode(), time.monotonic() - start
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    finally:
        conn.close()


def scrape(port):
    r = request(port)
    return r[2] if r is not None and r[0] == 200 else None


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """{(name, ((label, value), ...)): float} of the samples in text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError("bad sample line %r" % line)
        labels = tuple(sorted((k, re.sub(r'\\(.)', lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), v))
                              for k, v in _LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))
