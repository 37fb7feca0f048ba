"""A TCP proxy on 127.0.0.1 that a test can cut and restore: a database that goes away and comes back.

``cut()`` stops listening (new connections are refused) and resets every open connection, as a
crashed database host or a network partition with resets would; ``stall()`` keeps every connection
open and accepts new ones but forwards nothing either way, as a silent partition (packets dropped)
would; ``restore()`` forwards again (connections that were stalled are reset). Runs on the test's
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0  # accepted while up
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.stalled = False

    async def start(self) -> None:
        if self.port == 0:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = int(sock.getsockname()[1])
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    @property
    def up(self) -> bool:
        return self._server is not None

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._open):
            transport = writer.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()  # RST, not a polite FIN
        self._open.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    def stall(self) -> None:
        self.stalled = True

    async def restore(self) -> None:
        if self.stalled:
            self.stalled = False
            for writer in list(self._open):
                transport = writer.transport
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
            self._open.clear()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            client_writer.transport.abort()
            return
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._open.update((client_writer, server_writer))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    if self.stalled:
                        continue  # dropped, like packets in a silent partition
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        self._open.discard(client_writer)
        self._open.discard(server_writer)
