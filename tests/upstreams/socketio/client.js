'use strict';
/*
 * client.js: drives the real socket.io-client (4.x, or 2.x for Engine.IO v3)
 * with transports: ['polling'] against the chat of chat_common.js /
 * flask_chat.py, either straight at the server (started with --polling) or
 * through pollbridge's Engine.IO door, and prints one TAP line per check
 * ("ok - ..." / "not ok - ...", unnumbered: the caller numbers them) and
 * "# ..." diagnostics. Exit status 0 if every check passed.
 *
 *   node client.js --client 4|2 --url http://HOST:PORT [--path /socket.io/]
 *        [--label NAME] [--scenarios a,b,...] [--limit N] [--extra-headers JSON]
 *
 * Scenarios (default: all but mismatch and failover):
 *   connect    the session is a polling one and says what the server stated
 *   rooms      join/leave; a room message reaches its members only
 *   broadcast  a broadcast reaches each of several clients exactly once
 *   ack        acknowledgements, one and 20 concurrent, multi-byte text
 *   binary     bytes client -> server (length and checksum acked, echoed
 *              back) and server -> client (a known pattern)
 *   kick       server-initiated disconnect: reason 'io server disconnect',
 *              no reconnection
 *   order      500 numbered messages each way, at once: every one exactly
 *              once and in order
 *   payload    a message below the limit echoes; one above it is refused as
 *              the real stack refuses it: the POST is answered 413 (engine.io
 *              also closes the session), the client disconnects with
 *              'transport error' or 'transport close', whichever it sees
 *              first, and reconnects by itself; the message never reaches
 *              the chat. The limit is the handshake's maxPayload (v4) or
 *              --limit N (v2, whose handshake has none)
 *   mismatch   the connection must fail (connect_error) within 15 s, not
 *              hang: a v2 client on a route whose server speaks only v4
 *   failover   with --redis-port P --kill ID=PID,ID=PID: two clients chat
 *              through a balancer, the bridge instance that owns the first
 *              client's session (HGET pb:{sid}:m owner) is SIGKILLed, both
 *              clients reconnect by themselves (new sessions) and the chat
 *              goes on
 */
const http = require('http');
const path = require('path');
const { spawnSync } = require('child_process');

