"""An SMTP server on 127.0.0.1 that accepts every message and throws it away.

Run as `python smtp_sink.py [PORT]` (0, the default, picks a free port); it
prints `smtp://127.0.0.1:PORT` on its first line and serves until terminated.
It speaks just enough ESMTP for msmtp and smtplib: EHLO/HELO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT, and advertises what aiosmtpd's Sink does (no PIPELINING), so
msmtp waits for each reply as it would with most servers.
"""

from __future__ import annotations

import asyncio
import sys

EHLO_REPLY = b"250-localhost\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250 HELP\r\n"
SIMPLE_REPLIES = {
    b"HELO": b"250 localhost\r\n",
    b"MAIL": b"250 OK\r\n",
    b"RCPT": b"250 OK\r\n",
    b"RSET": b"250 OK\r\n",
    b"NOOP": b"250 OK\r\n",
}


async def read_data(reader: asyncio.StreamReader) -> int:
    """Read a DATA section up to its lone dot; returns its size in bytes."""
    size = 0
    while True:
        line = await reader.readline()
        if not line or line in (b".\r\n", b".\n"):
            return size
        size += len(line)


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 localhost ESMTP sink\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(EHLO_REPLY)
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                await read_data(reader)
                writer.write(b"250 OK\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 Bye\r\n")
                break
            else:
                writer.write(SIMPLE_REPLIES.get(verb, b"500 Command not recognized\r\n"))
            await writer.drain()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(session, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    print(f"smtp://127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
