'use strict';
// ws_upstream.js MODE [ARG...]: a WebSocket upstream built on npm `ws`
// (faster and ruder than pollbridge-echo) for the end-to-end tests. Listens
// on 127.0.0.1 on a free port and prints "listening on PORT" once ready.
//
// Modes:
//   echo                 every message back, text as text, binary as binary
//   burst-close          on connect: send m1, m2, m3, then close(1000, "bye")
//                        at once, in the same tick
//   push N               on connect: send N text messages "1".."N" at once
//   record FILE          append one JSON line per connection to FILE with
//                        the handshake ({"url","headers","protocol"}), then
//                        one line {"msg":...} per message received; echoes
//                        nothing
//   close-after-echo C R echo the first message, then close with code C and
//                        reason R
//   slow-echo MS         echo, but read nothing for the first MS milliseconds
//                        of each connection (its socket is paused: TCP
//                        backpressure on the bridge)
//
// Options, anywhere after the mode:
//   --deflate            accept permessage-deflate (every message compressed,
//                        however small: threshold 0)
//   --wire FILE          append JSON lines to FILE: {"offer","accepted"} (the
//                        Sec-WebSocket-Extensions asked and answered) per
//                        connection, {"len","read","written"} per message
//                        received (socket bytes so far), and {"closed","read",
//                        "written"} at the end
const WebSocket = require('ws');
const fs = require('fs');

const [mode, ...rest] = process.argv.slice(2);
const args = [];
let deflate = false;
let wire = null;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--deflate') deflate = true;
  else if (rest[i] === '--wire') wire = rest[++i];
  else args.push(rest[i]);
}
const wireLine = (o) => wire && fs.appendFileSync(wire, JSON.stringify(o) + '\n');
const modes = new Set(['echo', 'burst-close', 'push', 'record', 'close-after-echo', 'slow-echo']);
if (!modes.has(mode)) {
  console.error(`usage: ws_upstream.js ${[...modes].join('|')} [ARG...]`);
  process.exit(2);
}

const wss = new WebSocket.Server({
  host: '127.0.0.1',
  port: 0,
  handleProtocols: (protocols) => (protocols.size ? protocols.values().next().value : false),
  perMessageDeflate: deflate ? { threshold: 0 } : false,
});

wss.on('headers', (headers, req) => {
  const ext = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
  wireLine({ offer: req.headers['sec-websocket-extensions'] || null,
    accepted: ext ? ext.replace(/^[^:]*:\s*/, '') : null });
});

wss.on('connection', (ws, req) => {
  if (wire) {
    const sock = ws._socket;
    ws.on('message', (data) => wireLine({ len: data.length, read: sock.bytesRead,
      written: sock.bytesWritten }));
    ws.on('close', () => wireLine({ closed: true, read: sock.bytesRead,
      written: sock.bytesWritten }));
  }
  switch (mode) {
    case 'echo':
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    case 'burst-close':
      ws.send('m1');
      ws.send('m2');
      ws.send('m3');
      ws.close(1000, 'bye');
      break;
    case 'push': {
      const n = Number(args[0] || 1);
      for (let i = 1; i <= n; i++) ws.send(String(i));
      break;
    }
    case 'record': {
      const line = (o) => fs.appendFileSync(args[0], JSON.stringify(o) + '\n');
      line({ url: req.url, headers: req.headers, protocol: ws.protocol });
      ws.on('message', (data, isBinary) =>
        line({ msg: isBinary ? data.toString('base64') : data.toString() }));
      break;
    }
    case 'slow-echo':
      ws._socket.pause();
      setTimeout(() => ws._socket.resume(), Number(args[0] || 1000));
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    case 'close-after-echo':
      ws.once('message', (data, isBinary) => {
        ws.send(data, { binary: isBinary });
        ws.close(Number(args[0] || 1000), args[1] || '');
      });
      break;
  }
  ws.on('error', () => {});
});

wss.on('listening', () => {
  console.log(`listening on ${wss.address().port}`);
});
