'use strict';
/*
 * balancer.js: two pollbridge instances on one Redis behind HAProxy or
 * nginx (round-robin, no stickiness), a sockjs-client 1.6.1 session through
 * it, and a SIGKILL of the instance that owns the session's upstream
 * connection. Prints TAP. Started by balancer.sh:
 *
 *   node balancer.js --pb-bin PATH --upstreams DIR --tmp DIR
 *                    [--deps DIR --chromium PATH] [--lb haproxy|nginx --nginx PATH]
 *
 * With --lb nginx the balancer runs the shipped contrib/lb/nginx.conf, only
 * its addresses replaced (nginxConfig()).
 *
 * The client: sockjs-client's node build for xhr-polling; headless Chromium
 * (playwright-core from --deps, window.WebSocket deleted) for xhr-streaming,
 * eventsource and jsonp-polling. (The node build cannot do the streaming
 * case: its http driver listens for 'end' only, so a response cut by the
 * owner's death leaves it waiting forever; a browser's XHR and EventSource
 * see the error and reconnect.) The Chromium cases are skipped (with the
 * reason) when Chromium cannot start, unless PB_BROWSER_REQUIRED=1.
 * It starts everything itself on loopback: redis-server, an npm `ws` echo
 * upstream that logs what it receives (watch_upstream.js --messages), bridges A and B (--store redis,
 * route `echo=ws://.../ sockjs=/echo redial`), and haproxy with a generated
 * config (per-request round-robin; health checks every 200 ms; a request
 * whose server died before answering is retried on the other one:
 * `retry-on conn-failure empty-response`, `option redispatch`, but never a
 * POST that sends, as in contrib/lb/haproxy.cfg).
 *
 * Per transport: the client sends numbered messages every 10 ms; once 100
 * echoes are back, it stops until no send is in flight, the owner (the
 * bridge holding the TCP connection this session's messages reach the
 * upstream on: the upstream logs its port, `ss -tnp` names the process) is
 * killed with SIGKILL, and sending goes on to $N. For xhr-streaming and
 * htmlfile, whose session sockjs-client ends when its stream is cut, the
 * stream is first rolled over (padding messages, echoed but not counted)
 * until it runs on the other bridge. Checked: requests reached both instances before the kill; the session
 * survives (no close) and every message is echoed once, in order, except
 * possibly echoes that were on their way at the kill: messages the upstream
 * received on the killed owner's connection (told from the upstream's log,
 * not from the client's count of sends, which is read tens of ms before the
 * kill), whose echo went back to the dying instance. SockJS has no
 * acknowledgements, so what the killed instance held or was writing is lost
 * (docs/API.md); the upstream was re-dialled by the survivor. Observed timings are printed
 * as comments. The killed instance is restarted (same port) for the next
 * transport.
 */
const fs = require('fs');
const path = require('path');
const net = require('net');
const http = require('http');
const { spawn, execFileSync, spawnSync } = require('child_process');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const MODULES = path.join(args.upstreams, 'node', 'node_modules');
const SockJS = require(path.join(MODULES, 'sockjs-client'));
const N = Number(process.env.PB_SOCKJS_LB_N || 400);
const KILL_AT = 100;
const TRANSPORTS = (process.env.PB_SOCKJS_LB_NODE ?? 'xhr-polling').split(/\s+/).filter(Boolean);
const BROWSER_TRANSPORTS = (process.env.PB_SOCKJS_LB_CHROMIUM ?? 'xhr-streaming eventsource jsonp-polling').split(/\s+/).filter(Boolean);
/* The balancer: haproxy (a config generated here) or nginx (the shipped
 * contrib/lb/nginx.conf, its addresses replaced). */
const LB = args.lb || 'haproxy';
/* Transports whose session sockjs-client ends when its stream is cut. */
const STREAM_CUT_ENDS = ['xhr-streaming', 'htmlfile'];

