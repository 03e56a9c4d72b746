'use strict';
/*
 * dropin.js: the drop-in checks of contrib/js/pollbridge.js, called by
 * test.js: the WebSocket conformance points (one TAP line each), an
 * unchanged WebSocket chat page through PollBridge.install (chat.html), the
 * buffering-proxy fallback (a real nginx with proxy_buffering on in front of
 * the bridge, and server.js holding a stream after its first chunk), and
 * the package (package.json, npm pack, pollbridge.d.ts with tsc, the
 * minified build).
 */
const fs = require('fs');
const path = require('path');
const net = require('net');
const { spawn } = require('child_process');

const TOP = path.join(__dirname, '..', '..');
const JSDIR = path.join(TOP, 'contrib', 'js');
const UPSTREAM_MODULES = path.join(TOP, 'tests', 'upstreams', 'node', 'node_modules');

/* In the page: the conformance checks. Returns [[description, pass, detail], ...].
 * `native`: the engine's EventTarget and event classes were there when
 * pollbridge.js loaded (else its own fallbacks are in use). */
async function pageConformance(arg) {
	const { origin, native } = arg;
	const out = [];
	const check = (desc, pass, detail) => out.push([desc, !!pass, detail === undefined ? null : detail]);
	const throwsName = (fn) => { try { fn(); return null; } catch (e) { return { name: e.name, dom: typeof DOMException === 'function' && e instanceof DOMException }; } };
	const wsOrigin = origin.replace(/^http/, 'ws');
	const until = (fn, ms) => new Promise((resolve) => {
		const t0 = Date.now();
		(function poll() { if (fn()) resolve(true); else if (Date.now() - t0 > ms) resolve(false); else setTimeout(poll, 20); }());
	});
	const P = PollBridge;

	check('constants CONNECTING/OPEN/CLOSING/CLOSED are 0-3 on the class and on instances',
		P.CONNECTING === 0 && P.OPEN === 1 && P.CLOSING === 2 && P.CLOSED === 3 &&
		P.prototype.CONNECTING === 0 && P.prototype.CLOSED === 3);

	/* URL mapping */
	const m1 = new P(origin + '/echo');
	const m2 = new P('/echo', ['a', 'b']);
	const m3 = new P('wss://bridge.example:443/some/prefix/chat?x=1');
	check('new PollBridge(url): url is the ws(s) URL; the last segment is the route, the rest the bridge; relative URLs resolve',
		m1.url === wsOrigin + '/echo' && m1.route === 'echo' && m1.bridge === origin &&
		m2.url === wsOrigin + '/echo' && m2.bridge === origin &&
		m3.url === 'wss://bridge.example/some/prefix/chat?x=1' && m3.bridge === 'https://bridge.example/some/prefix' && m3.route === 'chat' &&
		m1.readyState === 0 && m1.protocol === '' && m1.extensions === '' && m1.bufferedAmount === 0,
		{ m1: [m1.url, m1.bridge, m1.route], m3: [m3.url, m3.bridge, m3.route] });
	m1.close(); m2.close(); m3.close();

	const bad = ['http://[bad/echo', 'ftp://host/echo', 'mailto:a@b', 'ws://', 'ws://host/'].map((u) => [u, throwsName(() => new P(u))]);
	check('a bad URL, a scheme other than http(s)/ws(s), or a URL naming no route → SyntaxError at once' + (native ? ' (a DOMException)' : ''),
		bad.every(([, e]) => e && e.name === 'SyntaxError' && (!native || e.dom)), bad);
	const frag = ['ws://host/echo#x', 'ws://host/echo#'].map((u) => [u, throwsName(() => new P(u))]);
	check('a URL with a fragment (even an empty one) → SyntaxError', frag.every(([, e]) => e && e.name === 'SyntaxError'), frag);
	const prot = [[''], ['a b'], ['a,b'], ['chat', 'chat'], 'x y', ['\u00e9']].map((p) => [p, throwsName(() => new P(origin + '/echo', p))]);
	check('bad or duplicate subprotocols → SyntaxError', prot.every(([, e]) => e && e.name === 'SyntaxError'), prot);

	/* The old three-argument form. */
	const old = new P(origin, 'echo', { transport: 'poll' });
	check('the old form new PollBridge(base, route, options) still works', old.route === 'echo' && old.bridge === origin && old.url === origin,
		[old.url, old.route]);
	old.close();

	check('send() while CONNECTING throws InvalidStateError', (() => {
		const w = new P(origin + '/echo');
		const e = throwsName(() => w.send('x'));
		w.close();
		return e && e.name === 'InvalidStateError';
	})());

	/* open, message, close */
	const ws = new P(origin + '/echo');
	const events = [];
	const states = [];
	let msgEvent = null, closeEvent = null, openEvent = null;
	check('binaryType is "blob" by default; "arraybuffer" is accepted, other values ignored',
		ws.binaryType === 'blob' && ((ws.binaryType = 'nonsense'), ws.binaryType === 'blob') &&
		((ws.binaryType = 'arraybuffer'), ws.binaryType === 'arraybuffer') && ((ws.binaryType = 'blob'), true), ws.binaryType);
	ws.onopen = (e) => { events.push('open'); states.push(ws.readyState); openEvent = e; };
	ws.addEventListener('message', (e) => { events.push('message'); if (!msgEvent) msgEvent = e; });
	ws.onclose = (e) => { events.push('close'); states.push(ws.readyState); closeEvent = e; };
	ws.onerror = () => events.push('error');
	states.push(ws.readyState);
	await until(() => ws.readyState === 1, 5000);
	/* listener options */
	let onceN = 0, dupN = 0, removedN = 0, handleThis = null, handleN = 0;
	const dup = () => { dupN++; };
	const removed = () => { removedN++; };
	const obj = { handleEvent(e) { handleThis = this; handleN++; } };
	ws.addEventListener('message', () => { onceN++; }, { once: true });
	ws.addEventListener('message', dup);
	ws.addEventListener('message', dup);
	ws.addEventListener('message', dup, false);
	ws.addEventListener('message', obj);
	ws.addEventListener('message', removed);
	ws.removeEventListener('message', removed);
	ws.send('one');
	ws.send(new Uint8Array([1, 2, 3]));
	const buffered = ws.bufferedAmount;
	ws.send('two');
	await until(() => events.filter((e) => e === 'message').length >= 3, 5000);
	await until(() => ws.bufferedAmount === 0, 3000);
	const drained = ws.bufferedAmount;
	const msgs = events.filter((e) => e === 'message').length;
	check('open: readyState CONNECTING → OPEN, an Event named open' + (native ? ' (instanceof Event)' : ''),
		states[0] === 0 && states[1] === 1 && openEvent && openEvent.type === 'open' && openEvent.target === ws &&
		(!native || openEvent instanceof Event), states);
	check('a message is a MessageEvent with data, origin (the ws origin), lastEventId "", ports [], source null, target the client',
		msgEvent && msgEvent.type === 'message' && msgEvent.data === 'one' && msgEvent.origin === wsOrigin &&
		msgEvent.lastEventId === '' && Array.isArray(msgEvent.ports) && msgEvent.ports.length === 0 && msgEvent.source === null &&
		msgEvent.target === ws && (!native || msgEvent instanceof MessageEvent),
		msgEvent && { data: msgEvent.data, origin: msgEvent.origin, lastEventId: msgEvent.lastEventId, cls: String(msgEvent.constructor && msgEvent.constructor.name) });
	check('addEventListener: once fires once, a listener added twice runs once, handleEvent objects are called on themselves, removeEventListener works',
		msgs === 3 && onceN === 1 && dupN === 3 && handleN === 3 && handleThis === obj && removedN === 0,
		{ msgs, onceN, dupN, handleN, removedN });
	check('bufferedAmount counts bytes given to send() (3 + 3 bytes) and falls to 0 once the bridge took them',
		buffered === 6 && drained === 0, { buffered, drained });
	/* binary as Blob by default */
	let blobMsg = null;
	ws.binaryType = 'blob';
	ws.addEventListener('message', (e) => { if (typeof e.data !== 'string') blobMsg = e.data; });
	ws.send(new Uint8Array([9, 8, 7]));
	await until(() => blobMsg, 5000);
	const blobBytes = blobMsg && typeof Blob === 'function' && blobMsg instanceof Blob ? Array.from(new Uint8Array(await blobMsg.arrayBuffer())) : null;
	check('a binary message arrives as a Blob with binaryType "blob"', JSON.stringify(blobBytes) === '[9,8,7]', blobBytes);
	/* dispatchEvent and handlers */
	let viaHandler = 0, viaListener = 0;
	ws.onmessage = () => { viaHandler++; };
	const l2 = () => { viaListener++; };
	ws.addEventListener('custom', l2);
	const ev1 = typeof Event === 'function' ? new Event('message') : { type: 'message' };
	const r1 = ws.dispatchEvent(ev1);
	ws.dispatchEvent(typeof Event === 'function' ? new Event('custom') : { type: 'custom' });
	ws.onmessage = null;
	ws.dispatchEvent(typeof Event === 'function' ? new Event('message') : { type: 'message' });
	check('dispatchEvent runs on<type> handlers and listeners (and returns true); setting on<type> to null removes the handler' +
		(native ? '; the client is an EventTarget' : ''),
		r1 === true && viaHandler === 1 && viaListener === 1 && ev1.target === ws && (!native || ws instanceof EventTarget),
		{ r1, viaHandler, viaListener });
	/* close() */
	const e999 = throwsName(() => ws.close(999));
	const eLong = throwsName(() => ws.close(1000, 'x'.repeat(124)));
	check('close(999) → InvalidAccessError; a reason over 123 bytes → SyntaxError',
		e999 && e999.name === 'InvalidAccessError' && eLong && eLong.name === 'SyntaxError', { e999, eLong });
	ws.close(4001, 'bye');
	const closing = ws.readyState;
	const before = ws.bufferedAmount;
	ws.send('h\u00e9llo');                         /* 6 bytes of UTF-8 */
	ws.send(new Uint8Array(10));
	const after = ws.bufferedAmount;
	await until(() => closeEvent, 5000);
	check('send() after close() discards the data but bufferedAmount grows by its size (6 + 10 bytes), as the standard says',
		after - before === 16, { before, after });
	check('close(4001, "bye"): readyState CLOSING at once, then CLOSED; a CloseEvent with code, reason, wasClean',
		closing === 2 && states[2] === 3 && closeEvent && closeEvent.code === 4001 && closeEvent.reason === 'bye' && closeEvent.wasClean === true &&
		(!native || closeEvent instanceof CloseEvent) && JSON.stringify(events.filter((e) => e !== 'message')) === '["open","close"]',
		{ closing, states, events: events.filter((e) => e !== 'message'), code: closeEvent && closeEvent.code });

	/* failure: an unknown route */
	const order = [];
	let errState = -1, errEvent = null, failClose = null;
	const f = new P(origin + '/no-such-route');
	f.onerror = (e) => { order.push('error'); errState = f.readyState; errEvent = e; };
	f.onclose = (e) => { order.push('close'); failClose = e; };
	f.onopen = () => order.push('open');
	await until(() => failClose, 5000);
	check('a connection that fails: error (readyState CLOSED) before close (1006, not clean)',
		JSON.stringify(order) === '["error","close"]' && errState === 3 && errEvent.type === 'error' &&
		failClose.code === 1006 && failClose.wasClean === false, { order, errState, code: failClose && failClose.code });

	/* close() while connecting */
	const c = new P(origin + '/echo');
	const corder = [];
	let cclose = null;
	c.onerror = () => corder.push('error');
	c.onclose = (e) => { corder.push('close'); cclose = e; };
	c.onopen = () => corder.push('open');
	c.close();
	const cstate = c.readyState;
	const sync = corder.length;
	await until(() => cclose, 5000);
	check('close() while CONNECTING: CLOSING at once, then (asynchronously) error and close 1006',
		cstate === 2 && sync === 0 && JSON.stringify(corder) === '["error","close"]' && cclose.code === 1006, { cstate, corder });

	/* install() */
	const saved = window.WebSocket;
	window.WebSocket = function Native() {};
	const kept = PollBridge.install({ map: {} }) === false && window.WebSocket.name === 'Native';
	const forced = PollBridge.install({ map: { 'wss://backend.example/': origin + '/' }, force: true });
	const W = window.WebSocket;
	const p1 = new W('wss://backend.example/echo?token=1');
	const p2 = new W('https://backend.example:443/echo', 'x');
	check('install() leaves an existing WebSocket alone unless force; map prefixes: the rest of the URL follows the mapped value',
		kept && forced && W.OPEN === 1 && p1 instanceof W && p1 instanceof PollBridge && p1.url === 'wss://backend.example/echo?token=1' &&
		p1.bridge === origin && p1.route === 'echo' && p2.url === 'wss://backend.example/echo' && p2.bridge === origin,
		{ kept, forced, url: p1.url, bridge: p1.bridge, route: p1.route });
	p1.close(); p2.close();
	if (saved === undefined) delete window.WebSocket; else window.WebSocket = saved;
	return out;
}

