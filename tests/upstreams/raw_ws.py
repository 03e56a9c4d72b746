#!/usr/bin/env python3
"""raw_ws.py: a raw WebSocket upstream for the end-to-end tests.

It answers the opening handshake and then writes exactly the bytes a test
asks for, however invalid (close codes that may not be sent, bad UTF-8,
one-byte close payloads), which real WebSocket libraries refuse to send.

    raw_ws.py [--record FILE]

prints "listening on PORT" once it accepts connections on 127.0.0.1.

Per connection:
  - path /silent: the TCP connection is accepted and never answered (the
    handshake never completes) until the peer hangs up;
  - path /eager/HEX: the bytes HEX follow the 101 response in the same
    write (frames in the handshake's segment), then as below;
  - any other path: the handshake is answered, then each text message from
    the client is a command:
      "send TAG HEX"  write the bytes HEX (raw frames, unmasked) to the client
      "split TAG HEX" the same, one byte per write (a TCP segment each)
      "cut TAG"       close the TCP connection without a close frame
      anything else   echoed back as a text frame
    A close frame from the client is recorded as "TAG close CODE REASON"
    (CODE "none" for an empty payload; TAG is that of the last command, "-"
    if none), answered with an empty close frame unless one was sent
    already, and the connection is closed.
"""
import base64
import hashlib
import socket
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
record_lock = threading.Lock()
record_path = None


def record(line):
    """Append one line to the record file, if there is one."""
    if not record_path:
        return
    with record_lock:
        with open(record_path, "a", encoding="utf-8", errors="replace") as f:
            f.write(line + "\n")


def read_exact(conn, n):
    """n bytes from conn, or None if it closed first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(conn):
    """One frame from the client: (fin, opcode, payload), or None at EOF."""
    head = read_exact(conn, 2)
    if head is None:
        return None
    fin, opcode = head[0] >> 7, head[0] & 0x0F
    masked, length = head[1] >> 7, head[1] & 0x7F
    if length == 126:
        ext = read_exact(conn, 2)
        if ext is None:
            return None
        length = int.from_bytes(ext, "big")
    elif length == 127:
        ext = read_exact(conn, 8)
        if ext is None:
            return None
        length = int.from_bytes(ext, "big")
    key = read_exact(conn, 4) if masked else b"\0\0\0\0"
    if key is None:
        return None
    payload = read_exact(conn, length)
    if payload is None:
        return None
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload


def frame(opcode, payload):
    """An unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


def handshake(conn):
    """Read the client's request; answer 101. The path, or None."""
    req = b""
    while b"\r\n\r\n" not in req:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        req += chunk
        if len(req) > 65536:
            return None
    lines = req.split(b"\r\n")
    parts = lines[0].split(b" ")
    path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
    if path == "/silent":
        return path
    key = b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    eager = bytes.fromhex(path[7:]) if path.startswith("/eager/") else b""
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" +
                 eager)
    return path


def serve(conn):
    """One connection, as the module comment says."""
    tag, close_sent = "-", False
    try:
        path = handshake(conn)
        if path is None:
            return
        if path == "/silent":
            while conn.recv(4096):
                pass
            return
        while True:
            f = read_frame(conn)
            if f is None:
                record(tag + " eof")
                return
            _, opcode, payload = f
            if opcode == 0x8:
                if len(payload) >= 2:
                    code = str(int.from_bytes(payload[:2], "big"))
                else:
                    code = "none" if not payload else "short"
                reason = payload[2:].decode("utf-8", "replace")
                record(("%s close %s %s" % (tag, code, reason)).rstrip())
                if not close_sent:
                    conn.sendall(frame(0x8, b""))
                return
            if opcode == 0x9:
                conn.sendall(frame(0xA, payload))
                continue
            if opcode != 0x1:
                continue
            words = payload.decode("utf-8", "replace").split(" ")
            if words[0] == "send" and len(words) == 3:
                tag = words[1]
                data = bytes.fromhex(words[2])
                close_sent = close_sent or (len(data) > 0 and data[0] & 0x0F == 0x8)
                conn.sendall(data)
            elif words[0] == "split" and len(words) == 3:
                tag = words[1]
                data = bytes.fromhex(words[2])
                close_sent = close_sent or (len(data) > 0 and data[0] & 0x0F == 0x8)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(len(data)):
                    conn.sendall(data[i:i + 1])
                    time.sleep(0.001)
            elif words[0] == "cut" and len(words) == 2:
                tag = words[1]
                record(tag + " cut")
                conn.shutdown(socket.SHUT_RDWR)
                return
            else:
                conn.sendall(frame(0x1, payload))
    except OSError:
        pass
    finally:
        conn.close()


def main():
    global record_path
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--record":
        record_path = args[1]
    elif args:
        sys.stderr.write("usage: raw_ws.py [--record FILE]\n")
        sys.exit(2)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print("listening on %d" % srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
