"""The load generator's client: page GET, then the Bokeh websocket protocol, with ``websockets``.

It reads only the header frame of each incoming message as JSON; metadata, content and
buffer frames are counted (or searched as text) but not parsed, so the client stays cheap
beside the server it drives.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from app_server import protocol

__all__ = ["BenchSession", "find_model_id", "http_get"]

TOKEN = re.compile(rb'"token":\s*"([^"]+)"')


async def http_get(host: str, port: int, path: str) -> bytes:
    """A minimal HTTP/1.1 GET over a fresh connection; the whole response (head and body)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/html\r\n"
            "User-Agent: app_server-bench\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode())
        data = await reader.read()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path}: {data[:200]!r}")
    return data


class BenchSession:
    """One browser-like session: the app page for the token, then one websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls, base_url: str, app: str, *, deflate: bool = True, query: str = ""
    ) -> BenchSession:
        """GET the page (with ``query``, which the session's request arguments carry), open
        the websocket with the page's token and wait for ACK."""
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        page = await http_get(host, port, f"/{app}" + (f"?{query}" if query else ""))
        match = TOKEN.search(page)
        if match is None:
            raise RuntimeError(f"no session token in the page of /{app}")
        token = match.group(1).decode()
        ws = await connect(
            f"ws://{host}:{port}/{app}/ws",
            subprotocols=["bokeh", token],  # type: ignore[list-item]
            compression="deflate" if deflate else None,
            max_size=None,
            ping_interval=None,
            open_timeout=60,
            close_timeout=10,
        )
        session = cls(ws)
        header, _ = await session.receive()
        if header["msgtype"] != protocol.ACK:
            raise RuntimeError(f"expected ACK, got {header['msgtype']}")
        return session

    async def send(self, msgtype: str, content: Any = None) -> str:
        message = protocol.make_message(msgtype, content)
        for frame in protocol.encode(message):
            await self.ws.send(frame)
        return message.msgid

    async def receive(self) -> tuple[dict[str, Any], str]:
        """One whole message: its header (parsed) and its content frame (as text)."""
        header = json.loads(await self.ws.recv())
        await self.ws.recv()  # metadata
        content = await self.ws.recv()
        for _ in range(2 * int(header.get("num_buffers", 0))):
            await self.ws.recv()
        return header, str(content)

    async def request(self, msgtype: str, content: Any = None) -> tuple[dict[str, Any], str]:
        """Send a request and return its reply (messages in between are dropped)."""
        msgid = await self.send(msgtype, content)
        while True:
            header, reply = await self.receive()
            if header.get("reqid") == msgid:
                if header["msgtype"] == protocol.ERROR:
                    raise RuntimeError(f"{msgtype} failed: {reply[:300]}")
                return header, reply

    async def pull(self) -> str:
        """PULL-DOC-REQ and the reply's content (the serialized document, as JSON text)."""
        _, content = await self.request(protocol.PULL_DOC_REQ)
        return content

    async def close(self) -> None:
        await self.ws.close()


def find_model_id(doc_json: str, type_name: str) -> str:
    """The id of the first model of ``type_name`` in a serialized document."""
    stack: list[Any] = [json.loads(doc_json)]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "object" and item.get("name") == type_name and "id" in item:
                return str(item["id"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise LookupError(f"no {type_name} in the document")