/* ---- TAP ---- */
let count = 0, failed = 0;
function ok(cond, desc, diag) {
	count++;
	if (!cond) failed++;
	console.log((cond ? 'ok ' : 'not ok ') + count + ' - ' + desc);
	if (!cond && diag !== undefined) {
		const text = typeof diag === 'string' ? diag : JSON.stringify(diag, null, 1);
		for (const line of text.split('\n').slice(0, 30)) console.log('# ' + line);
	}
	return cond;
}
function note(s) { console.log('# ' + s); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---- processes ---- */
const procs = [];
function freePort() {
	return new Promise((resolve) => {
		const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
	});
}
/* Start a process logging to tmp/NAME.log; resolve once `ready` matches
 * its output (or reject after ms). */
function start(name, cmd, argv, ready, ms) {
	const log = path.join(args.tmp, name + '.log');
	const fd = fs.openSync(log, 'a');
	const p = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
	fs.closeSync(fd);
	procs.push(p);
	p.logFile = log;
	return new Promise((resolve, reject) => {
		const t0 = Date.now();
		const tick = () => {
			const text = fs.readFileSync(log, 'utf8');
			const m = ready.exec(text);
			if (m) return resolve({ proc: p, match: m });
			if (p.exitCode !== null || Date.now() - t0 > (ms || 10000)) return reject(new Error(name + ' did not start: ' + text.slice(-500)));
			setTimeout(tick, 50);
		};
		tick();
	});
}
function tcpUp(port) {
	return new Promise((resolve) => {
		const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
		s.on('error', () => resolve(false));
	});
}
function lastLines(file, n) {
	try { return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-n).join('\n'); } catch (e) { return ''; }
}

const world = { restarts: 0, upLog: path.join(args.tmp, 'upstream.jsonl') };

/* What the upstream received: message text -> times seen. */
/* What the upstream received: message -> the numbers of the connections
 * it came on (once per receipt). */
function upstreamReceipts() {
	const conns = new Map();
	let text = '';
	try { text = fs.readFileSync(world.upLog, 'utf8'); } catch (e) { return conns; }
	for (const l of text.split('\n')) {
		if (!l) continue;
		const o = JSON.parse(l);
		if (o.msg !== undefined) conns.set(o.msg, [...(conns.get(o.msg) || []), o.conn]);
	}
	return conns;
}
/* The upstream connection open at time t: the one the last message
 * received up to t came on ({conn, port}: its number and the bridge's
 * port of it). */
function upstreamAt(t) {
	let text = '', at = {};
	try { text = fs.readFileSync(world.upLog, 'utf8'); } catch (e) { return at; }
	for (const l of text.split('\n')) {
		if (!l) continue;
		const o = JSON.parse(l);
		if (o.msg !== undefined && o.at <= t) at = { conn: o.conn, port: o.port };
	}
	return at;
}
function upstreamConnAt(t) { return upstreamAt(t).conn; }
/* A port freePort() saw free can be taken before it is bound (an outgoing
 * connection's ephemeral port, a test running beside this one): run
 * attempt(retry) again, up to 3 times, while it fails that way. */
async function retryTaken(attempt) {
	for (let retry = 0; ; retry++) {
		try {
			return await attempt(retry);
		} catch (e) {
			if (retry >= 3 || !/Address already in use/.test(String(e && e.message)))
				throw e;
			note('port taken meanwhile, trying again: ' + String(e.message).split('\n')[0]);
		}
	}
}

/* Start bridge `which` on world.portWHICH. fresh: the balancer does not
 * know the port yet, so a taken one is replaced; a restarted bridge keeps
 * its port (the balancer names it) and tries it again shortly. */