const args = { client: '4', path: '/socket.io/', label: '', scenarios: '', limit: '0' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const nm = process.env.PB_NODE_MODULES || path.join(__dirname, '..', 'node', 'node_modules');
const V2 = args.client === '2';
const io = require(path.join(nm, V2 ? 'socket.io-client-v2' : 'socket.io-client'));
const LABEL = args.label ? args.label + ': ' : '';

/* ---- TAP ---- */
let failed = 0;
function ok(cond, desc, diag, todo) {
	if (!cond && !todo) failed++;
	console.log((cond ? 'ok' : 'not ok') + ' - ' + LABEL + desc + (todo ? ' # TODO ' + todo : ''));
	if (!cond && diag !== undefined) {
		const text = typeof diag === 'string' ? diag : JSON.stringify(diag);
		for (const line of text.split('\n').slice(0, 10)) console.log('# ' + line.slice(0, 300));
	}
	return cond;
}
const note = (s) => console.log('# ' + LABEL + s);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---- socket helpers ---- */
const sockets = new Set();

/* A new socket (not yet connected); opts are merged over the defaults. */
function socket(opts) {
	const o = Object.assign({
		path: args.path,
		transports: ['polling'],
		forceNew: true,
		reconnection: false,
		timeout: 10000,
	}, args['extra-headers'] ? { extraHeaders: JSON.parse(args['extra-headers']) } : {}, opts || {});
	const s = io(args.url, o);
	sockets.add(s);
	return s;
}

/* Resolve with the event's arguments (an array), or null after ms. */
function once(s, ev, ms) {
	return new Promise((resolve) => {
		const t = setTimeout(() => { s.off(ev, h); resolve(null); }, ms);
		function h(...a) { clearTimeout(t); resolve(a); }
		s.once(ev, h);
	});
}

/* Connect a socket; resolve with it once connected, or null (diagnosed). */
async function connected(opts, what) {
	const s = socket(opts);
	const r = await Promise.race([once(s, 'connect', 15000), once(s, 'connect_error', 15000).then((e) => ({ err: e }))]);
	if (!r || r.err) {
		ok(false, 'connect ' + (what || ''), r && r.err ? String(r.err[0] && (r.err[0].message || r.err[0])) : 'timed out');
		s.close();
		return null;
	}
	return s;
}

/* emit with an acknowledgement: resolve with the ack's first argument, or
 * the symbol TIMEOUT after ms (ackT) or 10 s (ack). */
const TIMEOUT = Symbol('timeout');
const ack = (s, ev, ...a) => ackT(s, 10000, ev, ...a);
function ackT(s, ms, ev, ...a) {
	return new Promise((resolve) => {
		const t = setTimeout(() => resolve(TIMEOUT), ms);
		s.emit(ev, ...a, (r) => { clearTimeout(t); resolve(r); });
	});
}

/* Collect every ev on s into an array (returned); stop() detaches. */
function collect(s, ev) {
	const got = [];
	const h = (...a) => got.push(a.length === 1 ? a[0] : a);
	s.on(ev, h);
	got.stop = () => s.off(ev, h);
	return got;
}

/* A plain GET of path (with query) on --url: {status, body}. */
function get(p) {
	const u = new URL(args.url);
	return new Promise((resolve) => {
		const r = http.get({ host: u.hostname, port: u.port, path: p }, (res) => {
			let body = '';
			res.setEncoding('utf8');
			res.on('data', (c) => { body += c; });
			res.on('end', () => resolve({ status: res.statusCode, body }));
		});
		r.on('error', (e) => resolve({ status: 0, body: String(e) }));
		r.setTimeout(5000, () => r.destroy());
	});
}

/* Wait until cond() or ms. */
async function until(cond, ms) {
	const end = Date.now() + ms;
	while (!cond() && Date.now() < end) await sleep(20);
	return cond();
}

const engineOf = (s) => (V2 ? s.io.engine : s.io.engine);
const transportOf = (s) => engineOf(s) && engineOf(s).transport && engineOf(s).transport.name;
const toBuf = (b) => (Buffer.isBuffer(b) ? b : b instanceof ArrayBuffer ? Buffer.from(b) : Buffer.from(b || []));
function csum(buf) {
	let s = 0;
	for (const b of buf) s = (s * 31 + b) >>> 0;
	return s;
}
const uniq = () => Math.random().toString(36).slice(2, 10);

/* ---- scenarios ---- */
const scenarios = {};

scenarios.connect = async () => {
	const s = await connected({}, 'connect');
	if (!s) return;
	const e = engineOf(s);
	ok(transportOf(s) === 'polling', 'the session uses the polling transport', transportOf(s));
	ok(typeof e.id === 'string' && e.id.length > 0, 'the handshake gave a sid');
	const up = V2 ? e.upgrades : e._upgrades;
	ok(Array.isArray(up) && up.length === 0, 'the handshake offers no upgrade', up);
	note('sid ' + e.id + ' pingInterval ' + (V2 ? e.pingInterval : e._pingInterval) +
		' pingTimeout ' + (V2 ? e.pingTimeout : e._pingTimeout) +
		(V2 ? '' : ' maxPayload ' + e._maxPayload));
	s.close();
};

scenarios.rooms = async () => {
	const [a, b, c] = await Promise.all([connected({}, 'A'), connected({}, 'B'), connected({}, 'C')]);
	if (!a || !b || !c) return;
	const r1 = 'r1-' + uniq(), r2 = 'r2-' + uniq();
	const joins = await Promise.all([ack(a, 'join', r1), ack(b, 'join', r1), ack(c, 'join', r2)]);
	ok(joins[0].room === r1 && joins[1].room === r1 && joins[2].room === r2, 'join is acknowledged', joins);
	const ga = collect(a, 'said'), gb = collect(b, 'said'), gc = collect(c, 'said');
	a.emit('say', { room: r1, text: 'hello r1' });
	c.emit('say', { room: r2, text: 'hello r2' });
	await until(() => ga.length >= 1 && gb.length >= 1 && gc.length >= 1, 5000);
	await sleep(300);
	const texts = (g) => g.map((m) => m.room + ':' + m.text).join(',');
	ok(texts(ga) === r1 + ':hello r1', 'a room message reaches its sender', texts(ga));
	ok(texts(gb) === r1 + ':hello r1', 'a room message reaches the other member', texts(gb));
	ok(texts(gc) === r2 + ':hello r2', 'a room message does not reach a non-member', texts(gc));
	const who = await ack(a, 'whoami');
	ok(ga.length && who && ga[0].from === who.id, 'the message says who sent it', { msg: ga[0], who });
	/* socket.io 2 takes socket.id from the Engine.IO sid, which the bridge
	 * replaces with its own; socket.io 4 sends the id in its CONNECT packet. */
	ok(who && a.id === who.id, "the client's socket.id is the server's", { client: a.id, server: who && who.id },
		V2 && args.bridge === '1' ? 'socket.io 2 derives socket.id from the Engine.IO sid, which the bridge replaces' : undefined);
	const left = await ack(b, 'leave', r1);
	ok(left && left.room === r1, 'leave is acknowledged');
	a.emit('say', { room: r1, text: 'after leave' });
	await until(() => ga.length >= 2, 5000);
	await sleep(300);
	ok(ga.length === 2 && gb.length === 1, 'a member that left gets no more room messages', { a: texts(ga), b: texts(gb) });
	for (const s of [a, b, c]) s.close();
};

scenarios.broadcast = async () => {
	const n = 4;
	const ss = await Promise.all(Array.from({ length: n }, (_, i) => connected({}, 'client ' + i)));
	if (ss.some((s) => !s)) return;
	const tag = 'shout-' + uniq();
	const gots = ss.map((s) => collect(s, 'shouted'));
	ss[1].emit('shout', tag + '-1');
	ss[2].emit('shout', tag + '-2');
	const mine = (g) => g.filter((m) => m.text.startsWith(tag)).map((m) => m.text).sort().join(',');
	await until(() => gots.every((g) => mine(g) === tag + '-1,' + tag + '-2'), 5000);
	await sleep(300);
	ok(gots.every((g) => mine(g) === tag + '-1,' + tag + '-2'),
		'two broadcasts reach each of ' + n + ' clients exactly once', gots.map(mine));
	for (const s of ss) s.close();
};

scenarios.ack = async () => {
	const s = await connected({}, 'ack');
	if (!s) return;
	const obj = { a: 1, s: 'héllo ✓ 😀 "quoted" \\ back\nslash', arr: [1, 2, 3], nested: { t: true, n: null } };
	const r = await ack(s, 'echo', obj);
	ok(JSON.stringify(r) === JSON.stringify(obj), 'an acknowledgement carries the answer (multi-byte text)', r);
	const many = await Promise.all(Array.from({ length: 20 }, (_, i) => ack(s, 'echo', { i, t: 'x'.repeat(i * 10) })));
	ok(many.every((m, i) => m && m.i === i && m.t.length === i * 10), '20 concurrent acknowledgements each get their own answer');
	const text = ('αβγ 😀 ' + 'z').repeat(500);
	const r2 = await ack(s, 'echo', text);
	ok(r2 === text, 'a 4500-character multi-byte text round-trips', typeof r2 === 'string' ? r2.length : r2);
	s.close();
};

scenarios.binary = async () => {
	const s = await connected({}, 'binary');
	if (!s) return;
	const out = Buffer.alloc(1000);
	for (let i = 0; i < out.length; i++) out[i] = (i * 13 + 5) & 255;
	const echo = once(s, 'bin', 10000);
	const r = await ack(s, 'bin', out);
	ok(r && r.len === out.length && r.sum === csum(out), 'binary client -> server arrives intact (length and checksum)', r);
	const e = await echo;
	ok(e && toBuf(e[0]).equals(out), 'binary echoed server -> client is identical', e && toBuf(e[0]).length);
	const pat = once(s, 'pattern', 10000);
	const n = await ack(s, 'pattern', 4096);
	const p = await pat;
	const want = Buffer.alloc(4096);
	for (let i = 0; i < want.length; i++) want[i] = (i * 7 + 3) & 255;
	ok(n === 4096 && p && toBuf(p[0]).equals(want), 'binary server -> client (4096 bytes) is intact', p && toBuf(p[0]).length);
	const empty = await ack(s, 'bin', Buffer.alloc(0));
	ok(empty && empty.len === 0, 'an empty binary attachment arrives', empty);
	s.close();
};

scenarios.kick = async () => {
	/* Four sockets kicked at once: a race between the DISCONNECT packet and
	 * the end of the session shows up in one of them more often. */
	const rc = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 };
	const ss = await Promise.all([0, 1, 2, 3].map((i) => connected(rc, 'kick ' + i)));
	if (ss.some((s) => !s)) return;
	const sids = ss.map((s) => engineOf(s).id);
	let reconnects = 0;
	const ds = ss.map((s) => once(s, 'disconnect', 10000));
	for (const s of ss) s.on('connect', () => reconnects++);
	for (const s of ss) s.emit('kick');
	const rs = await Promise.all(ds);
	ok(rs.every((r) => r && r[0] === 'io server disconnect'),
		'a server-side disconnect reaches each of 4 clients as "io server disconnect"',
		rs.map((r, i) => ({ got: r && r[0], sid: sids[i] })).filter((x) => x.got !== 'io server disconnect'));
	await sleep(700);
	ok(reconnects === 0 && ss.every((s) => !s.connected), 'and the clients do not reconnect', reconnects);
	/* The sessions are over: their sids are unknown now (400; through the
	 * bridge with engine.io's own body). */
	let g;
	for (let i = 0; i < 30; i++) {
		g = await get(args.path + '?EIO=' + (V2 ? 3 : 4) + '&transport=polling&t=k' + i + '&sid=' + encodeURIComponent(sids[0]));
		if (g.status === 400) break;
		await sleep(100);
	}
	ok(g.status === 400 && (args.bridge !== '1' || /"code":1\b.*Session ID unknown/.test(g.body)),
		'afterwards the sid is unknown: 400' + (args.bridge === '1' ? ' {"code":1,"message":"Session ID unknown"}' : ''),
		{ status: g.status, body: g.body.slice(0, 200) });
	for (const s of ss) s.close();
};