/* ---- helpers on the Node side ---- */

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
	});
}

/* Start nginx on loopback in front of `target` (host:port): proxy_buffering
 * on with large buffers, X-Accel-Buffering ignored, and gzip on the event
 * stream (nginx 1.22 passes an unbuffered chunk on at once even with
 * proxy_buffering on; gzip holds the stream until its buffers fill, as a
 * buffering corporate proxy does). Returns {url, stop} or null. */
async function startNginx(dir, target, pidsFile) {
	const bin = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((b) => fs.existsSync(b));
	if (!bin) return null;
	const port = await freePort();
	const conf = `daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx.err info;
worker_processes 1;
events { worker_connections 256; }
http {
	access_log ${dir}/nginx.access;
	client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
	uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
	gzip on; gzip_types text/event-stream; gzip_min_length 0; gzip_proxied any; gzip_buffers 16 64k;
	server {
		listen 127.0.0.1:${port};
		location / {
			proxy_pass http://${target};
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering on;
			proxy_ignore_headers X-Accel-Buffering;
			proxy_buffer_size 64k;
			proxy_buffers 16 64k;
			proxy_busy_buffers_size 512k;
			proxy_max_temp_file_size 0;
			proxy_read_timeout 120s;
		}
	}
}
`;
	fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
	const child = spawn(bin, ['-c', path.join(dir, 'nginx.conf'), '-p', dir, '-e', path.join(dir, 'nginx.err')],
		{ stdio: ['ignore', 'ignore', 'pipe'] });
	if (child.pid) fs.appendFileSync(pidsFile, child.pid + '\n');
	let err = '';
	child.stderr.on('data', (d) => { err += d; });
	for (let i = 0; i < 50; i++) {
		if (child.exitCode !== null) break;
		const up = await new Promise((resolve) => {
			const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
			s.on('error', () => resolve(false));
		});
		if (up) {
			return {
				url: 'http://127.0.0.1:' + port,
				stop: () => new Promise((r) => {
					if (child.exitCode !== null) { r(); return; }
					child.on('exit', () => r());
					child.kill('SIGQUIT');
					setTimeout(() => child.kill('SIGKILL'), 3000);
				}),
			};
		}
		await new Promise((r) => setTimeout(r, 100));
	}
	child.kill('SIGKILL');
	return { error: err || 'nginx did not start' };
}

module.exports = { pageConformance, startNginx, freePort, JSDIR, UPSTREAM_MODULES, TOP };