async function startBridge(which, instance, fresh) {
	await retryTaken(async (retry) => {
		if (retry && fresh)
			world['port' + which] = await freePort();
		else if (retry)
			await sleep(500);
		await startBridgeOn(which, instance + (retry ? '-retry' + retry : ''));
	});
}
async function startBridgeOn(which, instance) {
	const port = world['port' + which];
	const r = await start('bridge-' + instance, args['pb-bin'], ['--listen', '127.0.0.1:' + port,
		'--store', 'redis://127.0.0.1:' + world.redisPort, '--instance-id', instance,
		'--route', 'echo=ws://127.0.0.1:' + world.echoPort + '/ sockjs=/echo redial',
		'--wait-max', '20', '--idle-timeout', '30', '--log-level', 'info',
		'--access-log', path.join(args.tmp, 'access-' + which + '.log'),
		'--cors-origin', 'http://127.0.0.1:' + world.pagePort], /listening on/);
	world[which] = r.proc;
	world[which].instance = instance;
	world[which].port = port;
}

async function setUp() {
	world.redisPort = await freePort();
	fs.mkdirSync(path.join(args.tmp, 'redis'), { recursive: true });
	await start('redis', 'redis-server', ['--port', String(world.redisPort), '--bind', '127.0.0.1', '--save', '',
		'--appendonly', 'no', '--dir', path.join(args.tmp, 'redis')], /Ready to accept connections/);
	const up = await start('upstream', 'node', [path.join(__dirname, 'watch_upstream.js'), world.upLog, '--messages'], /listening on (\d+)/);
	world.echoPort = Number(up.match[1]);
	world.pagePort = await freePort();
	world.portA = await freePort();
	world.portB = await freePort();
	await startBridge('A', 'lb-a', true);
	await startBridge('B', 'lb-b', true);
	if (LB === 'nginx') {
		await retryTaken(async () => {
			world.lbPort = await freePort();
			await startNginx();
		});
	} else {
		world.lbPort = await freePort();
		await startHaproxy();
	}
	note('redis :' + world.redisPort + ', ws echo :' + world.echoPort + ', bridges A :' + world.portA +
		' B :' + world.portB + ', ' + LB + ' :' + world.lbPort);
}

/* The whole nginx config: contrib/lb/nginx.conf with its addresses replaced,
 * by the script test_socketio_balancer.sh uses too (it fails, naming the
 * line, if the shipped file no longer has one it replaces). */
function nginxConfig() {
	const script = path.join(__dirname, '..', 'nginx_conf.sh');
	const r = spawnSync('sh', [script, String(world.lbPort), '127.0.0.1:' + world.portA, '127.0.0.1:' + world.portB,
		path.join(args.tmp, 'nginx'), path.join(args.tmp, 'nginx-access.log'), path.join(args.tmp, 'nginx.log')],
		{ encoding: 'utf8' });
	if (r.status !== 0)
		throw new Error('no nginx config: ' + (r.stderr || r.error || 'nginx_conf.sh failed').toString().trim());
	return r.stdout;
}

async function startNginx() {
	fs.mkdirSync(path.join(args.tmp, 'nginx'), { recursive: true });
	const cfg = path.join(args.tmp, 'nginx.conf');
	fs.writeFileSync(cfg, nginxConfig());
	const log = fs.openSync(path.join(args.tmp, 'nginx.log'), 'a');
	const h = spawn(args.nginx || 'nginx', ['-p', path.join(args.tmp, 'nginx'), '-c', cfg], { stdio: ['ignore', log, log] });
	procs.push(h);
	for (let i = 0; i < 100 && h.exitCode === null && !(await tcpUp(world.lbPort)); i++) await sleep(50);
	if (!(await tcpUp(world.lbPort))) {
		h.kill('SIGKILL');
		throw new Error('nginx did not start: ' + lastLines(path.join(args.tmp, 'nginx.log'), 5));
	}
}

async function startHaproxy() {
	const cfg = path.join(args.tmp, 'haproxy.cfg');
	fs.writeFileSync(cfg, [
		'global', '  maxconn 512',
		'defaults', '  mode http', '  timeout connect 1s', '  timeout client 60s', '  timeout server 60s',
		'  retries 3', '  option redispatch 1', '  retry-on conn-failure empty-response',
		'frontend fe', '  bind 127.0.0.1:' + world.lbPort, '  default_backend be',
		'backend be', '  balance roundrobin', '  http-request disable-l7-retry if METH_POST !{ path_end /xhr /xhr_streaming }',
		'  server a 127.0.0.1:' + world.portA + ' check inter 200ms fall 1 rise 1',
		'  server b 127.0.0.1:' + world.portB + ' check inter 200ms fall 1 rise 1',
		''].join('\n'));
	const h = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', fs.openSync(path.join(args.tmp, 'haproxy.log'), 'a'), fs.openSync(path.join(args.tmp, 'haproxy.log'), 'a')] });
	procs.push(h);
	for (let i = 0; i < 100 && !(await tcpUp(world.lbPort)); i++) await sleep(50);
	await sleep(500); /* first health checks */
}

