'use strict';
/*
 * server.js: the browser test's web server and fault-injecting proxy, one
 * loopback port. It serves the test page (page.html) and the client under
 * test (contrib/js/pollbridge.js), and forwards /v1/* to the bridge, so the
 * page and the bridge share one origin (no CORS needed). It logs every
 * bridge request it forwards and can lose answers on purpose, after the
 * bridge has produced them, the way a flaky network or proxy does:
 *
 *   dropPoll(minSeq)  the next long-poll answer carrying a message with
 *                     seq >= minSeq is cut mid-body (headers and half the
 *                     body sent, then the connection is reset)
 *   dropSend(n)       the answer to the n-th send request (POST .../messages)
 *                     from now on is cut the same way (the bridge did accept it)
 *   cutStream(minSeq) the event stream is cut in the middle of the first
 *                     event with id >= minSeq, and the client's reconnect
 *                     has its Last-Event-ID removed and its ?after= set back
 *                     to the cut stream's, so the bridge replays from there
 *                     and the client sees repeats
 *   holdStream(on)    pass an event stream's first chunk (the bridge's
 *                     "retry:" line), then hold the rest until the stream
 *                     ends, as a proxy that buffers after the first bytes
 *   refuseEvents(on)  answer .../events with 404, as a bridge without
 *                     Server-Sent Events does
 *   delaySends(ms)    hold every answer to a POST (send, create) for ms
 *   delayShortPolls(ms) hold every answer to a GET .../messages?wait=0 for ms
 *
 * Used by test.js; `node server.js http://127.0.0.1:PORT` runs it alone for
 * poking at the page by hand.
 */
const http = require('http');
const fs = require('fs');
const path = require('path');
const { URL } = require('url');

const HERE = __dirname;
const CLIENT = process.env.PB_JS_CLIENT || path.join(HERE, '..', '..', 'contrib', 'js', 'pollbridge.js');
const HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'];

