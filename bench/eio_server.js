// bench/eio_server.js: the peer benchmark's Engine.IO server (bench/peers.sh).
//
// What this file owns: the peer. npm engine.io (the version installed in
// tests/upstreams/node/node_modules), polling transport only, messages
// generated inside the server process: the same 64-byte text as
// bench/upstream.c (20-digit CLOCK_MONOTONIC nanoseconds from
// process.hrtime, which is libuv's CLOCK_MONOTONIC, a sequence number, 'x'
// padding). A socket starts getting messages when it sends "go".
//
//   flood (RATE 0): every active socket is kept at 64 messages queued: 64
//     at "go" and 64 more each time Engine.IO flushes its buffer to a poll
//     ("drain"), so each poll carries at most 64, like pollbridge's max=64.
//   rate: RATE messages per second in all, round-robin over active sockets,
//     from a 1 ms interval.
//
// Usage: node eio_server.js PORT RATE   prints "listening PORT" once ready.
// pingInterval/pingTimeout are raised to 10 minutes so that no heartbeat
// answers a parked poll during a run (pollbridge's --wait-max plays that
// part and is 30 s).
'use strict';
const path = require('path');
const http = require('http');
const engine = require(path.join(__dirname, '..', 'tests', 'upstreams', 'node',
	'node_modules', 'engine.io'));

const port = parseInt(process.argv[2] || '0', 10);
const rate = parseFloat(process.argv[3] || '0');
const PAD = 'x'.repeat(64);
const BATCH = 64;

function message(sock) {
	sock.pbSeq++;
	const s = process.hrtime.bigint().toString().padStart(20, '0') + ' ' +
		String(sock.pbSeq).padStart(10, '0') + ' ';
	return (s + PAD).slice(0, 64);
}

function topUp(sock) {
	for (let i = 0; i < BATCH; i++)
		sock.send(message(sock));
}

const active = [];
const httpServer = http.createServer();
const server = engine.attach(httpServer, {
	transports: ['polling'], allowUpgrades: false,
	pingInterval: 600000, pingTimeout: 600000,
});
server.on('connection', (sock) => {
	sock.pbSeq = 0;
	sock.pbActive = false;
	sock.on('message', (data) => {
		if (data !== 'go' || sock.pbActive)
			return;
		sock.pbActive = true;
		if (rate > 0) {
			active.push(sock);
		} else {
			sock.on('drain', () => topUp(sock));
			topUp(sock);
		}
	});
	sock.on('close', () => {
		const i = active.indexOf(sock);
		if (i >= 0)
			active.splice(i, 1);
	});
});

if (rate > 0) {
	const start = process.hrtime.bigint();
	let sent = 0, rr = 0;
	setInterval(() => {
		const due = Math.floor(Number(process.hrtime.bigint() - start) * rate / 1e9);
		if (active.length === 0) {
			sent = due;
			return;
		}
		while (sent < due) {
			const sock = active[rr++ % active.length];
			sock.send(message(sock));
			sent++;
		}
	}, 1);
}

httpServer.listen(port, '127.0.0.1', () => {
	process.stdout.write('listening ' + httpServer.address().port + '\n');
});
process.on('SIGTERM', () => process.exit(0));
