"""One connection to firewalld: who is at the other end, and framed messages in batches.

Frames are read in chunks and decoded together, so a shim with eight calls in flight is answered
with one read, one database commit and one write instead of eight of each.
"""

from __future__ import annotations

import socket
import struct
import sys

import anyio
import anyio.abc
from anyio.abc import SocketStream

from daemon import protocol as p

#: Read size: one read usually holds every frame a peer has sent since the last one. Kept under
#: malloc's mmap threshold: a 1 MiB read buffer costs an mmap, an mremap and a munmap per read.
_CHUNK = 1 << 16


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    # macOS and the BSDs: LOCAL_PEERCRED at level SOL_LOCAL (0) gives a struct xucred.
    data = sock.getsockopt(0, 0x001, 76)
    _version, uid = struct.unpack_from("Ii", data)
    return int(uid)


class Peer:
    """A framed connection: batches of messages in, whole frames out, one writer at a time."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self._raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        self._decoder = p.FrameDecoder()
        self._lock = anyio.Lock()

    async def receive_batch(self) -> list[p.Message]:
        """Every message that has arrived (at least one).

        Raises:
            anyio.EndOfStream: the peer closed the connection.
            daemon.protocol.ProtocolError: the peer broke the framing or sent an unknown message.
        """
        while True:
            messages = self._decoder.feed(await self.stream.receive(_CHUNK))
            if messages:
                return messages

    async def send(self, *messages: p.Message) -> None:
        """Send messages as one write, never interleaved with another task's."""
        data = b"".join(p.encode(m) for m in messages)
        if not self._lock.locked():
            # Nobody is mid-frame: the non-blocking socket almost always takes it all at once,
            # without the stream's trips round the event loop (its checkpoint and the lock's).
            try:
                sent = self._raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if sent == len(data):
                return
            data = data[sent:]
        async with self._lock:
            await self.stream.send(data)
