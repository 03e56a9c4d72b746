'use strict';
// watch_upstream.js LOG [--messages]: a WebSocket upstream (npm `ws`) that
// echoes every message and appends one JSON line to LOG when a connection
// closes:
//   {"first":"<its first message>","code":N,"reason":"...","at":<ms epoch>,
//    "open_ms":<how long it was open>}
// and with --messages also one line per message received, before echoing:
//   {"conn":<connection number>,"port":<the bridge's port of it>,"msg":"<text>","at":<ms epoch>}
// so a test can tell what the upstream saw, and when, after a client went
// away (SockJS clients' close() sends nothing). Listens on 127.0.0.1 on a
// free port and prints "listening on PORT".
const path = require('path');
const fs = require('fs');
const WebSocket = require(path.join(__dirname, '..', 'node', 'node_modules', 'ws'));

const log = process.argv[2];
const messages = process.argv[3] === '--messages';
let conns = 0;
if (!log) {
	console.error('usage: watch_upstream.js LOG [--messages]');
	process.exit(2);
}
const wss = new WebSocket.Server({ host: '127.0.0.1', port: 0 });
wss.on('connection', (ws) => {
	const opened = Date.now();
	const conn = ++conns;
	const port = ws._socket.remotePort;
	let first = null;
	ws.on('message', (data, isBinary) => {
		if (first === null) first = data.toString();
		if (messages) fs.appendFileSync(log, JSON.stringify({ conn, port, msg: data.toString(), at: Date.now() }) + '\n');
		ws.send(data, { binary: isBinary });
	});
	ws.on('close', (code, reason) => {
		fs.appendFileSync(log, JSON.stringify({ first, code, reason: reason.toString(), at: Date.now(),
			open_ms: Date.now() - opened }) + '\n');
	});
	ws.on('error', () => {});
});
wss.on('listening', () => console.log('listening on ' + wss.address().port));
