'use strict';
/*
 * chat_common.js: the chat that server4.js (socket.io 4) and server2.js
 * (socket.io 2) both serve, so that client.js runs one set of scenarios
 * against either. Events (the client side is in client.js):
 *
 *   join(room, ack)        join a room; ack({room})
 *   leave(room, ack)       leave it; ack({room})
 *   say({room,text})       everyone in room (sender included) gets
 *                          said({room,text,from})
 *   shout(text)            every connected socket gets shouted({text,from})
 *   echo(data, ack)        ack(data): acknowledgement, any size
 *   bin(buf, ack)          ack({len,sum}) of the bytes received, then
 *                          emits bin(buf) back (binary both ways)
 *   pattern(n, ack)        emits pattern(Buffer of n bytes (i*7+3)&255) and
 *                          acks n (binary server -> client)
 *   kick()                 the server disconnects the socket
 *   count(n)               emits n(0), n(1), ... n(n-1) as fast as it can
 *   up(i)                  records i; upcheck(ack) acks the list recorded
 *   big(str, ack)          ack(str.length) and emits big(str) back
 *   whoami(ack)            ack({id, cookie}): the socket's id on the server
 *                          and the Cookie header of the handshake (what the
 *                          bridge forwarded)
 */
function sum(buf) {
	let s = 0;
	for (const b of buf) s = (s * 31 + b) >>> 0;
	return s;
}

function pattern(n) {
	const b = Buffer.alloc(n);
	for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 255;
	return b;
}

/* Serve the chat on io (a socket.io Server of version 2 or 4). */
function serve(io) {
	io.on('connection', (socket) => {
		const ups = [];
		const ackf = (ack) => (typeof ack === 'function' ? ack : () => {});
		socket.on('join', (room, ack) => { socket.join(room); ackf(ack)({ room }); });
		socket.on('leave', (room, ack) => { socket.leave(room); ackf(ack)({ room }); });
		socket.on('say', (m) => io.to(m.room).emit('said', { room: m.room, text: m.text, from: socket.id }));
		socket.on('shout', (text) => io.emit('shouted', { text, from: socket.id }));
		socket.on('echo', (data, ack) => ackf(ack)(data));
		socket.on('bin', (buf, ack) => {
			const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf || []);
			ackf(ack)({ len: b.length, sum: sum(b) });
			socket.emit('bin', b);
		});
		socket.on('pattern', (n, ack) => { socket.emit('pattern', pattern(n)); ackf(ack)(n); });
		socket.on('kick', () => socket.disconnect(true));
		socket.on('count', (n) => { for (let i = 0; i < n; i++) socket.emit('n', i); });
		socket.on('up', (i) => ups.push(i));
		socket.on('upcheck', (ack) => ackf(ack)(ups));
		socket.on('whoami', (ack) => ackf(ack)({ id: socket.id, cookie: socket.handshake.headers.cookie || '' }));
		socket.on('big', (str, ack) => { ackf(ack)(String(str).length); socket.emit('big', str); });
	});
}

/* Command line of both servers: --port N (default 0: any free port),
 * --polling (also allow polling, so that client.js can be checked against
 * the server directly, without the bridge), --max-http-buffer N, --cors
 * ORIGIN (socket.io 4 with --polling: allow that origin, with credentials;
 * socket.io 2 allows every origin by itself), --path P (default
 * /socket.io). */
function options(argv) {
	const o = { port: 0, polling: false, maxHttpBuffer: 0, cors: '', path: '/socket.io' };
	for (let i = 2; i < argv.length; i++) {
		if (argv[i] === '--port') o.port = Number(argv[++i]);
		else if (argv[i] === '--polling') o.polling = true;
		else if (argv[i] === '--max-http-buffer') o.maxHttpBuffer = Number(argv[++i]);
		else if (argv[i] === '--cors') o.cors = argv[++i];
		else if (argv[i] === '--path') o.path = argv[++i];
	}
	return o;
}

module.exports = { serve, options, sum, pattern };
