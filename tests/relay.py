"""A TCP relay for fault tests: a one-way partition (`hold`) or the server going away (`cut`)."""

from __future__ import annotations

import asyncio
import threading

from .smtp_server import free_port


class Relay:
    """A TCP relay in a thread, in front of a server (PostgreSQL in the tests). `hold = True`
    keeps the upstream's bytes from reaching clients (buffered, not dropped) while clients'
    bytes still go through: a one-way partition. `cut()` closes every connection and refuses
    new ones until `restore()`: the server going away (a restart, a failover)."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self.hold = False
        self.down = False
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, holdable: bool) -> None:
            try:
                while data := await src.read(65536):
                    while holdable and self.hold:
                        await asyncio.sleep(0.02)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    def cut(self) -> None:
        """Close every connection through the relay, both ways, and refuse new ones."""

        async def close_all() -> None:
            self.down = True
            for w in self._writers:
                w.close()
            self._writers.clear()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(10)

    def restore(self) -> None:
        """Accept connections again."""
        self.down = False

    def __enter__(self) -> Relay:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold = False

        async def shut() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
