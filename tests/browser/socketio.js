'use strict';
/*
 * socketio.js: the real socket.io-client browser bundles (npm
 * socket.io-client 4.x dist/socket.io.js and 2.x, Engine.IO v4 and v3) in
 * headless Chromium (playwright-core) with window.WebSocket deleted, talking
 * polling to the chat of tests/upstreams/socketio through pollbridge's
 * Engine.IO door. Started by socketio.sh, which starts the bridge and the
 * servers and passes:
 *
 *   node socketio.js --deps DIR --chromium PATH --profile DIR --page-port N
 *        --url4 URL --path4 PATH --url2 URL --path2 PATH
 *
 * This script serves the page and the bundles on 127.0.0.1:N (setting a
 * cookie) and proxies PATH4 and PATH2 to URL4 and URL2, so that a page can
 * use the door on its own origin. Cases: XHR polling on the same origin (v4
 * and v2), cross-origin XHR straight at the bridge (v4 with
 * withCredentials: the cookie must reach the server; v2, whose binary POST
 * needs a CORS preflight) and cross-origin JSONP polling (v2, forceJSONP).
 * Each case: connect, acknowledgement, binary both ways, a room, 200
 * messages each way in order, the cookie the server saw, a server
 * disconnect. Prints TAP.
 */
const fs = require('fs');
const path = require('path');
const http = require('http');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const req = (name) => require(path.join(args.deps, 'node_modules', name));
const { chromium } = req('playwright-core');
const nm = process.env.PB_NODE_MODULES || path.join(__dirname, '..', 'upstreams', 'node', 'node_modules');
const BUNDLES = {
	'/sio4.js': path.join(nm, 'socket.io-client', 'dist', 'socket.io.js'),
	'/sio2.js': path.join(nm, 'socket.io-client-v2', 'dist', 'socket.io.js'),
};
const COOKIE = 'pbtest=c00kie-' + process.pid;

/* ---- TAP ---- */
let count = 0, failed = 0;
function ok(cond, desc, diag) {
	count++;
	if (!cond) failed++;
	console.log((cond ? 'ok ' : 'not ok ') + count + ' - ' + desc);
	if (!cond && diag !== undefined) {
		const text = typeof diag === 'string' ? diag : JSON.stringify(diag);
		for (const line of text.split('\n').slice(0, 20)) console.log('# ' + line.slice(0, 400));
	}
	return cond;
}
const note = (s) => console.log('# ' + s);

/* ---- the page server and proxy ---- */
const HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host'];
const proxied = [];

/* Forward req to target (a URL string) and stream the answer back. */
function forward(req, res, target) {
	const t = new URL(target);
	const headers = {};
	for (const [k, v] of Object.entries(req.headers)) if (!HOP.includes(k)) headers[k] = v;
	const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers }, (ur) => {
		const h = {};
		for (const [k, v] of Object.entries(ur.headers)) if (!HOP.includes(k)) h[k] = v;
		res.writeHead(ur.statusCode, h);
		ur.pipe(res);
	});
	up.on('error', (e) => { if (!res.headersSent) res.writeHead(502); res.end(String(e)); });
	req.pipe(up);
	proxied.push(req.method + ' ' + req.url);
}

function page(v) {
	return '<!doctype html><html><head><meta charset="utf-8"><title>socket.io ' + v + '</title>' +
		'<script src="/sio' + v + '.js"></script></head><body>socket.io-client v' + v + '</body></html>';
}

function startServer(port) {
	const srv = http.createServer((req, res) => {
		const u = new URL(req.url, 'http://x');
		if (u.pathname === '/page.html') {
			res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'set-cookie': COOKIE + '; Path=/; SameSite=Lax' });
			res.end(page(u.searchParams.get('v') === '2' ? '2' : '4'));
		} else if (BUNDLES[u.pathname]) {
			res.writeHead(200, { 'content-type': 'application/javascript' });
			fs.createReadStream(BUNDLES[u.pathname]).pipe(res);
		} else if (u.pathname.startsWith(args.path4)) {
			forward(req, res, args.url4);
		} else if (u.pathname.startsWith(args.path2)) {
			forward(req, res, args.url2);
		} else {
			res.writeHead(404);
			res.end();
		}
	});
	return new Promise((resolve) => srv.listen(Number(args['page-port']), '127.0.0.1', () => resolve(srv)));
}