/* The pid of the bridge whose end of an upstream connection is on port. */
function pidOfUpstreamPort(port) {
	let out = '';
	try { out = execFileSync('ss', ['-Htnp', 'state', 'established', 'dst', '127.0.0.1:' + world.echoPort], { encoding: 'utf8' }); } catch (e) { return undefined; }
	for (const line of out.split('\n')) {
		const m = line.match(/\s127\.0\.0\.1:(\d+)\s.*pid=(\d+)/);
		if (m && Number(m[1]) === port) return Number(m[2]);
	}
	return undefined;
}
/* The bridge's open streams (its pollbridge_streams_open gauge), -1 if unknown. */
function streamsOpen(bridge) {
	return new Promise((resolve) => {
		const req = http.get({ host: '127.0.0.1', port: bridge.port, path: '/metrics', timeout: 2000 }, (res) => {
			let body = '';
			res.on('data', (d) => { body += d; });
			res.on('end', () => {
				const m = body.match(/^pollbridge_streams_open (\d+)/m);
				resolve(m ? Number(m[1]) : -1);
			});
		});
		req.on('error', () => resolve(-1));
		req.on('timeout', () => { req.destroy(); resolve(-1); });
	});
}
/* The bridge pids holding a TCP connection to the upstream port (any session's). */
function upstreamHolders() {
	let out = '';
	try { out = execFileSync('ss', ['-Htnp', 'state', 'established', 'dst', '127.0.0.1:' + world.echoPort], { encoding: 'utf8' }); } catch (e) { return []; }
	const pids = new Set();
	for (const m of out.matchAll(/pid=(\d+)/g)) pids.add(Number(m[1]));
	return [...pids];
}
/* How many SockJS requests bridge A or B logged (its --access-log lines of door sockjs). */
function requestsSeen(which) {
	try { return fs.readFileSync(path.join(args.tmp, 'access-' + which + '.log'), 'utf8').split('\n').filter((l) => / sockjs /.test(l)).length; } catch (e) { return 0; }
}

/* Whether sockjs-client has no send in flight: nothing buffered, and no
 * POST (nor the 25 ms pause after one) pending. Its transport's
 * BufferedSender (lib/transport/lib/buffered-sender.js, 1.6.1) keeps both;
 * the page evaluates the same test as source text. */
const sendIdleSource = '(() => { const t = window.SOCK && window.SOCK._transport; ' +
	'return !t || (!t.sendStop && !(t.sendBuffer && t.sendBuffer.length)); })()';
function sendIdle(sock) {
	const t = sock._transport;
	return !t || (!t.sendStop && !(t.sendBuffer && t.sendBuffer.length));
}

/* A sockjs-client session in node: open, pace N sends, report its state. */
function nodeClient(url, transport) {
	const st = { opened: false, transport: null, closed: null, got: [], sent: 0, pads: 0 };
	/* timeout: see tests/browser/sockjs.js (sockjs-client's own rule gives
	 * 300-800 ms to open, too tight on a loaded machine). */
	const sock = new SockJS(url, null, { transports: [transport], timeout: 5000 });
	sock.onopen = () => { st.opened = true; st.transport = sock.transport; };
	sock.onclose = (e) => { st.closed = { code: e.code, reason: e.reason, at: Date.now() }; };
	sock.onmessage = (e) => { if (e.data[0] === 'p') st.pads++; else st.got.push(e.data); };
	let timer = null;
	return {
		where: 'node',
		state: async () => st,
		start: async (n) => {
			timer = setInterval(() => {
				if (st.closed || st.sent >= n) return clearInterval(timer);
				sock.send('m' + st.sent);
				st.sent++;
			}, 10);
		},
		pause: async () => {
			clearInterval(timer);
			for (let i = 0; i < 150 && !sendIdle(sock); i++) await sleep(20);
			return sendIdle(sock);
		},
		pad: async (n, bytes) => { for (let i = 0; i < n; i++) sock.send('p' + 'x'.repeat(bytes)); },
		close: async () => { clearInterval(timer); sock.close(); },
	};
}