scenarios.order = async () => {
	const s = await connected({}, 'order');
	if (!s) return;
	const N = 500;
	const got = collect(s, 'n');
	s.emit('count', N);
	for (let i = 0; i < N; i++) s.emit('up', i);
	const ups = await ackT(s, 20000, 'upcheck');
	await until(() => got.length >= N, 20000);
	await sleep(300);
	const inOrder = (l) => Array.isArray(l) && l.length === N && l.every((v, i) => v === i);
	ok(inOrder(got), N + ' server -> client messages, each exactly once and in order',
		{ len: got.length, first_bad: got.findIndex((v, i) => v !== i) });
	ok(inOrder(ups), N + ' client -> server messages, each exactly once and in order',
		ups === TIMEOUT ? 'upcheck timed out' : { len: ups.length, first_bad: ups.findIndex((v, i) => v !== i) });
	s.close();
};

scenarios.payload = async () => {
	const s = await connected({ reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300 }, 'payload');
	if (!s) return;
	/* --limit N: the bridge's limit; with --bridge 1 the handshake must state
	 * a maxPayload no larger (v4). Straight at a server, a v4 handshake
	 * without maxPayload (Flask-SocketIO) falls back to --limit. */
	let limit = Number(args.limit);
	if (!V2) {
		const mp = engineOf(s)._maxPayload;
		if (args.bridge === '1')
			ok(Number.isInteger(mp) && mp > 0 && (!limit || mp <= limit),
				'the handshake states a maxPayload no larger than the bridge limit', { mp, limit });
		if (Number.isInteger(mp) && mp > 0 && (!limit || mp < limit)) limit = mp;
	}
	if (!limit) { ok(false, 'a limit to test against (--limit)'); s.close(); return; }
	note('limit ' + limit);
	const below = 'b'.repeat(Math.floor(limit * 0.9) - 64);
	const echo = once(s, 'big', 15000);
	const r = await ackT(s, 15000, 'big', below);
	const e = await echo;
	ok(r === below.length, 'a message just below the limit (' + below.length + ' chars) reaches the server', r);
	ok(e && e[0] === below, 'and comes back intact');
	const first = engineOf(s).id;
	const disc = once(s, 'disconnect', 15000);
	const above = 'a'.repeat(limit + 1024);
	const ra = ackT(s, 3000, 'big', above);
	const d = await disc;
	/* engine.io answers the POST 413 and closes the session: the client sees
	 * the failed POST ("transport error") or the closed session ("transport
	 * close"), whichever comes first. */
	ok(d && (d[0] === 'transport error' || d[0] === 'transport close'),
		'a message above the limit ends the session (transport error or close)', d);
	if (d) note('above the limit: ' + JSON.stringify(d).slice(0, 200));
	const re = await once(s, 'connect', 15000);
	ok(re && engineOf(s).id !== first, 'and reconnects by itself in a new session', re ? engineOf(s).id : 'no reconnect');
	ok((await ra) === TIMEOUT, 'the message above the limit never reached the chat');
	const again = await ack(s, 'echo', 'still here');
	ok(again === 'still here', 'the new session works');
	s.close();
};

