"""The datagram socket systemd's notify protocol talks to (sd_notify(3)),
for tests of the daemon's READY=, STATUS= and WATCHDOG= messages."""
import socket

from harness import wait_for


class Notify:
    """The datagram socket systemd would listen on."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.msgs = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.msgs
            self.msgs.append(data.decode())

    def has(self, prefix, after=0):
        return [m for m in self.poll()[after:] if m.startswith(prefix)]

    def wait(self, prefix, after=0, timeout=30):
        return wait_for(lambda: self.has(prefix, after), timeout, "notify " + prefix)