/* ---- what runs in the page ---- */
/* One case, in the page: returns a result object (never throws). */
async function inPage(c) {
	const r = { errors: [] };
	const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
	const mk = () => io(c.url, Object.assign({ path: c.path, transports: ['polling'], forceNew: true,
		reconnection: false, timeout: 10000 }, c.opts));
	const conn = (s) => new Promise((res) => {
		const t = setTimeout(() => res('timeout'), 15000);
		s.on('connect', () => { clearTimeout(t); res('connected'); });
		s.on('connect_error', (e) => { clearTimeout(t); res('connect_error: ' + (e && e.message)); });
	});
	const ack = (s, ...a) => new Promise((res) => {
		const t = setTimeout(() => res('ack timeout'), 10000);
		s.emit(...a, (x) => { clearTimeout(t); res(x); });
	});
	const once = (s, ev) => new Promise((res) => {
		const t = setTimeout(() => res('timeout'), 10000);
		s.once(ev, (...x) => { clearTimeout(t); res(x); });
	});
	const bytes = (b) => Array.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b && b.buffer ?
		new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : []);
	try {
		r.noWebSocket = typeof window.WebSocket === 'undefined';
		const a = mk(), b = mk();
		r.connect = await Promise.all([conn(a), conn(b)]);
		if (r.connect[0] !== 'connected' || r.connect[1] !== 'connected') return r;
		r.transport = a.io.engine.transport.name;
		r.jsonp = typeof window.___eio !== 'undefined' && window.___eio.length > 0;
		r.xhr = typeof a.io.engine.transport.doPoll === 'function' && !r.jsonp;
		r.text = 'héllo ✓ 😀 "q" \\ </script>\n' + 'é'.repeat(300);
		r.echo = await ack(a, 'echo', r.text);
		const out = new Uint8Array(300);
		for (let i = 0; i < out.length; i++) out[i] = (i * 13 + 5) & 255;
		let sum = 0;
		for (const x of out) sum = (sum * 31 + x) >>> 0;
		r.sum = sum;
		const binEcho = once(a, 'bin');
		r.binAck = await ack(a, 'bin', out.buffer);
		const be = await binEcho;
		r.binBack = Array.isArray(be) ? bytes(be[0]) : be;
		r.binOut = Array.from(out);
		const pat = once(a, 'pattern');
		await ack(a, 'pattern', 1000);
		const p = await pat;
		r.pattern = Array.isArray(p) ? bytes(p[0]) : p;
		const room = 'room-' + Math.random().toString(36).slice(2);
		await ack(a, 'join', room);
		await ack(b, 'join', room);
		const said = once(b, 'said');
		a.emit('say', { room, text: 'hi room' });
		r.said = await said;
		const got = [];
		b.on('n', (i) => got.push(i));
		b.emit('count', c.n);
		for (let i = 0; i < c.n; i++) b.emit('up', i);
		r.ups = await ack(b, 'upcheck');
		for (let i = 0; i < 200 && got.length < c.n; i++) await sleep(50);
		r.got = got;
		r.who = await ack(a, 'whoami');
		const d = once(a, 'disconnect');
		a.emit('kick');
		r.kick = await d;
		b.close();
	} catch (e) {
		r.errors.push(String(e && e.stack || e));
	}
	return r;
}