scenarios.mismatch = async () => {
	const s = socket({});
	const t0 = Date.now();
	const r = await Promise.race([once(s, 'connect', 15000).then((x) => (x ? 'connected' : null)),
		once(s, 'connect_error', 15000).then((x) => (x ? { err: x[0] } : null))]);
	const ms = Date.now() - t0;
	ok(r && r.err, 'a client whose protocol version the server refuses gets connect_error, not a hang',
		r === null ? 'nothing within 15 s' : r);
	if (r && r.err) note('error after ' + ms + ' ms: ' + String(r.err.message || r.err) +
		(r.err.description !== undefined ? ' (' + JSON.stringify(r.err.description).slice(0, 200) + ')' : ''));
	ok(ms < 12000, 'within 12 s', ms);
	s.close();
	if (args.bridge === '1') {
		/* The handshake is answered as Engine.IO answers a version it does
		 * not serve. */
		const g = await get(args.path + '?EIO=3&transport=polling&t=mm');
		ok(g.status === 400 && /"code":5\b/.test(g.body) && /Unsupported protocol version/.test(g.body),
			'the handshake is answered 400 {"code":5,"message":"Unsupported protocol version"}', g);
	}
};

scenarios.failover = async () => {
	const kill = {};
	for (const kv of (args.kill || '').split(',').filter(Boolean)) {
		const [id, pid] = kv.split('=');
		kill[id] = Number(pid);
	}
	const rc = { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 1000 };
	const [a, b] = await Promise.all([connected(rc, 'A'), connected(rc, 'B')]);
	if (!a || !b) return;
	const room = 'fo-' + uniq();
	for (const s of [a, b]) s.on('connect', () => s.emit('join', room));
	await Promise.all([ack(a, 'join', room), ack(b, 'join', room)]);
	const gb = collect(b, 'said');
	const ga = collect(a, 'said');
	for (let i = 0; i < 20; i++) a.emit('say', { room, text: 'before ' + i });
	await until(() => gb.length >= 20, 10000);
	ok(gb.length === 20 && gb.every((m, i) => m.text === 'before ' + i),
		'chat through the balancer: 20 room messages arrive once, in order', gb.map((m) => m.text));
	/* Sessions are shared: every request may land on either instance. */
	const order = await (async () => {
		const got = collect(b, 'n');
		b.emit('count', 200);
		await until(() => got.length >= 200, 15000);
		got.stop();
		return got;
	})();
	ok(order.length === 200 && order.every((v, i) => v === i), '200 messages through the balancer, in order', order.length);
	const sid = engineOf(a).id;
	const q = spawnSync('redis-cli', ['-p', args['redis-port'], 'HGET', 'pb:{' + sid + '}:m', 'owner'], { encoding: 'utf8' });
	const owner = (q.stdout || '').trim();
	ok(owner in kill, 'the store names the owner of the session', { sid, owner, err: q.stderr });
	if (!(owner in kill)) { a.close(); b.close(); return; }
	note('SIGKILL ' + owner + ' (pid ' + kill[owner] + '), owner of ' + sid);
	const da = once(a, 'disconnect', 30000);
	const t0 = Date.now();
	process.kill(kill[owner], 'SIGKILL');
	const d = await da;
	ok(d !== null, 'the client notices that its session is gone', d);
	if (d) note('disconnect after ' + (Date.now() - t0) + ' ms: ' + d[0]);
	const back = await until(() => a.connected && b.connected && engineOf(a).id !== sid, 30000);
	ok(back, 'the client reconnects by itself in a new session', { a: a.connected, b: b.connected, id: engineOf(a).id });
	if (back) note('both connected again after ' + (Date.now() - t0) + ' ms');
	await sleep(300);
	const before = gb.length;
	const beforeA = ga.length;
	for (let i = 0; i < 20; i++) a.emit('say', { room, text: 'after ' + i });
	await until(() => gb.length >= before + 20 && ga.length >= beforeA + 20, 10000);
	const after = gb.slice(before).map((m) => m.text);
	ok(after.length === 20 && after.every((t, i) => t === 'after ' + i), 'the chat goes on: 20 more room messages arrive once, in order', after);
	const r = await ack(b, 'echo', 'ok?');
	ok(r === 'ok?', 'acknowledgements work after the failover');
	/* The survivor adopted the dead instance's session and closed it: the
	 * old sid is unknown. */
	let g;
	for (let i = 0, end = Date.now() + 20000; Date.now() < end; i++) {
		g = await get(args.path + '?EIO=' + (V2 ? 3 : 4) + '&transport=polling&t=f' + i + '&sid=' + encodeURIComponent(sid));
		if (g.status === 400) break;
		await sleep(100);
	}
	ok(g.status === 400 && /Session ID unknown/.test(g.body), 'the old session is closed: its sid is unknown',
		{ status: g.status, body: g.body.slice(0, 200) });
	a.close();
	b.close();
};

(async () => {
	const def = ['connect', 'rooms', 'broadcast', 'ack', 'binary', 'kick', 'order', 'payload'];
	const list = args.scenarios ? args.scenarios.split(',') : def;
	for (const name of list) {
		if (!scenarios[name]) { ok(false, 'unknown scenario ' + name); continue; }
		const t0 = Date.now();
		try {
			await scenarios[name]();
		} catch (e) {
			ok(false, name + ' threw', String(e && e.stack || e));
		}
		note(name + ' took ' + (Date.now() - t0) + ' ms');
	}
	for (const s of sockets) s.close();
	process.exit(failed ? 1 : 0);
})();
setTimeout(() => { ok(false, 'client.js timed out'); process.exit(1); }, Number(process.env.PB_SIO_TIMEOUT_MS || 120000)).unref();
