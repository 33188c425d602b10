#!/usr/bin/env python3
"""Memory per concurrent stream through llmrr.

One asyncio process plays both sides: a slow OpenAI-compatible upstream that streams one chunk
a second until told to finish, and N clients that each open a streamed chat through the gateway
and read it. The gateway's VmRSS is read idle (after a warm-up) and with all N streams open;
the difference per 1,000 streams is what `docs/DEPLOY.md` sizes memory with.

    streams.py --gateway 127.0.0.1:18095 --key KEY --pid PID --upstream-port 18096 --streams 1000
"""
import argparse
import asyncio
import json
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def chunk(text, finish=None, usage=None):
    c = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 0, "model": "slow",
         "choices": [] if usage else [{"index": 0, "delta": {"content": text} if text else {},
                                       "finish_reason": finish}]}
    if usage:
        c["usage"] = usage
    return f"data: {json.dumps(c)}\n\n".encode()


class Upstream:
    def __init__(self):
        self.release = asyncio.Event()
        self.open = 0

    async def handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":")[1])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"connection: close\r\n\r\n")
            writer.write(chunk("a"))
            await writer.drain()
            self.open += 1
            while not self.release.is_set():
                try:
                    await asyncio.wait_for(self.release.wait(), 1.0)
                except asyncio.TimeoutError:
                    writer.write(chunk(" b"))
                    await writer.drain()
            writer.write(chunk(None, finish="stop"))
            writer.write(chunk(None, usage={"prompt_tokens": 10, "completion_tokens": 5,
                                            "total_tokens": 15}))
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def client(host, port, key, opened, done):
    body = json.dumps({"model": "slow", "stream": True,
                       "messages": [{"role": "user", "content": "hold this stream open"}]}).encode()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: llmrr\r\n"
                 b"authorization: Bearer " + key.encode() + b"\r\ncontent-type: application/json\r\n"
                 b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    first = True
    while True:
        data = await reader.read(65536)
        if not data:
            break
        if first and b"data:" in data:
            first = False
            opened.append(time.monotonic())
        if b"[DONE]" in data:
            break
    done.append(time.monotonic())
    writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, default=18096)
    ap.add_argument("--streams", type=int, default=1000)
    args = ap.parse_args()
    host, port = args.gateway.split(":")
    up = Upstream()
    server = await asyncio.start_server(up.handle, "127.0.0.1", args.upstream_port, backlog=4096)
    # Warm-up: a few streams opened and finished, so the idle figure has the allocator's arenas.
    warm_opened, warm_done = [], []
    up.release.set()
    await asyncio.gather(*(client(host, port, args.key, warm_opened, warm_done) for _ in range(50)))
    up.release = asyncio.Event()
    await asyncio.sleep(1.0)
    idle = rss_kib(args.pid)
    opened, done = [], []
    started = time.monotonic()
    tasks = [asyncio.create_task(client(host, port, args.key, opened, done))
             for _ in range(args.streams)]
    while len(opened) < args.streams and time.monotonic() - started < 120:
        await asyncio.sleep(0.05)
    all_open = time.monotonic() - started
    await asyncio.sleep(3.0)  # a few chunks through every stream
    with_streams = rss_kib(args.pid)
    up.release.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)
    after = rss_kib(args.pid)
    server.close()
    n = len(opened)
    print(json.dumps({
        "streams": args.streams, "opened": n, "completed": len(done),
        "seconds_to_open_all": round(all_open, 2),
        "rss_idle_mib": round(idle / 1024, 1), "rss_open_mib": round(with_streams / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "mib_per_1k_streams": round((with_streams - idle) / 1024 / max(n, 1) * 1000, 1),
        "kib_per_stream": round((with_streams - idle) / max(n, 1), 1),
    }))


asyncio.run(main())
