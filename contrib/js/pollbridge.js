/*
 * pollbridge.js: a WebSocket-shaped client for pollbridge, for browsers and
 * JavaScript engines that have no WebSocket (or sit behind proxies that
 * strip Upgrade). It speaks the pollbridge HTTP API, version 1:
 *
 *   var ws = new PollBridge("https://bridge.example", "echo");
 *   ws.onmessage = function (e) { console.log(e.data); };
 *   ws.onopen = function () { ws.send("hello"); };
 *
 * Receiving uses Server-Sent Events where EventSource exists, else long
 * polling over XMLHttpRequest. Every message is delivered exactly once and
 * in order: the client keeps the bridge's cursor (the last seq delivered),
 * polls with it, and ignores any seq at or below it, so a lost response that
 * is retried is never delivered twice. Sends are queued and posted one
 * request at a time, numbered with X-Send-Seq, so a retried send is never
 * forwarded twice either.
 *
 * Plain ES3/ES5 on purpose (no let, const, arrow functions, classes,
 * Promise or fetch): it runs on IE-era engines as well as current ones.
 * UMD-style: sets window.PollBridge, and module.exports where it exists.
 * No dependencies. See README.md next to this file.
 */
(function (root, factory) {
	var PollBridge = factory(root);
	var isModule = typeof module === 'object' && module && module.exports;
	if (isModule) { module.exports = PollBridge; }
	if (typeof window !== 'undefined' || !isModule) { root.PollBridge = PollBridge; }
}(typeof window !== 'undefined' ? window : typeof self !== 'undefined' ? self :
	typeof global !== 'undefined' ? global : this, function (global) {
	'use strict';

	var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
	var BACKOFF_MIN = 500;          /* first retry delay, ms; doubles ... */
	var BACKOFF_MAX = 10000;        /* ... up to this */
	var CREATE_RETRIES = 3;         /* retries of the session creation */
	var SEND_BATCH_MAX = 100;       /* messages per send request */
	var SEND_TIMEOUT = 30000;       /* a send request slower than this is retried */
	var ACK_INTERVAL = 5000;        /* SSE: acknowledge delivered messages this often */
	var CLOSE_FLUSH_MAX = 10000;    /* close(): how long queued sends may take */

	var HAS_BUFFERS = typeof ArrayBuffer !== 'undefined' && typeof Uint8Array !== 'undefined';
	var hasOwn = Object.prototype.hasOwnProperty;
	function noop() {}

	/* ---- JSON: the native one, else a small json2-style fallback (IE7) ---- */

	var JSONX = global.JSON && global.JSON.parse ? global.JSON : {
		parse: function (text) {
			/* Escape characters old engines mangle, then accept the text only if
			 * nothing but JSON tokens remains once strings, numbers and literals
			 * are removed (the json2 check), and evaluate it. */
			text = String(text).replace(/[\u0000\u00ad\u0600-\u0604\u070f\u17b4\u17b5\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufeff\ufff0-\uffff]/g,
				function (c) { return '\\u' + ('0000' + c.charCodeAt(0).toString(16)).slice(-4); });
			if (/^[\],:{}\s]*$/.test(text.replace(/\\(?:["\\\/bfnrt]|u[0-9a-fA-F]{4})/g, '@')
				.replace(/"[^"\\\n\r]*"|true|false|null|-?\d+(?:\.\d*)?(?:[eE][+\-]?\d+)?/g, ']')
				.replace(/(?:^|:|,)(?:\s*\[)+/g, ''))) {
				return (new Function('return (' + text + ');'))();
			}
			throw new SyntaxError('invalid JSON');
		},
		stringify: function stringify(v) {
			var out = [], k, i;
			if (v === null || v === undefined) { return 'null'; }
			if (typeof v === 'number' || typeof v === 'boolean') { return String(v); }
			if (typeof v === 'string') {
				return '"' + v.replace(/[\\"\u0000-\u001f\u2028\u2029]/g, function (c) {
					return '\\u' + ('0000' + c.charCodeAt(0).toString(16)).slice(-4);
				}) + '"';
			}
			if (Object.prototype.toString.call(v) === '[object Array]') {
				for (i = 0; i < v.length; i++) { out.push(stringify(v[i])); }
				return '[' + out.join(',') + ']';
			}
			for (k in v) {
				if (hasOwn.call(v, k)) { out.push(stringify(k) + ':' + stringify(v[k])); }
			}
			return '{' + out.join(',') + '}';
		}
	};

	/* ---- base64 and text helpers ---- */

	var B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
	var B64_INDEX = {};
	(function () { for (var i = 0; i < 64; i++) { B64_INDEX[B64.charAt(i)] = i; } }());

	/* Standard base64 (with padding) of an array of bytes. */
	function bytesToBase64(bytes) {
		var out = [], n = bytes.length, i, a, b, c;
		for (i = 0; i < n; i += 3) {
			a = bytes[i];
			b = i + 1 < n ? bytes[i + 1] : 0;
			c = i + 2 < n ? bytes[i + 2] : 0;
			out.push(B64.charAt(a >> 2) + B64.charAt(((a & 3) << 4) | (b >> 4)) +
				(i + 1 < n ? B64.charAt(((b & 15) << 2) | (c >> 6)) : '=') +
				(i + 2 < n ? B64.charAt(c & 63) : '='));
		}
		return out.join('');
	}

	/* The bytes of a base64 string, as an ArrayBuffer. */
	function base64ToBuffer(s) {
		var n, len, out, i, j = 0, a, b, c, d;
		s = String(s).replace(/[^A-Za-z0-9+\/]/g, '');
		n = s.length;
		len = (n * 3) >> 2;
		out = new Uint8Array(len);
		for (i = 0; i < n; i += 4) {
			a = B64_INDEX[s.charAt(i)];
			b = B64_INDEX[s.charAt(i + 1)] || 0;
			c = B64_INDEX[s.charAt(i + 2)] || 0;
			d = B64_INDEX[s.charAt(i + 3)] || 0;
			if (j < len) { out[j++] = (a << 2) | (b >> 4); }
			if (j < len) { out[j++] = ((b & 15) << 4) | (c >> 2); }
			if (j < len) { out[j++] = ((c & 3) << 6) | d; }
		}
		return out.buffer;
	}

	/* The bridge wants valid UTF-8: like WebSocket.send, turn lone surrogates
	 * (which have no UTF-8 form) into U+FFFD. */
	function wellFormed(s) {
		if (!/[\uD800-\uDFFF]/.test(s)) { return s; }
		return s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]|[\uD800-\uDFFF]/g, function (m) {
			return m.length === 2 ? m : '\uFFFD';
		});
	}

	/* Bytes of s in UTF-8 (for bufferedAmount and close reasons). */
	function utf8Length(s) {
		var len = 0, i, c;
		for (i = 0; i < s.length; i++) {
			c = s.charCodeAt(i);
			len += c < 0x80 ? 1 : c < 0x800 ? 2 : (c >= 0xD800 && c <= 0xDFFF) ? 2 : 3;
		}
		return len;
	}

	function domError(name, message) {
		var e = new Error(message);
		e.name = name;
		return e;
	}

	/* ---- HTTP ---- */

	function newXHR() {
		if (global.XMLHttpRequest) { return new global.XMLHttpRequest(); }
		if (global.ActiveXObject) { return new global.ActiveXObject('Microsoft.XMLHTTP'); }  /* IE6 */
		throw new Error('PollBridge needs XMLHttpRequest');
	}

	/* One request. done(status, body, xhr) is called once, unless abort() is
	 * called first: status is 0 for a network error, a timeout or an answer
	 * that is not the JSON it should be; body is the parsed JSON or null. */
	function request(opts, done) {
		var xhr = newXHR(), finished = false, timer = null, name;
		function finish() {
			var status = 0, body = null;
			if (finished) { return; }
			finished = true;
			if (timer) { clearTimeout(timer); }
			xhr.onreadystatechange = noop;
			try { status = xhr.status; } catch (e) { status = 0; }
			if (status === 1223) { status = 204; }              /* IE's 204 */
			if (status) {
				try {
					body = xhr.responseText ? JSONX.parse(xhr.responseText) : null;
				} catch (e2) {
					status = 0;         /* a proxy's error page, say: retry */
				}
			}
			done(status, body, xhr);
		}
		timer = setTimeout(function () {
			timer = null;
			try { xhr.abort(); } catch (e) {}
			finish();
		}, opts.timeout);
		try {
			xhr.open(opts.method, opts.url, true);
			for (name in opts.headers) {
				if (hasOwn.call(opts.headers, name)) { xhr.setRequestHeader(name, opts.headers[name]); }
			}
			if (opts.withCredentials) { xhr.withCredentials = true; }
			xhr.onreadystatechange = function () {
				if (xhr.readyState === 4) { finish(); }
			};
			xhr.send(opts.body === undefined ? null : opts.body);
		} catch (e) {
			setTimeout(finish, 0);      /* a bad URL, a refused header: a network error */
		}
		return {
			abort: function () {
				if (finished) { return; }
				finished = true;
				if (timer) { clearTimeout(timer); }
				xhr.onreadystatechange = noop;
				try { xhr.abort(); } catch (e) {}
			}
		};
	}

	/* Network errors, 5xx and 429 are worth retrying; other 4xx are not. */
	function retryable(status) {
		return status === 0 || status === 429 || status >= 500;
	}

	/* Capped exponential backoff with a little jitter; Retry-After wins. */
	function Backoff() { this.delay = 0; }
	Backoff.prototype.next = function (xhr) {
		var ra = null;
		try { ra = xhr && xhr.getResponseHeader('Retry-After'); } catch (e) {}
		this.delay = this.delay ? Math.min(this.delay * 2, BACKOFF_MAX) : BACKOFF_MIN;
		if (ra && /^\d+$/.test(ra)) { return parseInt(ra, 10) * 1000; }
		return Math.round(this.delay * (0.8 + 0.4 * Math.random()));
	};
	Backoff.prototype.reset = function () { this.delay = 0; };

	function describe(status, body) {
		if (body && body.error) { return status + ' ' + body.error; }
		return status ? 'HTTP ' + status : 'network error';
	}

	/* ---- the client ---- */

	/* new PollBridge(url, route[, options]): url is the bridge's base
	 * ("https://host:port", or a path prefix such as "" or "/bridge"), route a
	 * route name the operator configured. options: protocols (string or
	 * array), transport ('auto' | 'poll' | 'sse'), wait (long-poll seconds),
	 * headers (extra request headers for XMLHttpRequest), withCredentials. */
	function PollBridge(url, route, options) {
		var protocols;
		if (!(this instanceof PollBridge)) { throw new TypeError('use new PollBridge(url, route)'); }
		options = options || {};
		protocols = options.protocols || [];
		if (typeof protocols === 'string') { protocols = [protocols]; }

		this.url = String(url || '').replace(/\/+$/, '');
		this.route = String(route);
		this.readyState = CONNECTING;
		this.protocol = '';
		this.extensions = '';
		this.bufferedAmount = 0;
		this.binaryType = HAS_BUFFERS ? 'arraybuffer' : 'base64';    /* or 'blob' */
		this.transport = null;          /* 'poll' or 'sse' once receiving */
		this.session = null;            /* the bridge's session id */
		this.onopen = this.onmessage = this.onclose = this.onerror = this.onreopen = null;

		this._transport = options.transport || 'auto';
		this._wait = options.wait === undefined ? 25 : Math.max(0, Number(options.wait) || 0);
		this._headers = options.headers || {};
		this._withCredentials = !!options.withCredentials;
		this._listeners = {};
		this._timers = {};
		this._base = null;              /* this.url + '/v1/sessions/<id>' */
		this._cursor = 0;               /* highest seq delivered */
		this._acked = 0;                /* the cursor the current stream started from */
		this._streamWorked = false;     /* an event stream has opened (SSE) */
		this._poll = null;              /* in-flight poll or ack request */
		this._es = null;                /* the EventSource */
		this._sendQueue = [];           /* items not yet in a request */
		this._sendBatch = null;         /* the request being sent: {seq, body, bytes} */
		this._sending = false;          /* a send request (or its retry timer) is pending */
		this._sendSeq = 1;              /* X-Send-Seq of the next new request */
		this._gapResyncs = 0;
		this._pollBackoff = new Backoff();
		this._sendBackoff = new Backoff();
		this._userClosing = false;      /* close() was called */
		this._closeCode = 1005;
		this._closeReason = '';
		this._create(protocols, 0);
	}

	PollBridge.CONNECTING = PollBridge.prototype.CONNECTING = CONNECTING;
	PollBridge.OPEN = PollBridge.prototype.OPEN = OPEN;
	PollBridge.CLOSING = PollBridge.prototype.CLOSING = CLOSING;
	PollBridge.CLOSED = PollBridge.prototype.CLOSED = CLOSED;

	var proto = PollBridge.prototype;

	/* ---- events: on<type> properties plus addEventListener ---- */

	proto.addEventListener = function (type, fn) {
		var list = this._listeners[type] || (this._listeners[type] = []), i;
		for (i = 0; i < list.length; i++) { if (list[i] === fn) { return; } }
		list.push(fn);
	};

	proto.removeEventListener = function (type, fn) {
		var list = this._listeners[type] || [], i;
		for (i = 0; i < list.length; i++) {
			if (list[i] === fn) { list.splice(i, 1); return; }
		}
	};

	/* Call the handlers of one event. A handler that throws does not break
	 * the client: the exception is rethrown from a timer so it is reported. */
	proto._emit = function (type, props) {
		var ev = { type: type, target: this, currentTarget: this }, k, i;
		var fns = [this['on' + type]].concat(this._listeners[type] || []);
		for (k in props) { if (hasOwn.call(props, k)) { ev[k] = props[k]; } }
		for (i = 0; i < fns.length; i++) {
			if (typeof fns[i] !== 'function') { continue; }
			try {
				fns[i].call(this, ev);
			} catch (e) {
				setTimeout(function () { throw e; }, 0);
			}
		}
	};

	/* ---- plumbing ---- */

	proto._http = function (method, url, headers, body, timeout, done) {
		var all = {}, k;
		for (k in this._headers) { if (hasOwn.call(this._headers, k)) { all[k] = this._headers[k]; } }
		for (k in headers) { if (hasOwn.call(headers, k)) { all[k] = headers[k]; } }
		return request({ method: method, url: url, headers: all, body: body, timeout: timeout,
			withCredentials: this._withCredentials }, done);
	};

	/* Run fn after ms, unless the client is closed by then; one timer per name. */
	proto._later = function (name, ms, fn) {
		var self = this;
		clearTimeout(this._timers[name]);
		this._timers[name] = setTimeout(function () {
			self._timers[name] = null;
			if (self.readyState !== CLOSED) { fn.call(self); }
		}, ms);
	};

	/* Stop receiving: no poll, no stream, no acknowledgement pending. */
	proto._stopReceiving = function () {
		if (this._poll) { this._poll.abort(); this._poll = null; }
		if (this._es) { this._es.close(); this._es = null; }
		clearTimeout(this._timers.poll);
		clearTimeout(this._timers.ack);
		clearTimeout(this._timers.stream);
		this._timers.ack = null;
	};

	/* Stop sending: nothing in flight, nothing queued. */
	proto._stopSending = function () {
		if (this._sendReq) { this._sendReq.abort(); this._sendReq = null; }
		clearTimeout(this._timers.send);
		this._sendQueue = [];
		this._sendBatch = null;
		this._sending = false;
	};

	/* Stop everything and report the close (once). */
	proto._finish = function (code, reason, wasClean, error) {
		var k;
		if (this.readyState === CLOSED) { return; }
		this.readyState = CLOSED;
		this._stopReceiving();
		this._stopSending();
		for (k in this._timers) { if (hasOwn.call(this._timers, k)) { clearTimeout(this._timers[k]); } }
		if (error) { this._emit('error', { message: error }); }
		this._emit('close', { code: code, reason: reason, wasClean: wasClean });
	};

	/* Fail the connection (close 1006, or 1009 for a refused size). Unless
	 * the bridge said the session is gone, end it there too, best effort. */
	proto._fail = function (code, error, sessionGone) {
		if (this.readyState === CLOSED) { return; }
		if (this._base && !sessionGone) {
			this._http('DELETE', this._base, {}, null, 10000, noop);
		}
		this._finish(code, '', false, error);
	};

	/* ---- opening ---- */

	proto._create = function (protocols, attempt) {
		var self = this, body = { route: this.route };
		if (protocols.length) { body.protocols = protocols; }
		this._http('POST', this.url + '/v1/sessions', { 'Content-Type': 'application/json' },
			JSONX.stringify(body), 30000, function (status, res, xhr) {
				var ok = status === 201 && res && typeof res.session === 'string';
				if (self.readyState !== CONNECTING) {
					/* close() came first: end the session it created, if any. */
					if (ok) { self._http('DELETE', self.url + '/v1/sessions/' + encodeURIComponent(res.session), {}, null, 10000, noop); }
					return;
				}
				if (ok) {
					self.session = res.session;
					self._base = self.url + '/v1/sessions/' + encodeURIComponent(res.session);
					self.protocol = res.protocol || '';
					self._maxBytes = res.max_message_bytes || 1048576;
					if (res.wait_max) { self._wait = Math.min(self._wait, res.wait_max); }
					self.readyState = OPEN;
					self._emit('open', {});
					if (self.readyState !== OPEN) { return; }
					self._startReceiving();
					self._flushSends();
				} else if (retryable(status) && status !== 502 && status !== 504 && attempt < CREATE_RETRIES) {
					/* A lost 201 leaves a session behind that idles out. */
					self._later('create', self._pollBackoff.next(xhr), function () {
						self._create(protocols, attempt + 1);
					});
				} else {
					self._finish(1006, '', false, 'cannot create a session: ' + describe(status, res));
				}
			});
	};

	proto._startReceiving = function () {
		if (this._transport !== 'poll' && global.EventSource) {
			this._openStream();
		} else {
			this._longPoll();
		}
	};

	/* ---- receiving ---- */

	/* Deliver a batch in order, each seq once: a seq at or below the cursor
	 * was delivered before (a replay after a lost answer) and is skipped. The
	 * cursor moves only past what was delivered. Stops if a handler closes. */
	proto._deliver = function (messages) {
		var i, m, data;
		for (i = 0; i < messages.length && this.readyState === OPEN; i++) {
			m = messages[i];
			if (!m || typeof m.seq !== 'number' || m.seq <= this._cursor) { continue; }
			if (m.type === 'text') {
				this._emit('message', { data: m.data, binary: false, seq: m.seq });
			} else if (m.type === 'binary') {
				data = m.data;
				if (HAS_BUFFERS && this.binaryType !== 'base64') {
					data = base64ToBuffer(data);
					if (this.binaryType === 'blob' && global.Blob) { data = new global.Blob([data]); }
				}
				this._emit('message', { data: data, binary: true, seq: m.seq });
			} else if (m.type === 'reopen') {
				/* The bridge re-dialled the upstream: its state was lost. */
				this._emit('reopen', { seq: m.seq });
			}
			this._cursor = m.seq;
		}
	};

	/* The upstream closed. Acknowledge what was delivered with one last short
	 * poll (the bridge then ends the session), then report the close. */
	proto._upstreamClosed = function (close, needAck) {
		var self = this, code = (close && close.code) || 1005, reason = (close && close.reason) || '';
		var clean = code !== 1006;      /* 1006: the bridge lost the upstream */
		if (this.readyState !== OPEN) { return; }
		this.readyState = CLOSING;
		this._stopReceiving();
		this._stopSending();            /* the bridge would refuse them (410) */
		if (!needAck) { this._finish(code, reason, clean); return; }
		this._poll = this._http('GET', this._base + '/messages?after=' + this._cursor + '&wait=0&max=1',
			{}, null, 10000, function () { self._poll = null; self._finish(code, reason, clean); });
	};

	/* One long poll; the next one starts when it is answered. */
	proto._longPoll = function () {
		var self = this, after = this._cursor;
		this.transport = 'poll';
		this._poll = this._http('GET', this._base + '/messages?after=' + after + '&wait=' + this._wait,
			{}, null, (this._wait + 15) * 1000, function (status, res, xhr) {
				self._poll = null;
				if (self.readyState !== OPEN) { return; }
				if (status === 200 && res && res.messages) {
					self._pollBackoff.reset();
					self._deliver(res.messages);
					if (self.readyState !== OPEN) { return; }
					if (res.state === 'closed') {
						/* No final poll if this one already acknowledged everything. */
						self._upstreamClosed(res.close, self._cursor !== after);
					} else if (self._wait === 0 && !res.messages.length) {
						self._later('poll', 1000, self._longPoll);      /* short polling */
					} else {
						self._longPoll();
					}
				} else if (retryable(status)) {
					/* Same cursor again: the bridge still holds what was lost. */
					self._later('poll', self._pollBackoff.next(xhr), self._longPoll);
				} else {
					self._fail(1006, 'receiving failed: ' + describe(status, res), status === 404 || status === 410);
				}
			});
	};

	/* Server-Sent Events: one event per message, id = seq, data = the same
	 * JSON message object polling returns. The browser reconnects by itself
	 * with Last-Event-ID; we only step in when it gives up. */
	proto._openStream = function () {
		var self = this, es, types = ['text', 'binary', 'reopen'], i;
		this.transport = 'sse';
		this._acked = this._cursor;
		es = this._es = new global.EventSource(this._base + '/events?after=' + this._cursor,
			{ withCredentials: this._withCredentials });
		function onMessage(e) {
			var m;
			if (self._es !== es) { return; }
			try { m = JSONX.parse(e.data); } catch (err) { return; }
			self._deliver([m]);
			self._scheduleAck();
		}
		for (i = 0; i < types.length; i++) { es.addEventListener(types[i], onMessage, false); }
		es.addEventListener('close', function (e) {
			var c = {};
			if (self._es !== es) { return; }
			try { c = JSONX.parse(e.data); } catch (err) {}
			self._upstreamClosed(c, true);
		}, false);
		es.onopen = function () {
			self._streamWorked = true;
			self._pollBackoff.reset();
		};
		es.onerror = function () {
			if (self._es !== es || es.readyState !== 2) { return; }  /* 2: the browser gave up */
			es.close();
			self._es = null;
			self._probe();
		};
	};

	/* The stream was refused (a non-200 answer, or no event stream). A short
	 * poll tells why: the session is gone (close 1006), the bridge is busy
	 * (retry the stream later), or it has no /events (auto: poll instead). */
	proto._probe = function () {
		var self = this;
		this._poll = this._http('GET', this._base + '/messages?after=' + this._cursor + '&wait=0',
			{}, null, 15000, function (status, res, xhr) {
				self._poll = null;
				if (self.readyState !== OPEN) { return; }
				if (status === 200 && res && res.messages) {
					self._deliver(res.messages);
					if (self.readyState !== OPEN) { return; }
					if (res.state === 'closed') {
						self._upstreamClosed(res.close, true);
					} else if (self._transport === 'auto' && !self._streamWorked) {
						self._longPoll();
					} else {
						self._later('stream', self._pollBackoff.next(null), self._openStream);
					}
				} else if (retryable(status)) {
					self._later('stream', self._pollBackoff.next(xhr), self._openStream);
				} else {
					self._fail(1006, 'receiving failed: ' + describe(status, res), status === 404 || status === 410);
				}
			});
	};

	/* Events on a stream are acknowledged only by a later cursor, so the
	 * bridge keeps them until then. Every ACK_INTERVAL (if something was
	 * delivered) the stream is replaced by a new one from the cursor, which
	 * acknowledges it. Not a short poll: the bridge ends a stream when a
	 * newer poll arrives, and the browser would reconnect only after the
	 * stream's retry delay (2 s). */
	proto._scheduleAck = function () {
		if (!this._timers.ack) { this._later('ack', ACK_INTERVAL, this._ack); }
	};

	proto._ack = function () {
		if (this.readyState !== OPEN || !this._es || this._cursor === this._acked) { return; }
		this._es.close();
		this._es = null;
		this._openStream();
	};

	/* ---- sending ---- */

	/* Queue one message: a string is text, an ArrayBuffer or typed array is
	 * binary, a Blob is read first (order is kept), anything else becomes a
	 * string as WebSocket.send does. */
	proto.send = function (data) {
		var item;
		if (this.readyState === CONNECTING) { throw domError('InvalidStateError', 'PollBridge is still connecting'); }
		if (this.readyState !== OPEN) { return; }       /* after close(): discarded */
		if (HAS_BUFFERS && data instanceof ArrayBuffer) {
			item = { type: 'binary', data: bytesToBase64(new Uint8Array(data)), bytes: data.byteLength };
		} else if (HAS_BUFFERS && data && data.buffer instanceof ArrayBuffer && typeof data.byteOffset === 'number') {
			/* a typed array or a DataView */
			item = { type: 'binary', data: bytesToBase64(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
				bytes: data.byteLength };
		} else if (global.Blob && data instanceof global.Blob) {
			item = { type: 'binary', data: null, bytes: data.size, pending: true };
			this._readBlob(data, item);
		} else {
			data = wellFormed(String(data));
			item = { type: 'text', data: data, bytes: utf8Length(data) };
		}
		this._sendQueue.push(item);
		this.bufferedAmount += item.bytes;
		this._flushSends();
	};

	proto._readBlob = function (blob, item) {
		var self = this, reader = new global.FileReader();
		reader.onload = function () {
			item.data = bytesToBase64(new Uint8Array(reader.result));
			item.pending = false;
			self._flushSends();
		};
		reader.onerror = function () { self._fail(1006, 'cannot read a Blob to send', false); };
		reader.readAsArrayBuffer(blob);
	};

	/* Sends go out while open, and while close() waits for them. */
	proto._canSend = function () {
		return this.readyState === OPEN || (this.readyState === CLOSING && this._userClosing);
	};

	/* Post the next batch, one request at a time. A request keeps its
	 * X-Send-Seq and its body across retries, so the bridge forwards it once. */
	proto._flushSends = function () {
		var self = this, b, item, bytes = 0, items = [], wire = [], i;
		if (this._sending || !this._base || !this._canSend()) { return; }
		if (!this._sendBatch) {
			while (this._sendQueue.length && items.length < SEND_BATCH_MAX) {
				item = this._sendQueue[0];
				if (item.pending || (items.length && bytes + item.data.length > this._maxBytes)) { break; }
				items.push(this._sendQueue.shift());
				bytes += item.data.length;
			}
			if (!items.length) {
				if (this._userClosing && !this._sendQueue.length) { this._closeNow(); }
				return;
			}
			for (i = 0, bytes = 0; i < items.length; i++) {
				wire.push({ type: items[i].type, data: items[i].data });
				bytes += items[i].bytes;
			}
			this._sendBatch = { seq: this._sendSeq, body: { messages: wire }, bytes: bytes };
		}
		b = this._sendBatch;
		this._sending = true;
		this._sendReq = this._http('POST', this._base + '/messages',
			{ 'Content-Type': 'application/json', 'X-Send-Seq': String(b.seq) },
			JSONX.stringify(b.body), SEND_TIMEOUT, function (status, res, xhr) {
				self._sendReq = null;
				self._sending = false;
				if (!self._canSend()) { return; }
				if (status === 200) {
					self._sendBackoff.reset();
					self._gapResyncs = 0;
					self._sendSeq = b.seq + 1;
					self._sendBatch = null;
					self.bufferedAmount -= b.bytes;
					self._flushSends();
				} else if (status === 409 && res && typeof res.expected === 'number' && self._gapResyncs++ < 3) {
					/* send_seq_gap: the bridge expects another number (it lost
					 * track of this session's sends): renumber and resend. */
					b.seq = res.expected;
					self._flushSends();
				} else if (retryable(status)) {
					self._sending = true;
					self._later('send', self._sendBackoff.next(xhr), function () {
						self._sending = false;
						self._flushSends();
					});
				} else if (status === 413) {
					self._fail(1009, 'message too big', false);
				} else {
					self._fail(1006, 'sending failed: ' + describe(status, res), status === 404 || status === 410);
				}
			});
	};

	/* ---- closing ---- */

	/* close([code[, reason]]): like WebSocket.close. Queued sends go out
	 * first, then DELETE ends the session (the upstream gets close 1000: the
	 * API carries no code or reason upstream); onclose reports the code and
	 * reason given here (1005 and "" without them). */
	proto.close = function (code, reason) {
		if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
			throw domError('InvalidAccessError', 'close code must be 1000 or 3000-4999');
		}
		reason = reason === undefined ? '' : String(reason);
		if (utf8Length(reason) > 123) { throw domError('SyntaxError', 'close reason longer than 123 bytes'); }
		if (this.readyState === CLOSING || this.readyState === CLOSED) { return; }
		if (this.readyState === CONNECTING) {
			/* As WebSocket: the connection fails (its session is deleted once created). */
			this._finish(1006, '', false, 'closed before the connection was established');
			return;
		}
		this._closeCode = code === undefined ? 1005 : code;
		this._closeReason = reason;
		this._userClosing = true;
		this.readyState = CLOSING;
		this._stopReceiving();
		this._later('closeFlush', CLOSE_FLUSH_MAX, this._closeNow);
		this._flushSends();
	};

	proto._closeNow = function (attempt) {
		var self = this;
		attempt = attempt || 0;
		if (this.readyState !== CLOSING || !this._userClosing || (this._deleting && !attempt)) { return; }
		this._deleting = true;
		clearTimeout(this._timers.closeFlush);
		this._stopSending();
		this._http('DELETE', this._base, {}, null, 10000, function (status, res, xhr) {
			if (self.readyState === CLOSED) { return; }
			if (status === 204 || status === 404 || status === 410) {
				self._finish(self._closeCode, self._closeReason, true);
			} else if (retryable(status) && attempt < 2) {
				self._later('delete', self._sendBackoff.next(xhr), function () { self._closeNow(attempt + 1); });
			} else {
				self._finish(self._closeCode, self._closeReason, false);
			}
		});
	};

	return PollBridge;
}));
