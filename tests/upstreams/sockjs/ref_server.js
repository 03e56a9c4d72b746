'use strict';
/*
 * ref_server.js: the reference SockJS server (npm `sockjs` 0.3.24, from
 * tests/upstreams/node/node_modules) as a stand-in for pollbridge's SockJS
 * door, so that the SockJS tests can be checked against the real thing:
 *
 *   node ref_server.js [--port N] [--sockjs-url URL] [--capture FILE]
 *                      [--watch-log FILE]
 *
 * Listens on 127.0.0.1 (port 0: a free one) and prints "listening on PORT".
 * Two prefixes, mirroring the upstreams the bridge runs behind its door:
 *   /echo   every message back (as tests/upstreams/node/ws_upstream.js echo)
 *   /close  the first message back, then close 4001 "bye" (as ws_upstream.js
 *           close-after-echo 4001 bye)
 *   /watch  echo; when a session closes, one JSON line to --watch-log FILE
 *           (as tests/upstreams/sockjs/watch_upstream.js; no close code:
 *           sockjs-node does not give one)
 * WebSocket is off (pollbridge's door does not offer it); --sockjs-url is
 * what the iframe page loads (default: none reachable, so the iframe
 * transports need it). --capture FILE appends one JSON line per HTTP
 * exchange (request line, headers, body; status, headers, body chunks with
 * their times) for writing down what goes over the wire.
 */
const http = require('http');
const fs = require('fs');
const path = require('path');

const NODE_MODULES = path.join(__dirname, '..', 'node', 'node_modules');
const sockjs = require(path.join(NODE_MODULES, 'sockjs'));

const args = { port: '0', 'sockjs-url': 'http://127.0.0.1:9/sockjs.js', capture: '', 'watch-log': '' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

const options = {
	sockjs_url: args['sockjs-url'],
	websocket: false,
	log: () => {},
};

const echo = sockjs.createServer(options);
echo.on('connection', (conn) => {
	conn.on('data', (m) => conn.write(m));
});

const closer = sockjs.createServer(options);
closer.on('connection', (conn) => {
	conn.once('data', (m) => {
		conn.write(m);
		conn.close(4001, 'bye');
	});
});

/* /watch: echo, and log when each connection closes (--watch-log FILE). */
const watch = sockjs.createServer(options);
watch.on('connection', (conn) => {
	const opened = Date.now();
	let first = null;
	conn.on('data', (m) => { if (first === null) first = m; conn.write(m); });
	conn.on('close', () => {
		if (args['watch-log']) fs.appendFileSync(args['watch-log'], JSON.stringify({ first, code: null, reason: '',
			at: Date.now(), open_ms: Date.now() - opened }) + '\n');
	});
});

const server = http.createServer();

/* Record an exchange: patch this response's writers, log when it ends. */
function capture(req, res) {
	const t0 = Date.now();
	const entry = { t: new Date(t0).toISOString(), method: req.method, url: req.url,
		reqHeaders: req.headers, reqBody: '', status: 0, resHeaders: {}, chunks: [] };
	req.on('data', (c) => { entry.reqBody += c.toString('utf8'); });
	const writeHead = res.writeHead, write = res.write, end = res.end;
	res.writeHead = function (...a) {
		const r = writeHead.apply(this, a);
		entry.status = res.statusCode;
		entry.resHeaders = res.getHeaders();
		return r;
	};
	const chunk = (c) => {
		if (c === undefined || c === null || typeof c === 'function') return;
		entry.chunks.push({ ms: Date.now() - t0, data: Buffer.isBuffer(c) ? c.toString('utf8') : String(c) });
	};
	res.write = function (c, ...a) { chunk(c); return write.call(this, c, ...a); };
	res.end = function (c, ...a) { chunk(c); return end.call(this, c, ...a); };
	const done = () => {
		if (entry.done) return;
		entry.done = true;
		if (!entry.status) { entry.status = res.statusCode; entry.resHeaders = res.getHeaders(); }
		entry.ms = Date.now() - t0;
		entry.finished = res.writableFinished;
		fs.appendFileSync(args.capture, JSON.stringify(entry) + '\n');
	};
	res.on('finish', done);
	res.on('close', done);
}

const handlers = [echo.listener({ prefix: '/echo' }).getHandler(),
	closer.listener({ prefix: '/close' }).getHandler(), watch.listener({ prefix: '/watch' }).getHandler()];
server.on('request', (req, res) => {
	if (args.capture) capture(req, res);
	for (const h of handlers) if (h(req, res)) return;
	res.writeHead(404);
	res.end();
});
server.listen(Number(args.port), '127.0.0.1', () => {
	console.log('listening on ' + server.address().port);
});
