// eio_upstream.js: real Engine.IO / Socket.IO servers, WebSocket-only, for the
// protocol-level tests of pollbridge's Engine.IO door (tests/e2e/test_engineio.c).
// Prints "listening on PORT" once ready.
//
// usage: node eio_upstream.js MODE [--ping MS] [--max-payload N] [--record FILE]
//   engine  engine.io 6.6 (allowEIO3: v3 and v4 clients) at /engine.io/.
//           Per text message: "push N" sends m1..mN; "bye" closes the socket
//           from the server; "headers" answers the handshake's Cookie,
//           X-Forwarded-For and Origin as JSON; "binary N" sends N bytes
//           0..N-1 as a binary message; anything else is echoed. A binary
//           message is echoed as binary. With --record FILE every message
//           received is appended to FILE as a JSON line {"t":"text"|"binary",
//           "d":text|base64}, and {"closed":reason} when a socket closes.
//   sio2    socket.io 2.5 (Engine.IO v3) at /socket.io/: event "echo" is
//           answered by "echo" with the same arguments and acked with "ok";
//           "bye" disconnects the client from the server.
//   sio4    socket.io 4.8 (Engine.IO v4 only: a v3 client is refused) at
//           /socket.io/, same events.
const path = require('path');
const fs = require('fs');
const http = require('http');

const NM = path.join(__dirname, '..', 'node', 'node_modules');
const [mode, ...rest] = process.argv.slice(2);
let ping = 25000;
let maxPayload = 1000000;
let record = null;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--ping') ping = Number(rest[++i]);
  else if (rest[i] === '--max-payload') maxPayload = Number(rest[++i]);
  else if (rest[i] === '--record') record = rest[++i];
}
const rec = (o) => record && fs.appendFileSync(record, JSON.stringify(o) + '\n');
const srv = http.createServer((req, res) => { res.writeHead(404); res.end(); });

function sioEvents(socket) {
  socket.on('echo', (...args) => {
    const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
    socket.emit('echo', ...args);
    if (ack) ack('ok');
  });
  socket.on('bye', () => socket.disconnect(true));
}

if (mode === 'engine') {
  const { attach } = require(path.join(NM, 'engine.io'));
  const eio = attach(srv, { transports: ['websocket'], allowEIO3: true, pingInterval: ping,
    pingTimeout: 20000, maxHttpBufferSize: maxPayload });
  eio.on('connection', (socket) => {
    const hs = socket.request.headers;
    socket.on('message', (data) => {
      if (typeof data !== 'string') {
        rec({ t: 'binary', d: Buffer.from(data).toString('base64') });
        socket.send(data);
        return;
      }
      rec({ t: 'text', d: data });
      let m;
      if ((m = /^push (\d+)$/.exec(data))) {
        for (let i = 1; i <= Number(m[1]); i++) socket.send('m' + i);
      } else if ((m = /^binary (\d+)$/.exec(data))) {
        const b = Buffer.alloc(Number(m[1]));
        for (let i = 0; i < b.length; i++) b[i] = i & 255;
        socket.send(b);
      } else if (data === 'bye') {
        socket.close();
      } else if (data === 'headers') {
        socket.send(JSON.stringify({ cookie: hs.cookie || null,
          xff: hs['x-forwarded-for'] || null, origin: hs.origin || null,
          eio: socket.protocol }));
      } else {
        socket.send(data);
      }
    });
    socket.on('close', (reason) => rec({ closed: reason }));
  });
} else if (mode === 'sio2') {
  const io = require(path.join(NM, 'socket.io-v2'))(srv, { transports: ['websocket'],
    pingInterval: ping });
  io.on('connection', sioEvents);
} else if (mode === 'sio4') {
  const { Server } = require(path.join(NM, 'socket.io'));
  const io = new Server(srv, { transports: ['websocket'], pingInterval: ping,
    maxHttpBufferSize: maxPayload });
  io.on('connection', sioEvents);
} else {
  console.error('usage: eio_upstream.js engine|sio2|sio4 [--ping MS] [--max-payload N] [--record FILE]');
  process.exit(2);
}

srv.listen(0, '127.0.0.1', () => console.log(`listening on ${srv.address().port}`));
process.on('SIGTERM', () => process.exit(0));