/* The same in a Chromium page (window.WebSocket deleted) served from the
 * page server: the browser's XHR/EventSource see a cut stream and reconnect. */
async function pageClient(url, transport) {
	const page = await world.browser.newPage();
	await page.goto(world.pageUrl + '/');
	await page.evaluate(([u, t]) => {
		const st = window.ST = { opened: false, transport: null, closed: null, got: [], sent: 0, pads: 0 };
		const sock = window.SOCK = new SockJS(u, null, { transports: [t], timeout: 5000 });
		sock.onopen = () => { st.opened = true; st.transport = sock.transport; };
		sock.onclose = (e) => { st.closed = { code: e.code, reason: e.reason, at: Date.now() }; };
		sock.onmessage = (e) => { if (e.data[0] === 'p') st.pads++; else st.got.push(e.data); };
	}, [url, transport]);
	return {
		where: 'chromium',
		state: () => page.evaluate(() => window.ST),
		start: (n) => page.evaluate((m) => {
			window.TIMER = setInterval(() => {
				if (ST.closed || ST.sent >= m) return clearInterval(window.TIMER);
				SOCK.send('m' + ST.sent);
				ST.sent++;
			}, 10);
		}, n),
		pause: async () => {
			await page.evaluate(() => clearInterval(window.TIMER));
			const idle = () => page.evaluate(sendIdleSource);
			for (let i = 0; i < 150 && !(await idle()); i++) await sleep(20);
			return idle();
		},
		pad: (n, bytes) => page.evaluate(([k, b]) => { for (let i = 0; i < k; i++) SOCK.send('p' + 'x'.repeat(b)); }, [n, bytes]),
		close: async () => {
			await page.evaluate(() => { clearInterval(window.TIMER); SOCK.close(); }).catch(() => {});
			await page.close().catch(() => {});
		},
	};
}

/* One GET of /echo/info through the balancer, on a new connection; its
 * outcome does not matter (the bridges' access logs and the balancer's
 * failure counts do). */
function infoThroughBalancer() {
	return new Promise((resolve) => {
		http.get({ host: '127.0.0.1', port: world.lbPort, path: '/echo/info', agent: false, timeout: 2000 },
			(res) => { res.resume(); res.on('end', resolve); }).on('error', resolve).on('timeout', resolve);
	});
}

/* Wait (up to 10 s) until the balancer sends requests to both bridges
 * again: after a restart, nginx's passive checks (contrib's max_fails=2
 * fail_timeout=5s) keep the restarted one out for a while. */
async function bothReachable() {
	const baseA = requestsSeen('A'), baseB = requestsSeen('B');
	for (let i = 0; i < 50 && (requestsSeen('A') === baseA || requestsSeen('B') === baseB); i++) {
		await infoThroughBalancer();
		await sleep(200);
	}
}

/* After the kill, before the client sends again: a send the balancer
 * still routes to the dead bridge fails (a POST that must not be re-sent)
 * and sockjs-client ends the session on it (docs/API.md). Wait (up to 3 s)
 * until HAProxy's check has marked the bridge down, or, for nginx, whose
 * checks are passive, make its failures count: GETs through it, which it
 * re-sends to the live bridge, until max_fails has taken the dead one out. */