function start(bridgeUrl, listenPort) {
	const bridge = new URL(bridgeUrl);
	const state = {
		log: [],                /* one entry per forwarded request */
		dropPollMin: 0,
		dropSendIn: 0,
		cutStreamMin: 0,
		stripLastEventId: false,
		rewindAfter: null,
		holdStream: false,
		refuseEvents: false,
		delaySends: 0,
		delayShortPolls: 0,
		sockets: new Set(),
	};

	function cut(res, status, headers, body) {
		/* Send the headers and half the body, then reset: the answer is lost
		 * after the bridge sent it and the client saw it begin. */
		res.writeHead(status, headers);
		res.write(body.subarray(0, Math.floor(body.length / 2)));
		setTimeout(() => res.socket && res.socket.destroy(), 20);
	}

	function forward(req, res, body) {
		const u = new URL(req.url, 'http://x');
		const entry = {
			method: req.method, path: u.pathname,
			after: u.searchParams.get('after'), wait: u.searchParams.get('wait'),
			max: u.searchParams.get('max'),
			sendSeq: req.headers['x-send-seq'] || null,
			lastEventId: req.headers['last-event-id'] || null,
			status: 0, seqs: [], body: null, cut: false, t: Date.now(),
		};
		state.log.push(entry);
		const headers = {};
		for (const [k, v] of Object.entries(req.headers)) {
			if (!HOP.includes(k)) headers[k] = v;
		}
		headers.host = bridge.host;
		/* The proxy reads and cuts answers byte by byte: ask for them
		 * uncompressed (the bridge gzips for a browser otherwise). */
		delete headers['accept-encoding'];
		const isEvents = /\/events$/.test(u.pathname);
		let upPath = req.url;
		if (isEvents && state.stripLastEventId) {
			if (headers['last-event-id']) delete headers['last-event-id'];
			state.stripLastEventId = false;
			entry.stripped = true;
			if (state.rewindAfter !== null) {
				u.searchParams.set('after', state.rewindAfter);
				upPath = u.pathname + u.search;
				entry.rewound = state.rewindAfter;
				state.rewindAfter = null;
			}
		}
		const up = http.request({
			host: bridge.hostname, port: bridge.port, method: req.method,
			path: upPath, headers,
		}, (ures) => {
			entry.status = ures.statusCode;
			const rh = {};
			for (const [k, v] of Object.entries(ures.headers)) {
				if (!HOP.includes(k) && k !== 'content-length') rh[k] = v;
			}
			if (isEvents && ures.statusCode === 200) {
				streamEvents(entry, ures, res, rh);
				return;
			}
			const chunks = [];
			ures.on('data', (c) => chunks.push(c));
			ures.on('end', () => {
				const out = Buffer.concat(chunks);
				entry.body = out.toString();
				let parsed = null;
				try { parsed = JSON.parse(entry.body); } catch (e) { /* not JSON */ }
				if (parsed && Array.isArray(parsed.messages)) entry.seqs = parsed.messages.map((m) => m.seq);
				rh['content-length'] = String(out.length);
				if (req.method === 'GET' && /\/messages$/.test(u.pathname) && entry.wait !== '0' &&
				    state.dropPollMin && entry.seqs.some((s) => s >= state.dropPollMin)) {
					state.dropPollMin = 0;
					entry.cut = true;
					cut(res, ures.statusCode, rh, out);
					return;
				}
				if (req.method === 'POST' && /\/messages$/.test(u.pathname) && state.dropSendIn &&
				    --state.dropSendIn === 0) {
					entry.cut = true;
					cut(res, ures.statusCode, rh, out);
					return;
				}
				const answer = () => { res.writeHead(ures.statusCode, rh); res.end(out); };
				const delay = req.method === 'POST' ? state.delaySends :
					req.method === 'GET' && entry.wait === '0' ? state.delayShortPolls : 0;
				if (delay) setTimeout(answer, delay);
				else answer();
			});
		});
		up.on('error', (e) => {
			entry.status = 502;
			entry.body = String(e);
			if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
			res.end('proxy: ' + e.message);
		});
		/* The browser went away (a client abort or our own cut): drop the upstream request. */
		res.on('close', () => up.destroy());
		up.end(body);
	}

	/* Pass an event stream through, noting each event's id; cut it once. */
	function streamEvents(entry, ures, res, rh) {
		res.writeHead(200, rh);
		let pending = '';
		const hold = state.holdStream;
		let held = [], first = true;
		entry.held = hold;
		const write = (data) => {
			if (hold && !first) { held.push(data); return; }
			first = false;
			res.write(data);
		};
		ures.setEncoding('utf8');
		ures.on('data', (chunk) => {
			pending += chunk;
			let i;
			while ((i = pending.indexOf('\n\n')) >= 0) {
				const ev = pending.slice(0, i + 2);
				pending = pending.slice(i + 2);
				const m = /^id: ?(\d+)$/m.exec(ev);
				const seq = m ? Number(m[1]) : 0;
				if (seq) entry.seqs.push(seq);
				if (/^event: ?close$/m.test(ev)) entry.sawClose = true;
				if (seq && state.cutStreamMin && seq >= state.cutStreamMin) {
					state.cutStreamMin = 0;
					state.stripLastEventId = true;
					state.rewindAfter = entry.after || '0';
					entry.cut = true;
					entry.seqs.pop();
					res.write(ev.slice(0, Math.floor(ev.length / 2)));
					setTimeout(() => res.socket && res.socket.destroy(), 20);
					ures.destroy();
					return;
				}
				write(ev);
			}
		});
		ures.on('end', () => { for (const d of held) res.write(d); held = []; res.end(); });
		res.on('close', () => ures.destroy());
	}

	const server = http.createServer((req, res) => {
		if (req.url === '/' || req.url === '/index.html') {
			res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
			res.end(fs.readFileSync(path.join(HERE, 'page.html')));
			return;
		}
		const page = /^\/([a-z]+\.html)(\?.*)?$/.exec(req.url);
		if (page && page[1] !== 'page.html' && fs.existsSync(path.join(HERE, page[1]))) {
			res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
			res.end(fs.readFileSync(path.join(HERE, page[1])));
			return;
		}
		if (req.url === '/pollbridge.min.js') {
			res.writeHead(200, { 'content-type': 'application/javascript; charset=utf-8', 'cache-control': 'no-store' });
			res.end(fs.readFileSync(CLIENT.replace(/\.js$/, '.min.js')));
			return;
		}
		if (req.url === '/pollbridge.js') {
			res.writeHead(200, { 'content-type': 'application/javascript; charset=utf-8', 'cache-control': 'no-store' });
			res.end(fs.readFileSync(CLIENT));
			return;
		}
		if (state.refuseEvents && /^\/v1\/sessions\/[^/]+\/events(\?|$)/.test(req.url)) {
			/* As a bridge without Server-Sent Events answers. */
			state.log.push({ method: req.method, path: req.url.replace(/\?.*/, ''), status: 404, seqs: [], refused: true, t: Date.now() });
			res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
			res.end('{"error":"not_found","message":"no such resource"}');
			return;
		}
		if (req.url.startsWith('/v1/')) {
			const chunks = [];
			req.on('data', (c) => chunks.push(c));
			req.on('end', () => forward(req, res, Buffer.concat(chunks)));
			return;
		}
		res.writeHead(404, { 'content-type': 'text/plain' });
		res.end('not found');
	});
	server.on('connection', (s) => {
		state.sockets.add(s);
		s.on('close', () => state.sockets.delete(s));
	});

	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(listenPort || 0, '127.0.0.1', () => {
			resolve({
				url: 'http://127.0.0.1:' + server.address().port,
				log: state.log,
				reset() {
					state.log.length = 0;
					state.dropPollMin = state.dropSendIn = state.cutStreamMin = 0;
					state.stripLastEventId = state.refuseEvents = state.holdStream = false;
					state.rewindAfter = null;
					state.delaySends = state.delayShortPolls = 0;
				},
				refuseEvents(on) { state.refuseEvents = on; },
				holdStream(on) { state.holdStream = on; },
				delaySends(ms) { state.delaySends = ms; },
				delayShortPolls(ms) { state.delayShortPolls = ms; },
				dropPoll(minSeq) { state.dropPollMin = minSeq; },
				dropSend(n) { state.dropSendIn = n; },
				cutStream(minSeq) { state.cutStreamMin = minSeq; },
				close() {
					for (const s of state.sockets) s.destroy();
					return new Promise((r) => server.close(() => r()));
				},
			});
		});
	});
}

module.exports = { start };

if (require.main === module) {
	start(process.argv[2] || 'http://127.0.0.1:8080', Number(process.argv[3] || 0)).then((p) => {
		console.log('serving the test page on ' + p.url + '/ (bridge ' + (process.argv[2] || 'http://127.0.0.1:8080') + ')');
	});
}
