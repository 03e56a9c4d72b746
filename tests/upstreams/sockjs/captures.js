'use strict';
/*
 * captures.js: turns ref_server.js --capture output (one JSON line per HTTP
 * exchange) into Markdown, one section per SockJS session (grouped by the
 * session id in the URL; /info and iframe pages go with the session that
 * follows them), exchanges in start order:
 *
 *   node captures.js CAPTURE.jsonl [MAX_EXCHANGES_PER_SESSION] > out.md
 *
 * Bodies and chunks are shown JSON-quoted (so \n, \r, NUL and U+2028 are
 * visible) and cut at 400 characters, with their length.
 */
const fs = require('fs');

const [file, maxArg] = process.argv.slice(2);
const MAX = Number(maxArg || 12);
const entries = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
entries.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));

/* Show a string quoted and cut. */
function q(s) {
	const j = JSON.stringify(s);
	return j.length > 400 ? j.slice(0, 400) + '…" (' + s.length + ' chars)' : j + ' (' + s.length + ' chars)';
}
const SHOW_REQ = ['origin', 'content-type', 'cookie', 'referer', 'last-event-id', 'access-control-request-method',
	'access-control-request-headers', 'if-none-match', 'accept'];

const sessions = [];
let pending = [];
const byId = new Map();
for (const e of entries) {
	const m = /^\/([^/]+)\/([^/]+)\/([^/]+)\/([a-z_]+)/.exec(e.url);
	if (!m) { pending.push(e); continue; }
	const key = m[1] + '/' + m[3];
	let s = byId.get(key);
	if (!s) {
		s = { key, transport: null, list: pending.slice() };
		pending = [];
		byId.set(key, s);
		sessions.push(s);
	}
	if (!s.transport && m[4] !== 'xhr_send' && m[4] !== 'jsonp_send') s.transport = m[4];
	s.list.push(e);
}

for (const s of sessions) {
	console.log('### ' + s.key + ' (' + (s.transport || '?') + ', ' + s.list.length + ' exchanges' +
		(s.list.length > MAX ? ', first ' + MAX + ' shown' : '') + ')\n');
	console.log('```');
	for (const e of s.list.slice(0, MAX)) {
		console.log('> ' + e.method + ' ' + e.url);
		for (const h of SHOW_REQ) if (e.reqHeaders[h] !== undefined) console.log('>   ' + h + ': ' + e.reqHeaders[h]);
		if (e.reqBody) console.log('>   body ' + q(e.reqBody));
		console.log('< ' + e.status + (e.finished ? '' : ' (not finished: the client went away)') + ', ' + e.ms + ' ms');
		for (const [k, v] of Object.entries(e.resHeaders)) console.log('<   ' + k + ': ' + v);
		const shown = e.chunks.slice(0, 6);
		for (const c of shown) console.log('<   +' + c.ms + 'ms ' + q(c.data));
		if (e.chunks.length > shown.length) console.log('<   … ' + (e.chunks.length - shown.length) + ' more chunks');
	}
	console.log('```\n');
}