function haproxyDowns(which) {
	let text = '';
	try { text = fs.readFileSync(path.join(args.tmp, 'haproxy.log'), 'utf8'); } catch (e) { return 0; }
	return text.split('Server be/' + which.toLowerCase() + ' is DOWN').length - 1;
}
async function balancerSawDeath(which, downs) {
	for (let i = 0; i < 30; i++) {
		if (LB === 'haproxy') {
			if (haproxyDowns(which) > downs)
				return;
		} else if (i >= 3) {
			return;
		} else {
			await infoThroughBalancer();
		}
		await sleep(100);
	}
}

async function run(transport, where) {
	const label = 'balancer ' + transport + ' (' + where + ')';
	await bothReachable();
	const baseA = requestsSeen('A'), baseB = requestsSeen('B');
	const url = 'http://127.0.0.1:' + world.lbPort + '/echo';
	const c = where === 'node' ? nodeClient(url, transport) : await pageClient(url, transport);
	let st = await c.state();
	for (let i = 0; i < 200 && !st.opened && !st.closed; i++) { await sleep(50); st = await c.state(); }
	if (!ok(st.opened && st.transport === transport, label + ': a sockjs-client session opens through ' + LB, st)) {
		await c.close();
		return;
	}
	await c.start(N);
	for (let i = 0; i < 600 && st.got.length < KILL_AT && !st.closed; i++) { await sleep(20); st = await c.state(); }
	/* The owner: the bridge holding the upstream connection this
	 * session's messages arrive on (an earlier transport's session may
	 * still hold one on the other bridge until it idles out). */
	const holders = upstreamHolders();
	const conn = upstreamAt(Date.now());
	const ownerPid = conn.port && pidOfUpstreamPort(conn.port);
	const owner = [world.A, world.B].find((p) => p.pid === ownerPid);
	const seenA = requestsSeen('A') - baseA, seenB = requestsSeen('B') - baseB;
	note(label + ': before the kill ' + st.got.length + ' echoes; SockJS requests logged by A ' + seenA + ', B ' + seenB);
	ok(seenA > 0 && seenB > 0, label + ': requests reached both instances (no stickiness)', { seenA, seenB });
	if (!ok(owner !== undefined, label + ': the owner (holding this session\'s upstream connection) is found',
		{ conn, ownerPid, holders, A: world.A.pid, B: world.B.pid })) {
		await c.close();
		return;
	}
	const which = owner === world.A ? 'A' : 'B';
	const other = owner === world.A ? world.B : world.A;
	if (STREAM_CUT_ENDS.includes(transport)) {
		/* sockjs-client ends an xhr-streaming or htmlfile session whose
		 * stream is cut (a failed XHR, an iframe that loads to its end:
		 * "permanent"), so no server can keep one alive through the death
		 * of the instance holding its stream (docs/API.md). The stream
		 * starts on the owner (its first request created the session):
		 * roll it over (128 KiB of frames end a stream) until the balancer
		 * has put the next one on the other bridge, then kill the owner. */
		await c.pause();
		let moved = -1, pads = 0;
		for (let round = 0; round < 20 && moved < 0; round++) {
			const [o, n] = [await streamsOpen(owner), await streamsOpen(other)];
			if (o === 0 && n >= 1) {
				moved = round;
			} else {
				await c.pad(20, 8000);
				pads += 20;
				await sleep(400);
			}
		}
		note(label + ': the stream moved off the owner after ' + pads + ' padding messages of 8,000 bytes');
		if (!ok(moved >= 0, label + ': its stream is on the other bridge before the kill',
			{ owner: await streamsOpen(owner), other: await streamsOpen(other) })) {
			await c.close();
			return;
		}
	}
	/* No send may be in flight at the kill: SockJS sends carry no
	 * sequence, so one the dying owner may or may not have stored has no
	 * right outcome. Re-sent by a balancer it could reach the upstream
	 * twice (hence no retry of a sending POST above, as in
	 * contrib/lb/haproxy.cfg; the receiving ones, xhr and xhr_streaming,
	 * are retried);
	 * failed, it closes the client ("Sending error"). docs/API.md. */
	ok(await c.pause(), label + ': the client has no send in flight before the kill');
	st = await c.state();
	const downs = haproxyDowns(which);
	owner.kill('SIGKILL');
	const killedAt = Date.now();
	await balancerSawDeath(which, downs);
	await c.start(N);
	/* Echoes the client had before the kill (read before it: a lower
	 * bound). What it had sent by then is known only roughly (finding the
	 * owner takes tens of ms, a send goes every 10), so the messages whose
	 * echo may be lost are told by the upstream's log instead: those it
	 * received on the killed owner's connection. */
	const gotAtKill = st.got.length;
	note(label + ': SIGKILL ' + owner.instance + ' (' + which + ') after ' + gotAtKill + ' echoes, about ' + st.sent + ' sent');

	let firstAfterKill = 0;
	const deadline = Date.now() + 30000;
	while (Date.now() < deadline && !st.closed && !(st.sent >= N && st.got.length >= N)) {
		await sleep(50);
		st = await c.state();
		if (!firstAfterKill && st.got.length > gotAtKill) firstAfterKill = Date.now();
	}
	await sleep(300);
	st = await c.state();
	const holdersAfter = upstreamHolders();
	const survivor = which === 'A' ? world.B : world.A;

	const idx = st.got.map((m) => Number(m.slice(1)));
	const inOrder = idx.every((v, k) => k === 0 || v > idx[k - 1]);
	const dups = idx.length - new Set(idx).size;
	let gap = null;
	for (let k = 0; k < idx.length && !gap; k++) if (idx[k] !== k) gap = { at: k, got: idx[k] };
	note(label + ': after the kill: ' + (firstAfterKill ? 'first echo ' + (firstAfterKill - killedAt) + ' ms later' : 'no echo') +
		'; ' + st.got.length + ' echoes of ' + st.sent + ' sent' + (st.closed ? '; client closed ' + JSON.stringify(st.closed) + ' ' +
		(st.closed.at - killedAt) + ' ms after the kill' : '; session still open'));
	ok(!st.closed, label + ': the session survives the owner\'s death (no close at the client)', st.closed);
	ok(inOrder && dups === 0, label + ': echoes in order, none twice', { dups, inOrder, gap });
	const up = upstreamReceipts();
	const ownerConn = upstreamConnAt(killedAt);
	const missing = [], outside = [];
	for (let k = 0; k < st.sent; k++) {
		if (st.got.includes('m' + k))
			continue;
		const conns = up.get('m' + k) || [];
		missing.push('m' + k + ' (upstream got it on connection ' + (conns.join(', ') || 'none') + ')');
		/* Lost with the owner: its echo could only have come back to
		 * the killed instance. Anything else is a loss. */
		if (k < gotAtKill || !conns.length || conns.some((n) => n !== ownerConn))
			outside.push('m' + k);
	}
	if (missing.length)
		note(label + ': ' + missing.length + ' echoes in flight at the kill lost: ' + missing.slice(0, 10).join(', '));
	ok(!st.closed && st.sent === N && st.got.length + missing.length === N && outside.length === 0,
		label + ': every message (all acknowledged: no send error) echoed once, m0..m' + (N - 1) +
		', but for echoes in flight at the kill (messages from m' + gotAtKill + ' on that the upstream received' +
		' on the killed owner\'s connection ' + ownerConn + ')',
		{ got: st.got.length, sent: st.sent, gap, missing: missing.slice(0, 10), outside: outside.slice(0, 10),
		  killedAfter: gotAtKill, ownerConn });
	const twice = [...up.entries()].filter(([m, c]) => c.length > 1 && m.startsWith('m'))
		.map(([m, c]) => m + ' ' + c.length + 'x');
	note(label + ': the upstream received ' + [...up.keys()].filter((m) => /^m\d+$/.test(m)).length + ' distinct of ' + st.sent +
		(twice.length ? '; more than once (at least once across the kill): ' + twice.slice(0, 8).join(', ') : '; none twice'));
	fs.appendFileSync(world.upLog, '');
	fs.renameSync(world.upLog, world.upLog + '.' + transport + '-' + where);
	ok(holdersAfter.includes(survivor.pid), label + ': the survivor re-dialled the upstream', { holdersAfter, survivor: survivor.pid });
	await c.close();
	await sleep(200);
	/* Restart the killed instance on its port for the next transport. */
	await startBridge(which, 'lb-' + which.toLowerCase() + '-' + (++world.restarts));
	await sleep(600);
}

