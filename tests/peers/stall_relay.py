"""A TCP relay in front of a real HTTP server that breaks the way networks and proxies break,
for the canary tests: it passes the request through untouched, and of the answer passes

  stall     the status line and headers, then nothing: the connection stays open and silent
            (a server that answers 200 and never sends the body)
  truncate  the headers and the first chunk of a chunked body, then ends the body there with
            the last-chunk marker (a proxy that gives up on its upstream mid-stream and closes
            the answer cleanly)
  reset     the headers and the first chunk, then closes the connection mid-body

Requests other than POST (the agent's health endpoint behind the same relay) pass through
untouched both ways. It knows nothing of the protocol above HTTP/1.1 framing; standard library
only; one request per connection.

  stall_relay.py --upstream PORT --mode stall|truncate|reset
prints "ready PORT" once listening and serves until its stdin closes (as tests/peers/_serve.py)."""
import argparse
import asyncio
import sys
import threading

HEADER_END = b"\r\n\r\n"


async def pump(reader, writer):
    """Copies until EOF; the request side, passed through untouched."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass


async def read_until(reader, buffer, marker, start=0):
    """Reads into `buffer` until it holds `marker` at or after `start`; returns the index after
    it, or None at EOF."""
    while marker not in buffer[start:]:
        data = await reader.read(65536)
        if not data:
            return None
        buffer.extend(data)
    return buffer.index(marker, start) + len(marker)


async def first_chunk(reader, buffer, start):
    """The end index of the first chunk of a chunked body that begins at `start`, or None."""
    line_end = await read_until(reader, buffer, b"\r\n", start)
    if line_end is None:
        return None
    size = int(bytes(buffer[start:line_end - 2]).split(b";")[0], 16)
    end = line_end + size + 2
    while len(buffer) < end:
        data = await reader.read(65536)
        if not data:
            return None
        buffer.extend(data)
    return end


async def relay(client_reader, client_writer, upstream_port, mode):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    start = bytearray()
    while len(start) < 5:
        data = await client_reader.read(65536)
        if not data:
            break
        start.extend(data)
    up_writer.write(bytes(start))
    request = asyncio.create_task(pump(client_reader, up_writer))
    buffer = bytearray()
    try:
        if not start.startswith(b"POST "):
            await pump(up_reader, client_writer)
            return
        head_end = await read_until(up_reader, buffer, HEADER_END)
        if head_end is None:
            return
        client_writer.write(bytes(buffer[:head_end]))
        await client_writer.drain()
        if mode == "stall":
            # Silence until the client gives up and closes its side.
            await request
            return
        end = await first_chunk(up_reader, buffer, head_end)
        if end is None:
            return
        client_writer.write(bytes(buffer[head_end:end]))
        if mode == "truncate":
            client_writer.write(b"0\r\n\r\n")
        await client_writer.drain()
    except ConnectionError:
        pass
    finally:
        request.cancel()
        up_writer.close()
        client_writer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--mode", choices=["stall", "truncate", "reset"], required=True)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port = []

    async def start():
        server = await asyncio.start_server(
            lambda r, w: relay(r, w, args.upstream, args.mode), "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        started.set()
        await server.serve_forever()

    threading.Thread(target=lambda: loop.run_until_complete(start()), daemon=True).start()
    started.wait()
    print(f"ready {port[0]}", flush=True)
    for _ in sys.stdin:
        pass


if __name__ == "__main__":
    main()
