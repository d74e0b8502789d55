"""A throwaway SMTP server for admit's integration tests (tests/it/smtp.rs).

Stores every accepted message as <maildir>/<n>.eml (the DATA as received) and
<n>.json beside it: the envelope recipients and the message as Python's email
package reads it (headers, decoded text and HTML parts), so the tests need no
MIME parser. With --reply 451 or --reply 550 it refuses every recipient with
that code instead; with --stall ADDRESS it never answers RCPT TO for that
address (a server that accepts and then hangs), and serves the others. Exits on
SIGTERM/SIGINT, or when the process that started it is gone.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller

REPLIES = {
    "451": "451 4.3.0 <{address}>: Mailbox temporarily unavailable, try again later",
    "550": "550 5.1.1 <{address}>: Mailbox unavailable",
}


class Store:
    def __init__(self, maildir, reply, stall):
        self.maildir = maildir
        self.reply = reply
        self.stall = stall
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.stall and address.lower() == self.stall:
            await asyncio.sleep(3600)
        if self.reply:
            # Real servers often quote the address; admit must keep it out of its log.
            return REPLIES[self.reply].format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self.lock:
            self.count += 1
            name = f"{self.count:04d}"
        # Written under a temporary name first, the .json last: a reader that
        # sees the .json sees the whole message.
        for suffix, content in (
            (".eml", data),
            (".json", json.dumps(parse(data, envelope.rcpt_tos)).encode("utf-8")),
        ):
            temp = os.path.join(self.maildir, f".{name}{suffix}.tmp")
            with open(temp, "wb") as f:
                f.write(content)
            os.replace(temp, os.path.join(self.maildir, name + suffix))
        return "250 Message accepted for delivery"


def parse(data, rcpt_tos):
    message = email.message_from_bytes(data, policy=email.policy.default)

    def part(subtype):
        body = message.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None else None

    return {
        "rcpt_tos": rcpt_tos,
        "headers": {key.lower(): str(value) for key, value in message.items()},
        "content_type": message.get_content_type(),
        "text": part("plain"),
        "html": part("html"),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--reply", choices=sorted(REPLIES))
    parser.add_argument("--stall")
    args = parser.parse_args()
    os.makedirs(args.maildir, exist_ok=True)

    parent = os.getppid()
    controller = Controller(
        Store(args.maildir, args.reply, args.stall), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print(f"listening on 127.0.0.1:{args.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