/* Chromium through playwright-core (from --deps), serving a page with
 * sockjs-client on its own port; null (with why) when it cannot start. */
async function startBrowser() {
	let chromium;
	try {
		({ chromium } = require(path.resolve(args.deps, 'node_modules', 'playwright-core')));
	} catch (e) {
		return 'playwright-core not installed in ' + args.deps;
	}
	const client = fs.readFileSync(path.join(MODULES, 'sockjs-client', 'dist', 'sockjs.js'));
	const srv = http.createServer((req, res) => {
		if (req.url === '/') {
			res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
			return res.end('<!doctype html><meta charset="utf-8"><script src="/sockjs-client.js"></script>');
		}
		if (req.url === '/sockjs-client.js') {
			res.writeHead(200, { 'content-type': 'application/javascript; charset=utf-8' });
			return res.end(client);
		}
		res.writeHead(404);
		res.end();
	});
	await new Promise((r) => srv.listen(world.pagePort, '127.0.0.1', r));
	world.pageServer = srv;
	world.pageUrl = 'http://127.0.0.1:' + world.pagePort;
	fs.mkdirSync(path.join(args.tmp, 'profile'), { recursive: true });
	try {
		world.browser = await chromium.launchPersistentContext(path.join(args.tmp, 'profile'), {
			executablePath: args.chromium,
			headless: true,
			args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
				'--disable-background-networking', '--disable-component-update', '--disable-sync'],
		});
	} catch (e) {
		return 'Chromium cannot start: ' + String(e && e.message || e).split('\n')[0];
	}
	await world.browser.addInitScript(() => { delete window.WebSocket; });
	note('chromium ' + world.browser.browser().version());
	return null;
}

