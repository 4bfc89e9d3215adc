"""A real SMTP server on loopback (aiosmtpd) for the mail tests and scripts/bench_mail.py.

``SmtpServer`` keeps every message it accepted (envelope and bytes as received) and can be
told to answer RCPT with a refusal: once for the next recipients (``refuse_next``), or
always for an address (``refuse_always``). ``start``/``stop`` may be called repeatedly on
the same port, to play a server that is down and comes back.
"""

import email
import socket
import threading
from dataclasses import dataclass
from email import policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    content: bytes  # the message as it came over the wire

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=policy.default)


class _Handler:
    def __init__(self, server):
        self.server = server

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        with self.server.lock:
            reply = (self.server.next_replies.pop(0) if self.server.next_replies
                     else self.server.address_replies.get(address))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        with self.server.lock:
            self.server.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int | None = None):
        self.host, self.port = "127.0.0.1", port or free_port()
        self.received: list[Received] = []
        self.next_replies: list[str] = []
        self.address_replies: dict[str, str] = {}
        self.lock = threading.Lock()
        self.controller = None

    def start(self) -> "SmtpServer":
        self.controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                     enable_SMTPUTF8=True)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def refuse_next(self, *replies: str) -> None:
        """Answer the next RCPT commands with these replies ("451 4.3.0 try later")."""
        with self.lock:
            self.next_replies.extend(replies)

    def refuse_always(self, address: str, reply: str) -> None:
        with self.lock:
            self.address_replies[address] = reply


if __name__ == "__main__":
    # A server in a process of its own (scripts/bench_mail.py): prints "ready", then, when
    # its standard input closes, how many messages it accepted.
    import sys

    server = SmtpServer(int(sys.argv[1])).start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()
    print(len(server.received), flush=True)
