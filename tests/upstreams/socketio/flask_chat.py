#!/usr/bin/python3
"""flask_chat.py: a Flask-SocketIO chat server (Engine.IO v4 only, so it
refuses EIO=3), async mode eventlet, WebSocket-only unless --polling: the
Python upstream of pollbridge's Engine.IO door. It serves the same events
as chat_common.js (see there) so that client.js runs the same scenarios.
Prints "port N" when it listens. Options: --port N, --polling,
--max-http-buffer N (python-engineio's max_http_buffer_size).
"""
import argparse
import sys

import eventlet
eventlet.monkey_patch()

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO, emit, join_room, leave_room, disconnect  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--port', type=int, default=0)
ap.add_argument('--polling', action='store_true')
ap.add_argument('--max-http-buffer', type=int, default=0)
opts = ap.parse_args()

if opts.polling:
    # python-engineio refuses a polling payload of more than 16 packets
    # (max_decode_packets), which socket.io-client exceeds when it sends
    # fast: lift it for the direct (no bridge) runs. Through the bridge every
    # packet is one WebSocket frame, so the WebSocket-only server needs no
    # change.
    import engineio.payload
    engineio.payload.Payload.max_decode_packets = 100000

app = Flask(__name__)
kw = {}
if opts.max_http_buffer:
    kw['max_http_buffer_size'] = opts.max_http_buffer
socketio = SocketIO(app, async_mode='eventlet',
                    transports=['polling', 'websocket'] if opts.polling else ['websocket'],
                    allow_upgrades=not opts.polling,
                    ping_interval=5, ping_timeout=5, **kw)
ups = {}


def csum(data):
    s = 0
    for b in data:
        s = (s * 31 + b) & 0xffffffff
    return s


def pattern(n):
    return bytes(((i * 7 + 3) & 255) for i in range(n))


@socketio.on('connect')
def on_connect():
    ups[request.sid] = []


@socketio.on('disconnect')
def on_disconnect():
    ups.pop(request.sid, None)


@socketio.on('join')
def on_join(room):
    join_room(room)
    return {'room': room}


@socketio.on('leave')
def on_leave(room):
    leave_room(room)
    return {'room': room}


@socketio.on('say')
def on_say(m):
    emit('said', {'room': m['room'], 'text': m['text'], 'from': request.sid}, to=m['room'])


@socketio.on('shout')
def on_shout(text):
    emit('shouted', {'text': text, 'from': request.sid}, broadcast=True)


@socketio.on('echo')
def on_echo(data):
    return data


@socketio.on('bin')
def on_bin(data):
    b = bytes(data) if data is not None else b''
    emit('bin', b)
    return {'len': len(b), 'sum': csum(b)}


@socketio.on('pattern')
def on_pattern(n):
    emit('pattern', pattern(int(n)))
    return n


@socketio.on('kick')
def on_kick():
    disconnect()


@socketio.on('count')
def on_count(n):
    for i in range(int(n)):
        emit('n', i)


@socketio.on('up')
def on_up(i):
    ups.setdefault(request.sid, []).append(i)


@socketio.on('upcheck')
def on_upcheck():
    return ups.get(request.sid, [])


@socketio.on('big')
def on_big(s):
    emit('big', s)
    return len(s)


@socketio.on('whoami')
def on_whoami():
    return {'id': request.sid, 'cookie': request.headers.get('Cookie', '')}


if __name__ == '__main__':
    sock = eventlet.listen(('127.0.0.1', opts.port))
    print('port %d' % sock.getsockname()[1], flush=True)
    eventlet.wsgi.server(sock, app, log_output=False, log=open('/dev/null', 'w'))
    sys.exit(0)