/* Run one case in a fresh page and check its result. */
async function runCase(ctx, label, v, url, p, opts, expect) {
	const pg = await ctx.newPage();
	const errs = [];
	pg.on('pageerror', (e) => errs.push(String(e)));
	await pg.addInitScript(() => { delete window.WebSocket; delete window.MozWebSocket; });
	await pg.goto('http://127.0.0.1:' + args['page-port'] + '/page.html?v=' + v);
	const n = 200;
	const r = await pg.evaluate(inPage, { url, path: p, opts, n });
	const L = label + ': ';
	ok(r.noWebSocket, L + 'the page has no WebSocket');
	if (!ok(Array.isArray(r.connect) && r.connect.every((x) => x === 'connected'), L + 'two sockets connect', r)) {
		await pg.close();
		return;
	}
	ok(r.transport === 'polling' && (expect.jsonp ? r.jsonp : !r.jsonp), L + (expect.jsonp ? 'JSONP' : 'XHR') + ' polling', r.transport);
	ok(r.echo === r.text, L + 'acknowledgement with multi-byte text and </script>', r.echo);
	ok(r.binAck && r.binAck.len === 300 && r.binAck.sum === r.sum, L + 'binary page -> server arrives intact', r.binAck);
	ok(JSON.stringify(r.binBack) === JSON.stringify(r.binOut), L + 'binary echoed server -> page is identical',
		Array.isArray(r.binBack) ? r.binBack.length : r.binBack);
	ok(Array.isArray(r.pattern) && r.pattern.length === 1000 && r.pattern.every((x, i) => x === ((i * 7 + 3) & 255)),
		L + 'binary server -> page (1000 bytes) is intact', Array.isArray(r.pattern) ? r.pattern.length : r.pattern);
	ok(Array.isArray(r.said) && r.said[0].text === 'hi room', L + 'a room message reaches the other socket', r.said);
	const inOrder = (l) => Array.isArray(l) && l.length === n && l.every((x, i) => x === i);
	ok(inOrder(r.got), L + n + ' messages server -> page once and in order', Array.isArray(r.got) ? r.got.length : r.got);
	ok(inOrder(r.ups), L + n + ' messages page -> server once and in order', Array.isArray(r.ups) ? r.ups.length : r.ups);
	if (expect.cookie !== undefined) {
		const has = !!(r.who && r.who.cookie && r.who.cookie.includes(COOKIE));
		ok(has === expect.cookie, L + (expect.cookie ? 'the page\'s cookie reaches the server (credentials, forwarded)' :
			'no cookie without credentials'), r.who);
	}
	ok(Array.isArray(r.kick) && r.kick[0] === 'io server disconnect', L + 'server disconnect reaches the page', r.kick);
	ok(r.errors.length === 0 && errs.length === 0, L + 'no page errors', { errors: r.errors, page: errs });
	await pg.close();
}

async function main() {
	const srv = await startServer();
	const browser = await chromium.launchPersistentContext(args.profile, {
		executablePath: args.chromium,
		headless: true,
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
	const page = 'http://127.0.0.1:' + args['page-port'];
	try {
		note('chromium ' + browser.browser().version() + ', playwright-core ' + req('playwright-core/package.json').version);
		await runCase(browser, 'v4 xhr same-origin', '4', page, args.path4, {}, { cookie: true });
		await runCase(browser, 'v2 xhr same-origin', '2', page, args.path2, {}, { cookie: true });
		await runCase(browser, 'v4 xhr cross-origin withCredentials', '4', args.url4, args.path4,
			{ withCredentials: true }, { cookie: true });
		await runCase(browser, 'v4 xhr cross-origin without credentials', '4', args.url4, args.path4, {}, { cookie: false });
		await runCase(browser, 'v2 xhr cross-origin', '2', args.url2, args.path2, {}, { cookie: true });
		await runCase(browser, 'v2 jsonp cross-origin', '2', args.url2, args.path2, { forceJSONP: true }, { jsonp: true });
		note('proxied ' + proxied.length + ' requests on the page\'s origin');
	} finally {
		await browser.close().catch(() => {});
		srv.close();
	}
}

const deadline = setTimeout(() => {
	console.log('Bail out! the Socket.IO browser test did not finish within 100 s');
	process.exit(1);
}, 100000);
main().then(() => {
	clearTimeout(deadline);
	console.log('1..' + count);
	process.exit(failed ? 1 : 0);
}, (e) => {
	console.log('Bail out! ' + String(e && e.stack || e).split('\n')[0]);
	for (const line of String(e && e.stack).split('\n').slice(1, 8)) console.log('# ' + line);
	process.exit(1);
});
