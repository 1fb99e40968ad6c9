"""An SMTP server on 127.0.0.1, in a thread, keeping what it receives (the SDK's SMTP mode)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Received:
    """The envelopes and messages an SMTP session handed over."""

    port: int = 0
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)


async def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, got: Received
) -> None:
    writer.write(b"220 localhost ESMTP test receiver\r\n")
    sender, recipients = "", []
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-localhost\r\n250 8BITMIME\r\n")
        elif verb == b"MAIL":
            sender, recipients = line.decode().split(":", 1)[1].strip(" <>\r\n"), []
            writer.write(b"250 OK\r\n")
        elif verb == b"RCPT":
            recipients.append(line.decode().split(":", 1)[1].strip(" <>\r\n"))
            writer.write(b"250 OK\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go on\r\n")
            await writer.drain()
            data = bytearray()
            while (part := await reader.readline()) not in (b".\r\n", b""):
                data += part[1:] if part.startswith(b"..") else part
            got.messages.append((sender, recipients, bytes(data)))
            writer.write(b"250 OK\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 Bye\r\n")
            break
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()
    await writer.drain()
    writer.close()


@contextmanager
def smtp_receiver() -> Iterator[Received]:
    """A receiver on a free loopback port, stopped on exit."""
    got = Received()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _session(r, w, got), "127.0.0.1", 0)
        got.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await server.serve_forever()

    task = loop.create_task(main())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield got
    finally:
        loop.call_soon_threadsafe(task.cancel)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