async function main() {
	const t0 = Date.now();
	try {
		await setUp();
		const lbVersion = LB === 'nginx' ? spawnSync(args.nginx || 'nginx', ['-v'], { encoding: 'utf8' }).stderr
			: execFileSync('haproxy', ['-v'], { encoding: 'utf8' });
		note('sockjs-client ' + require(path.join(MODULES, 'sockjs-client', 'package.json')).version + ' (node ' +
			process.version + '), ' + lbVersion.trim().split('\n')[0]);
		for (const t of TRANSPORTS) await run(t, 'node');
		const why = await startBrowser();
		if (why) {
			if (process.env.PB_BROWSER_REQUIRED === '1') throw new Error(why);
			for (const t of BROWSER_TRANSPORTS) { count++; console.log('ok ' + count + ' # SKIP ' + t + ' in Chromium: ' + why); }
		} else {
			for (const t of BROWSER_TRANSPORTS) await run(t, 'chromium');
		}
	} catch (e) {
		console.log('Bail out! ' + (e && e.message || e));
		failed++;
	} finally {
		if (world.browser) await world.browser.close().catch(() => {});
		if (world.pageServer) world.pageServer.close();
		for (const p of procs) { try { p.kill('SIGKILL'); } catch (e) { /* gone */ } }
	}
	if (failed) for (const f of ['bridge-lb-a', 'bridge-lb-b', LB, ...(LB === 'nginx' ? ['nginx-access'] : [])]) {
		note(f + ' (last lines):');
		for (const l of lastLines(path.join(args.tmp, f + '.log'), 15).split('\n')) note('  ' + l);
	}
	note('took ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s');
	console.log('1..' + count);
	process.exit(failed ? 1 : 0);
}
/* Stopped from outside (timeout): take the children along. */
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
	process.on(sig, () => {
		for (const p of procs) { try { p.kill('SIGKILL'); } catch (e) { /* gone */ } }
		process.exit(1);
	});
}
main();
