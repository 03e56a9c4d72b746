'use strict';
/*
 * test.js: drives headless Chromium (playwright-core) against a real bridge
 * through server.js, and prints TAP. Started by run.sh, which starts the
 * bridge and the echo upstream and passes:
 *
 *   node test.js --bridge http://ADDR:PORT --deps DIR --chromium PATH
 *                --profile DIR --record FILE --pb-bin PATH --echo ADDR:PORT
 *                --pids FILE
 *
 * --deps holds node_modules/{playwright-core,acorn}; --record is the echo
 * upstream's --record file (what reached the upstream, one line a message).
 * For the cross-origin checks it starts a second bridge itself (--pb-bin,
 * routed to --echo, with --cors-origin for the page's origin) and notes its
 * pid in --pids so that run.sh can stop it whatever happens to this one.
 */
const fs = require('fs');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');
const server = require('./server.js');
const dropin = require('./dropin.js');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const req = (name) => require(path.join(args.deps, 'node_modules', name));
const { chromium } = req('playwright-core');
const acorn = req('acorn');
const CLIENT = path.join(__dirname, '..', '..', 'contrib', 'js', 'pollbridge.js');
const N = 50;
const BINARY = Array.from({ length: 256 }, (_, i) => (i * 7 + 3) % 256);

/* ---- TAP ---- */
let count = 0, failed = 0;
function ok(cond, desc, diag) {
	count++;
	if (!cond) failed++;
	console.log((cond ? 'ok ' : 'not ok ') + count + ' - ' + desc);
	if (!cond && diag !== undefined) {
		const text = typeof diag === 'string' ? diag : JSON.stringify(diag, null, 1);
		for (const line of text.split('\n').slice(0, 40)) console.log('# ' + line);
	}
	return cond;
}
function skip(desc) { count++; console.log('ok ' + count + ' # SKIP ' + desc); }
function note(s) { console.log('# ' + s); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* A plain request to the bridge itself (not through the proxy). */
function bridgeRequest(method, p, body, extra) {
	const u = new URL(args.bridge);
	return new Promise((resolve) => {
		const r = http.request({ host: u.hostname, port: u.port, method, path: p,
			headers: Object.assign(body ? { 'content-type': 'application/json' } : {}, extra || {}) }, (res) => {
			let data = '';
			res.on('data', (c) => { data += c; });
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
			res.on('error', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
		});
		r.on('error', (e) => resolve({ status: 0, body: String(e) }));
		if (extra && extra.timeout) r.setTimeout(extra.timeout, () => r.destroy());
		r.end(body || undefined);
	});
}

/* Does the bridge stream events yet? (200 text/event-stream on /events) */
async function sseAvailable() {
	const c = await bridgeRequest('POST', '/v1/sessions', '{"route":"echo"}');
	if (c.status !== 201) return false;
	const id = JSON.parse(c.body).session;
	const u = new URL(args.bridge);
	const status = await new Promise((resolve) => {
		const r = http.get({ host: u.hostname, port: u.port, path: '/v1/sessions/' + id + '/events' }, (res) => {
			resolve(res.statusCode === 200 && /^text\/event-stream/.test(res.headers['content-type'] || ''));
			res.destroy();
		});
		r.on('error', () => resolve(false));
		r.setTimeout(3000, () => { r.destroy(); resolve(false); });
	});
	await bridgeRequest('DELETE', '/v1/sessions/' + id);
	return status;
}

/* What reached the upstream: how many times each text message was seen. */
function upstreamCounts(prefix) {
	const counts = {};
	let text = '';
	try { text = fs.readFileSync(args.record, 'utf8'); } catch (e) { return counts; }
	for (const line of text.split('\n')) {
		const m = /^text \d+ (.*)$/.exec(line);
		if (m && m[1].startsWith(prefix)) counts[m[1]] = (counts[m[1]] || 0) + 1;
	}
	return counts;
}

async function waitFor(page, fn, arg, ms) {
	try {
		await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
		return true;
	} catch (e) {
		return false;
	}
}

/* A page with no WebSocket (and whatever else `hide` names) before any
 * script runs. The names in `hide` other than EventSource come back once
 * the page has loaded (Playwright's own injected scripts need typed arrays
 * and JSON): pollbridge.js decides what the engine has when it loads, so it
 * still runs as on an engine without them. window.__hidden lists what was
 * missing while it loaded. */
async function newPage(ctx, hide, pageErrors) {
	const page = await ctx.newPage();
	await page.addInitScript((names) => {
		const saved = {};
		for (const n of names) { saved[n] = window[n]; delete window[n]; }
		document.addEventListener('DOMContentLoaded', () => {
			window.__hidden = names.filter((n) => typeof window[n] === 'undefined');
			for (const n of names) if (n !== 'WebSocket' && n !== 'EventSource') window[n] = saved[n];
		});
	}, ['WebSocket'].concat(hide));
	page.on('pageerror', (e) => pageErrors.push(String(e)));
	await page.goto(proxy.url + '/');
	return page;
}

/* ---- the main scenario: 50 texts and a binary, a lost answer, close() ---- */
async function scenario(ctx, transport, hide, label) {
	const pageErrors = [];
	const page = await newPage(ctx, hide, pageErrors);
	const prefix = label + '-msg-';
	const env = await page.evaluate((hidden) => ({
		noWebSocket: typeof WebSocket === 'undefined',
		client: typeof PollBridge === 'function',
		notHidden: hidden.filter((n) => window.__hidden.indexOf(n) < 0),
	}), hide);
	ok(env.noWebSocket && env.client && !env.notHidden.length,
		label + ': the page has no WebSocket' + (hide.length ? ' (nor ' + hide.join(', ') + ')' : '') + ' and loads pollbridge.js', env);

	proxy.reset();
	/* Lose one answer on the receive path and one on the send path. */
	if (transport === 'sse') proxy.cutStream(20); else proxy.dropPoll(20);
	/* The client batches what is sent while a send is in flight: there may
	 * be only two send requests (the first message, then the rest). */
	proxy.dropSend(2);
	const i = await page.evaluate((t) => openClient({ transport: t, wait: 10 }), transport);
	const opened = await waitFor(page, (k) => T.clients[k].opened || T.clients[k].close, i, 10000);
	let s = await page.evaluate((k) => snapshot(k), i);
	const wantTransport = transport === 'auto' ? (hide.includes('EventSource') ? 'poll' : s.transport) : transport;
	ok(opened && s.readyState === 1 && s.protocol === '' && s.transport === wantTransport && /^[A-Za-z0-9_-]{22,}$/.test(s.session || ''),
		label + ': opens (readyState OPEN, transport ' + wantTransport + ')', s);

	/* Binary: a typed array where the engine has them, else the echo's "/binary 256" (bytes 0..255). */
	const oldEngine = hide.includes('ArrayBuffer');
	const binary = oldEngine ? Array.from({ length: 256 }, (_, k) => k) : BINARY;
	await page.evaluate(([k, p, n, extra]) => new Promise((r) => sendNumbered(k, p, n, [extra], r)),
		[i, prefix, N, oldEngine ? '/binary 256' : BINARY]);
	const all = await waitFor(page, ([k, n]) => T.clients[k].received.length >= n || T.clients[k].close, [i, N + 1], 30000);
	await sleep(300);           /* room for a late duplicate to show up */
	s = await page.evaluate((k) => snapshot(k), i);
	const want = [];
	for (let k = 1; k <= N; k++) want.push({ kind: 'text', data: prefix + k });
	const binKind = oldEngine ? 'base64' : 'arraybuffer';
	want.push({ kind: binKind, data: oldEngine ? Buffer.from(binary).toString('base64') : binary });
	const got = s.received.map((m) => ({ kind: m.kind, data: m.data }));
	const seqs = s.received.map((m) => m.seq);
	ok(all && JSON.stringify(got) === JSON.stringify(want) && seqs.every((q, k) => k === 0 || q === seqs[k - 1] + 1),
		label + ': ' + N + ' texts and one binary (' + (oldEngine ? 'as a base64 string' : 'as an ArrayBuffer') + ') echoed exactly once, in order',
		{ got: got.length, firstMismatch: got.findIndex((m, k) => JSON.stringify(m) !== JSON.stringify(want[k])), sample: got.slice(0, 3), errors: s.errors, close: s.close });

	const up = upstreamCounts(prefix);
	const ups = Object.keys(up);
	ok(ups.length === N && ups.every((k) => up[k] === 1), label + ': the upstream got each of the ' + N + ' texts once', up);

	/* The receive path lost one answer, and the client recovered from it. */
	const log = proxy.log.slice();
	if (transport === 'sse') {
		const streams = log.filter((e) => /\/events$/.test(e.path));
		const cutAt = streams.findIndex((e) => e.cut);
		const sent = {};
		for (const e of streams) for (const q of e.seqs) sent[q] = (sent[q] || 0) + 1;
		const repeated = Object.keys(sent).filter((q) => sent[q] > 1);
		const re = cutAt >= 0 ? streams[cutAt + 1] : null;
		ok(cutAt >= 0 && re && re.stripped && re.rewound === streams[cutAt].after &&
			Number(re.after) <= streams[cutAt].seqs.slice(-1)[0] && repeated.length > 0,
			label + ': the stream was cut mid-event; the client reopened it from its cursor (after=' + (re && re.after) +
			'), which the proxy set back to ' + (re && re.rewound) + ': ' + repeated.length + ' events replayed, none delivered twice',
			streams.map((e) => ({ after: e.after, rewound: e.rewound, lastEventId: e.lastEventId, stripped: e.stripped, cut: e.cut, seqs: e.seqs.length })));
		/* Acknowledgement: within ACK_INTERVAL (5 s) the client replaces the
		 * stream by one from its cursor; it never polls meanwhile, which would
		 * make the bridge end the stream. */
		const last = seqs[seqs.length - 1];
		let acked = false;
		for (let t = 0; t < 80 && !acked; t++) {
			acked = proxy.log.some((e) => /\/events$/.test(e.path) && Number(e.after) === last && !e.lastEventId);
			if (!acked) await sleep(100);
		}
		const polled = proxy.log.filter((e) => e.method === 'GET' && /\/messages$/.test(e.path));
		ok(acked && polled.length === 0,
			label + ': delivered events are acknowledged by a new stream from the cursor (after=' + last + '), with no poll to cut the stream',
			proxy.log.filter((e) => e.method === 'GET').map((e) => e.path.replace(/.*\//, '') + '?after=' + e.after + '&wait=' + e.wait + ' lastEventId=' + e.lastEventId));
	} else {
		const polls = log.filter((e) => e.method === 'GET' && /\/messages$/.test(e.path));
		const cutAt = polls.findIndex((e) => e.cut);
		const retry = cutAt >= 0 ? polls[cutAt + 1] : null;
		ok(cutAt >= 0 && retry && retry.after === polls[cutAt].after && retry.t - polls[cutAt].t >= 300,
			label + ': a long-poll answer (seqs ' + (cutAt >= 0 ? polls[cutAt].seqs[0] + '-' + polls[cutAt].seqs.slice(-1)[0] : '?') +
			') was cut mid-body; the client backed off and polled again with the same cursor',
			polls.map((e) => ({ after: e.after, wait: e.wait, seqs: e.seqs, cut: e.cut })));
	}
	/* The send path lost one answer too. */
	const sends = log.filter((e) => e.method === 'POST' && /\/messages$/.test(e.path));
	const sc = sends.findIndex((e) => e.cut);
	const again = sc >= 0 ? sends[sc + 1] : null;
	ok(sc >= 0 && again && again.sendSeq === sends[sc].sendSeq && /"accepted":0/.test(again.body) &&
		sends.every((e, k) => k === 0 || Number(e.sendSeq) === Number(sends[k - 1].sendSeq) + (k === sc + 1 ? 0 : 1)),
		label + ': a send answer was lost; the retry carried the same X-Send-Seq (' + (sc >= 0 ? sends[sc].sendSeq : '?') + ') and was not forwarded again',
		sends.map((e) => ({ seq: e.sendSeq, status: e.status, body: e.body, cut: e.cut })));

	/* close() */
	const closed = await page.evaluate((k) => new Promise((resolve) => {
		var ws = T.clients[k].ws;
		var timer = setTimeout(() => resolve(null), 10000);
		ws.addEventListener('close', () => { clearTimeout(timer); resolve(snapshot(k)); });
		ws.close(1000, 'done');
	}), i);
	const del = proxy.log.filter((e) => e.method === 'DELETE');
	const after = await bridgeRequest('GET', '/v1/sessions/' + s.session + '/messages');
	ok(closed && closed.close && closed.close.code === 1000 && closed.close.reason === 'done' && closed.close.wasClean &&
		closed.close.readyState === 3 && del.length === 1 && del[0].status === 204 && after.status === 410,
		label + ': close(1000, "done") → DELETE 204 → onclose(1000, "done", clean); the bridge then answers 410',
		{ closed: closed && closed.close, events: closed && closed.events, deletes: del.map((e) => e.status), after: after.status });

	/* The upstream closes: the last messages, one acknowledging poll, onclose(4000, "bye"). */
	proxy.reset();
	const j = await page.evaluate((t) => openClient({ transport: t, wait: 10 }), transport);
	await waitFor(page, (k) => T.clients[k].opened || T.clients[k].close, j, 10000);
	/* Slow answers: the close arrives while a send is in flight, and that
	 * send is answered while the acknowledging poll still is. */
	proxy.delaySends(300);
	proxy.delayShortPolls(600);
	await page.evaluate((k) => { var ws = T.clients[k].ws; ws.send('last-1'); ws.send('/burst 3'); ws.send('/close 4000 bye'); }, j);
	await waitFor(page, (k) => T.clients[k].close, j, 15000);
	const u = await page.evaluate((k) => snapshot(k), j);
	const finalAck = proxy.log.filter((e) => e.method === 'GET' && /\/messages$/.test(e.path)).pop();
	const gone = await bridgeRequest('GET', '/v1/sessions/' + u.session + '/messages?after=4');
	ok(u.close && u.close.code === 4000 && u.close.reason === 'bye' && u.close.wasClean &&
		JSON.stringify(u.received.map((m) => m.data)) === '["last-1","1","2","3"]' &&
		finalAck && finalAck.after === '4' && finalAck.status === 200 && /"state":"closed"/.test(finalAck.body) && gone.status === 410,
		label + ': the upstream closes → the last 4 messages, one acknowledging poll, onclose(4000, "bye", clean); the session ended',
		{ close: u.close, received: u.received, gone: gone.status, events: u.events, errors: u.errors,
			requests: proxy.log.map((e) => [e.method, e.path.replace(/.*\//, ''), e.after, e.wait, e.max, e.sendSeq, e.status, e.body && e.body.slice(0, 160)].join(' ')) });

	ok(pageErrors.length === 0, label + ': no uncaught errors in the page', pageErrors);
	await page.close();
}

/* Falling back, and a session that vanishes under the client. */
async function extras(ctx, sse) {
	const pageErrors = [];
	const page = await newPage(ctx, [], pageErrors);

	/* transport 'auto' against a bridge whose /events answers 404. */
	proxy.reset();
	proxy.refuseEvents(true);
	const i = await page.evaluate(() => openClient({ wait: 10 }));
	await waitFor(page, (k) => T.clients[k].opened || T.clients[k].close, i, 10000);
	await waitFor(page, (k) => T.clients[k].ws.transport === 'poll' || T.clients[k].close, i, 10000);
	await page.evaluate((k) => { T.clients[k].ws.send('fb-1'); T.clients[k].ws.send('fb-2'); }, i);
	await waitFor(page, (k) => T.clients[k].received.length >= 2 || T.clients[k].close, i, 10000);
	await sleep(200);
	let s = await page.evaluate((k) => snapshot(k), i);
	const refused = proxy.log.filter((e) => e.refused).length;
	ok(s.transport === 'poll' && refused === 1 && JSON.stringify(s.received.map((m) => m.data)) === '["fb-1","fb-2"]' && !s.errors.length,
		'auto: a bridge without /events (404) → falls back to long polling, messages arrive once',
		{ transport: s.transport, refused, received: s.received, errors: s.errors });
	await page.evaluate((k) => T.clients[k].ws.close(), i);
	await waitFor(page, (k) => T.clients[k].close, i, 10000);
	s = await page.evaluate((k) => snapshot(k), i);
	ok(s.close && s.close.code === 1005 && s.close.wasClean, 'close() without a code → onclose(1005), as WebSocket', s.close);
	proxy.reset();

	/* The session ends behind the client's back (410): onerror, then onclose(1006). */
	for (const t of sse ? ['poll', 'sse'] : ['poll']) {
		const j = await page.evaluate((tr) => openClient({ transport: tr, wait: 10 }), t);
		await waitFor(page, (k) => T.clients[k].opened || T.clients[k].close, j, 10000);
		const id = (await page.evaluate((k) => snapshot(k), j)).session;
		const del = await bridgeRequest('DELETE', '/v1/sessions/' + id);
		await waitFor(page, (k) => T.clients[k].close, j, 15000);
		s = await page.evaluate((k) => snapshot(k), j);
		ok(del.status === 204 && s.close && s.close.code === 1006 && !s.close.wasClean && s.errors.length === 1 &&
			JSON.stringify(s.events) === '["open","error","close"]',
			t + ': the session is deleted under the client → onerror, onclose(1006, not clean)',
			{ del: del.status, close: s.close, events: s.events, errors: s.errors });
	}
	ok(pageErrors.length === 0, 'extras: no uncaught errors in the page', pageErrors);
	await page.close();
}

/* Start a bridge on a free port with extra flags; null if it will not start. */
function startBridge(extra) {
	return new Promise((resolve) => {
		const child = spawn(args['pb-bin'], ['--listen', '127.0.0.1:0', '--route', 'echo=ws://' + args.echo + '/',
			'--idle-timeout', '30'].concat(extra), { stdio: ['ignore', 'ignore', 'pipe'] });
		let err = '';
		const timer = setTimeout(() => { child.kill('SIGKILL'); resolve(null); }, 5000);
		child.on('error', () => { clearTimeout(timer); resolve(null); });
		child.on('exit', () => { clearTimeout(timer); resolve(null); });
		if (child.pid) fs.appendFileSync(args.pids, child.pid + '\n');
		child.stderr.setEncoding('utf8');
		child.stderr.on('data', (d) => {
			err += d;
			const m = /^listening on (\S+)$/m.exec(err);
			if (m) {
				clearTimeout(timer);
				child.stderr.resume();
				resolve({
					url: 'http://' + m[1],
					stop: () => new Promise((r) => {
						if (child.exitCode !== null) { r(); return; }
						child.on('exit', () => r());
						child.kill('SIGTERM');
						setTimeout(() => child.kill('SIGKILL'), 6000);
					}),
				});
			}
		});
	});
}

/* A page on another origin than the bridge: CORS (--cors-origin). */
async function crossOrigin(ctx, sse) {
	const cors = await startBridge(['--cors-origin', proxy.url]);
	if (!cors) { skip('cors not available (the bridge refuses --cors-origin)'); return; }
	const pageErrors = [];
	const page = await newPage(ctx, [], pageErrors);
	try {
		for (const t of sse ? ['poll', 'sse'] : ['poll']) {
			const prefix = 'cors-' + t + '-';
			const i = await page.evaluate(([tr, url]) => openClient({ transport: tr, wait: 10 }, url), [t, cors.url]);
			const opened = await waitFor(page, (k) => T.clients[k].opened || T.clients[k].close, i, 10000);
			if (opened) {
				await page.evaluate(([k, p, bin]) => new Promise((r) => sendNumbered(k, p, 10, [bin], r)), [i, prefix, BINARY]);
				await waitFor(page, (k) => T.clients[k].received.length >= 11 || T.clients[k].close, i, 15000);
				await sleep(200);
			}
			const closed = await page.evaluate((k) => new Promise((resolve) => {
				var ws = T.clients[k].ws;
				if (ws.readyState === 3) { resolve(snapshot(k)); return; }
				setTimeout(() => resolve(snapshot(k)), 10000);
				ws.addEventListener('close', () => resolve(snapshot(k)));
				ws.close(1000);
			}), i);
			const want = [];
			for (let k = 1; k <= 10; k++) want.push(prefix + k);
			want.push(JSON.stringify(BINARY));
			const got = closed.received.map((m) => (m.kind === 'arraybuffer' ? JSON.stringify(m.data) : m.data));
			ok(closed.transport === t && JSON.stringify(got) === JSON.stringify(want) && closed.close && closed.close.code === 1000 && closed.close.wasClean,
				'cors ' + t + ': a page on another origin (listed with --cors-origin) opens, gets 10 texts and a binary once, in order, and closes',
				{ transport: closed.transport, got, close: closed.close, errors: closed.errors });
		}
		/* The main bridge lists no origin: the page cannot use it. */
		const j = await page.evaluate((url) => openClient({ transport: 'poll' }, url), args.bridge);
		await waitFor(page, (k) => T.clients[k].close, j, 15000);
		const s = await page.evaluate((k) => snapshot(k), j);
		ok(s.close && s.close.code === 1006 && !s.opened && s.errors.length === 1,
			'cors: a bridge that does not list the page\'s origin cannot be used (onerror, onclose 1006)', s);
		ok(pageErrors.length === 0, 'cors: no uncaught errors in the page', pageErrors);
	} finally {
		await page.close();
		await cors.stop();
	}
}

/* The WebSocket conformance points, in a page where pollbridge.js found
 * the engine's EventTarget and event classes (native), or one where it did
 * not and uses its own (EventTarget, Event, MessageEvent, CloseEvent,
 * DOMException and URL hidden while it loads). */
async function conformance(ctx, native) {
	const pageErrors = [];
	const hide = native ? [] : ['EventTarget', 'Event', 'MessageEvent', 'CloseEvent', 'DOMException', 'URL', 'Reflect'];
	const page = await newPage(ctx, hide, pageErrors);
	const label = native ? 'ws api' : 'ws api (no EventTarget/Event/URL classes)';
	proxy.reset();
	let results;
	try {
		results = await page.evaluate(dropin.pageConformance, { origin: proxy.url, native });
	} catch (e) {
		results = [['the conformance checks ran', false, String(e)]];
	}
	for (const [desc, pass, detail] of results) ok(pass, label + ': ' + desc, detail);
	ok(pageErrors.length === 0, label + ': no uncaught errors in the page', pageErrors);
	await page.close();
}

/* An unchanged WebSocket chat page (chat.html) through PollBridge.install. */
async function chat(ctx) {
	const pageErrors = [];
	const page = await ctx.newPage();
	await page.addInitScript(() => { delete window.WebSocket; });
	page.on('pageerror', (e) => pageErrors.push(String(e)));
	proxy.reset();
	await page.goto(proxy.url + '/chat.html');
	const opened = await waitFor(page, () => state.opened || state.closed, null, 10000);
	await page.fill('#text', 'how are you?');
	await page.click('button');
	await waitFor(page, () => state.lines.length >= 2 || state.closed, null, 10000);
	const s = await page.evaluate(() => ({ lines: state.lines, url: ws.url, polyfill: !!WebSocket.PollBridge,
		readyState: ws.readyState, transport: ws.transport, errors: state.errors }));
	await page.evaluate(() => ws.close(1000, 'bye'));
	await waitFor(page, () => state.closed, null, 10000);
	const closed = await page.evaluate(() => state.closed);
	ok(opened && s.polyfill && s.url === 'wss://backend.example/chat' &&
		JSON.stringify(s.lines) === '["ann: hello","ann: how are you?"]' && s.errors === 0 &&
		closed && closed.code === 1000 && closed.wasClean && pageErrors.length === 0,
		'polyfill: an unchanged WebSocket chat page (new WebSocket("wss://backend.example/chat")) works through PollBridge.install and the minified build',
		{ s, closed, pageErrors });
	await page.close();
}

/* A page behind a real buffering proxy (nginx, in front of server.js): the
 * stream shows nothing, so the client switches to long polling within its
 * bound (streamTimeout, 5 s by default) and every message arrives once. */
async function bufferingProxy(ctx, tmpdir) {
	const ng = await dropin.startNginx(tmpdir, proxy.url.replace(/^http:\/\//, ''), args.pids);
	if (!ng || ng.error) { skip('buffering proxy: nginx not available' + (ng ? ' (' + ng.error.split('\n')[0] + ')' : '')); return; }
	const pageErrors = [];
	try {
		const page = await ctx.newPage();
		await page.addInitScript(() => { delete window.WebSocket; });
		page.on('pageerror', (e) => pageErrors.push(String(e)));
		proxy.reset();
		await page.goto(ng.url + '/');
		const n = 20;
		const t = await page.evaluate((count) => new Promise((resolve) => {
			var rec = { got: [], t0: 0, tSwitch: 0, fallback: null, transport0: null };
			var ws = new PollBridge(location.origin + '/echo');
			window.__buf = { ws: ws, rec: rec };
			ws.onopen = function () {
				rec.t0 = Date.now();
				setTimeout(function () { rec.transport0 = ws.transport; }, 0);
				for (var k = 1; k <= count; k++) ws.send('buf-' + k);
				(function watch() {
					if (ws.transport === 'poll') { rec.tSwitch = Date.now(); rec.fallback = ws.fallback; return; }
					setTimeout(watch, 20);
				}());
			};
			ws.onmessage = function (e) { rec.got.push(e.data); if (rec.got.length >= count) setTimeout(function () { resolve(rec); }, 300); };
			ws.onclose = function () { resolve(rec); };
			setTimeout(function () { resolve(rec); }, 15000);
		}), n);
		const want = Array.from({ length: n }, (_, k) => 'buf-' + (k + 1));
		const streams = proxy.log.filter((e) => /\/events$/.test(e.path));
		const elapsed = t.tSwitch - t.t0;
		ok(t.transport0 === 'sse' && t.tSwitch && elapsed <= 6000 && /no byte/.test(t.fallback || '') && streams.length >= 1 &&
			JSON.stringify(t.got) === JSON.stringify(want),
			'buffering proxy (nginx, proxy_buffering on): the stream showed nothing, the client switched to long polling after ' +
			(elapsed / 1000).toFixed(1) + ' s (bound 5 s) and got all ' + n + ' messages once, in order',
			{ transport0: t.transport0, elapsed, fallback: t.fallback, got: t.got.length, streams: streams.length, errors: pageErrors });
		await page.evaluate(() => window.__buf.ws.close());
		await page.close();
	} finally {
		await ng.stop();
	}
}

/* A proxy that passes the stream's first chunk and holds the rest: the
 * send path shows traffic, the stream nothing; a check finds the held
 * messages and the client switches, losing nothing. */
async function heldStream(ctx) {
	const pageErrors = [];
	const page = await newPage(ctx, [], pageErrors);
	proxy.reset();
	proxy.holdStream(true);
	const n = 10;
	const t = await page.evaluate((count) => new Promise((resolve) => {
		var rec = { got: [], t0: 0, tSwitch: 0, fallback: null, transport0: null };
		var ws = new PollBridge(location.origin + '/echo', [], { streamTimeout: 2000 });
		window.__held = ws;
		ws.onopen = function () {
			rec.t0 = Date.now();
			setTimeout(function () { rec.transport0 = ws.transport; }, 0);
			for (var k = 1; k <= count; k++) ws.send('held-' + k);
			(function watch() {
				if (ws.transport === 'poll') { rec.tSwitch = Date.now(); rec.fallback = ws.fallback; return; }
				setTimeout(watch, 20);
			}());
		};
		ws.onmessage = function (e) { rec.got.push(e.data); if (rec.got.length >= count) setTimeout(function () { resolve(rec); }, 300); };
		setTimeout(function () { resolve(rec); }, 10000);
	}), n);
	proxy.holdStream(false);
	const want = Array.from({ length: n }, (_, k) => 'held-' + (k + 1));
	const elapsed = t.tSwitch - t.t0;
	ok(t.transport0 === 'sse' && t.tSwitch && elapsed <= 3000 && /held back/.test(t.fallback || '') &&
		JSON.stringify(t.got) === JSON.stringify(want) && proxy.log.some((e) => e.held),
		'held stream (first chunk passed, the rest held; sends answered): checked after streamTimeout, switched to long polling after ' +
		(elapsed / 1000).toFixed(1) + ' s, all ' + n + ' messages once, in order',
		{ transport0: t.transport0, elapsed, fallback: t.fallback, got: t.got });
	await page.evaluate(() => window.__held.close());
	ok(pageErrors.length === 0, 'held stream: no uncaught errors in the page', pageErrors);
	await page.close();
}

/* Run a program; resolves {code, out} (stdout and stderr together). */
function run(cmd, argv, opts) {
	return new Promise((resolve) => {
		const child = spawn(cmd, argv, Object.assign({ stdio: ['ignore', 'pipe', 'pipe'] }, opts || {}));
		let out = '';
		child.stdout.on('data', (d) => { out += d; });
		child.stderr.on('data', (d) => { out += d; });
		child.on('error', (e) => resolve({ code: -1, out: String(e) }));
		child.on('close', (code) => resolve({ code, out }));
	});
}

/* The package: npm pack lists the files, the .d.ts type-checks a usage
 * file, the minified build parses as ES3 and is what the build script
 * makes from pollbridge.js today. Runs beside the browser checks (tsc is
 * slow); returns a function that prints the TAP lines. */
async function packaging(tmpdir) {
	const lines = [];
	const pkg = JSON.parse(fs.readFileSync(path.join(dropin.JSDIR, 'package.json'), 'utf8'));
	const files = ['pollbridge.js', 'pollbridge.min.js', 'pollbridge.d.ts', 'README.md', 'package.json'];
	const tsc = path.join(dropin.UPSTREAM_MODULES, 'typescript', 'bin', 'tsc');
	const dir = path.join(tmpdir, 'ts');
	fs.mkdirSync(dir, { recursive: true });
	fs.writeFileSync(path.join(dir, 'usage.ts'), [
		"import PollBridge = require('" + path.join(dropin.JSDIR, 'pollbridge') + "');",
		"const ws = new PollBridge('wss://bridge.example/chat', ['chat.v1'], { transport: 'auto', streamTimeout: 3000 });",
		"ws.binaryType = 'arraybuffer';",
		"ws.onmessage = (e: MessageEvent) => { const d: string | ArrayBuffer | Blob = e.data; console.log(d, e.origin); };",
		"ws.addEventListener('close', (e) => { const c: number = e.code; const w: boolean = e.wasClean; console.log(c, w); }, { once: true });",
		"ws.onopen = () => ws.send(new Uint8Array([1, 2]));",
		"const state: number = ws.readyState === PollBridge.OPEN ? ws.bufferedAmount : PollBridge.CLOSED;",
		"const old = new PollBridge('https://bridge.example', 'chat', { protocols: 'x' });",
		"const installed: boolean = PollBridge.install({ map: { 'wss://backend.example/chat': 'https://bridge.example/chat' }, force: false });",
		"const w2: WebSocket = new WebSocket('wss://backend.example/chat');",
		"old.close(1000, 'done'); console.log(state, installed, w2, ws.transport, ws.fallback);",
		'',
	].join('\n'));
	const rebuilt = path.join(tmpdir, 'rebuilt.min.js');
	const [pack, ts, build] = await Promise.all([
		run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dropin.JSDIR,
			env: Object.assign({}, process.env, { npm_config_cache: path.join(tmpdir, 'npm-cache'), npm_config_update_notifier: 'false' }) }),
		fs.existsSync(tsc) ? run(process.execPath, [tsc, '--noEmit', '--strict', '--lib', 'es2017,dom', '--module', 'commonjs',
			path.join(dir, 'usage.ts')]) : Promise.resolve(null),
		run(process.execPath, [path.join(dropin.JSDIR, 'build.js'), '--out', rebuilt]),
	]);
	let listed = [];
	try { listed = JSON.parse(pack.out.slice(pack.out.indexOf('['))) [0].files.map((f) => f.path); } catch (e) { /* below */ }
	lines.push([pack.code === 0 && pkg.main === 'pollbridge.js' && pkg.types === 'pollbridge.d.ts' &&
		files.every((f) => listed.includes(f)) && listed.length === files.length,
		'package: npm pack lists ' + files.join(', '), { listed, out: pack.code ? pack.out.slice(0, 400) : '', main: pkg.main, types: pkg.types }]);
	if (ts === null) lines.push(null);
	else lines.push([ts.code === 0, 'package: pollbridge.d.ts type-checks a usage file (tsc --noEmit --strict)', ts.out]);
	let minErr = null;
	try {
		acorn.parse(fs.readFileSync(path.join(dropin.JSDIR, 'pollbridge.min.js'), 'utf8'), { ecmaVersion: 3, allowReserved: 'never' });
	} catch (e) { minErr = 'does not parse as ES3: ' + e.message; }
	const fresh = build.code === 0 && fs.readFileSync(rebuilt, 'utf8') === fs.readFileSync(path.join(dropin.JSDIR, 'pollbridge.min.js'), 'utf8');
	lines.push([!minErr && fresh, 'package: pollbridge.min.js parses as ES3 and is up to date (build.js, terser, rebuilds it identically)',
		minErr || (build.code ? build.out : 'stale: run `npm run build` in contrib/js')]);
	return () => {
		for (const l of lines) {
			if (l === null) skip('package: typescript not installed');
			else ok(l[0], l[1], l[2]);
		}
	};
}

let proxy;
async function main() {
	/* The client's syntax: plain ES3/ES5. */
	const src = fs.readFileSync(CLIENT, 'utf8');
	let parseError = null;
	try { acorn.parse(src, { ecmaVersion: 3, allowReserved: 'never' }); } catch (e) { parseError = e.message; }
	ok(parseError === null, 'pollbridge.js parses as ECMAScript 3 (no ES2015+ syntax, no reserved-word properties)', parseError || '');

	const tmpdir = path.join(path.dirname(args.profile), 'dropin');
	fs.mkdirSync(tmpdir, { recursive: true });
	const packaged = packaging(tmpdir);

	proxy = await server.start(args.bridge);
	const browser = await chromium.launchPersistentContext(args.profile, {
		executablePath: args.chromium,
		headless: true,
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
	try {
		note('chromium ' + browser.browser().version() + ', playwright-core ' + req('playwright-core/package.json').version);
		const t0 = Date.now();
		const lap = (what) => note(what + ' done at ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s');
		await scenario(browser, 'poll', [], 'poll');
		lap('poll');
		const sse = await sseAvailable();
		if (sse) {
			await scenario(browser, 'sse', [], 'sse');
			lap('sse');
		} else {
			skip('sse not available (GET /v1/sessions/<id>/events does not answer 200 text/event-stream)');
		}
		await extras(browser, sse);
		lap('extras');
		await crossOrigin(browser, sse);
		lap('cors');
		/* An old engine: no WebSocket, EventSource, typed arrays or JSON (IE7-like). */
		await scenario(browser, 'auto', ['EventSource', 'ArrayBuffer', 'Uint8Array', 'JSON'], 'old-engine');
		lap('old-engine');
		await conformance(browser, true);
		lap('conformance');
		await conformance(browser, false);
		lap('conformance (fallbacks)');
		await chat(browser);
		lap('chat');
		if (sse) {
			await heldStream(browser);
			lap('held stream');
			await bufferingProxy(browser, tmpdir);
			lap('nginx');
		} else {
			skip('buffering proxies: no event stream');
		}
	} finally {
		await browser.close().catch(() => {});
		await proxy.close();
	}
	(await packaged)();
}

const deadline = setTimeout(() => {
	console.log('Bail out! the browser test did not finish within 110 s');
	process.exit(1);
}, 110000);
main().then(() => {
	clearTimeout(deadline);
	console.log('1..' + count);
	process.exit(failed ? 1 : 0);
}, (e) => {
	console.log('Bail out! ' + String(e && e.stack || e).split('\n')[0]);
	for (const line of String(e && e.stack).split('\n').slice(1, 8)) console.log('# ' + line);
	process.exit(1);
});
