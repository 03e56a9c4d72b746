/*
 * pollbridge.js: a WebSocket for browsers and JavaScript engines that have
 * none (or sit behind proxies that strip Upgrade), over pollbridge's HTTP
 * API, version 1. It behaves as the WHATWG WebSocket interface does:
 *
 *   var ws = new PollBridge("https://bridge.example/chat");   // route "chat"
 *   ws.onmessage = function (e) { console.log(e.data); };
 *   ws.onopen = function () { ws.send("hello"); };
 *
 * or, leaving the application's code unchanged:
 *
 *   PollBridge.install({ map: { "wss://backend.example/chat": "https://bridge.example/chat" } });
 *   var ws = new WebSocket("wss://backend.example/chat");
 *
 * Receiving uses an event stream (Server-Sent Events, read with
 * XMLHttpRequest so that its heartbeats are visible) where the engine can,
 * else long polling. A stream that a buffering proxy holds back is noticed
 * and replaced by long polling. Every message is delivered exactly once and
 * in order: the client keeps the bridge's cursor (the last seq delivered),
 * receives from it, and ignores any seq at or below it. Sends are queued and
 * posted one request at a time, numbered with X-Send-Seq, so a retried send
 * is never forwarded twice either.
 *
 * Plain ES3/ES5 on purpose (no let, const, arrow functions, classes,
 * Promise or fetch): it runs on IE-era engines as well as current ones.
 * UMD-style: sets window.PollBridge, module.exports, or define()s an AMD
 * module. No dependencies. See README.md next to this file.
 */
(function (root, factory) {
	var PollBridge = factory(root);
	var isModule = typeof module === 'object' && module && module.exports;
	if (isModule) { module.exports = PollBridge; }
	if (typeof define === 'function' && define.amd) { define([], function () { return PollBridge; }); }
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
	var ACK_INTERVAL = 5000;        /* stream: acknowledge delivered messages this often */
	var CLOSE_FLUSH_MAX = 10000;    /* close(): how long queued sends may take */
	var STREAM_TIMEOUT = 5000;      /* a stream shows no byte this long after it started: buffered */
	var HEARTBEAT_TIMEOUT = 40000;  /* an open stream silent this long is checked (bridge: 15 s heartbeat) */
	var EVENT_TYPES = ['open', 'message', 'error', 'close', 'reopen'];

	var HAS_BUFFERS = typeof ArrayBuffer !== 'undefined' && typeof Uint8Array !== 'undefined';
	var HAS_BLOB = HAS_BUFFERS && typeof global.Blob === 'function';
	var NativeURL = typeof global.URL === 'function' ? global.URL : null;
	var hasOwn = Object.prototype.hasOwnProperty;
	function noop() {}
	function now() { return new Date().getTime(); }

	/* ---- what the engine has, decided once, when this file loads ---- */

	/* Accessor properties on ordinary objects (ES5; IE 8 has them on DOM objects only). */
	var HAS_ACCESSORS = (function () {
		try {
			var o = {};
			Object.defineProperty(o, 'x', { get: function () { return 1; } });
			return o.x === 1;
		} catch (e) { return false; }
	}());

	/* A constructible EventTarget and Event (current engines): instances are
	 * then real EventTargets, made with Reflect.construct. */
	var NativeET = (function () {
		try {
			var ET = global.EventTarget, R = global.Reflect, hits = 0, o, Probe;
			if (typeof ET !== 'function' || !R || typeof R.construct !== 'function' || !Object.create ||
				typeof global.Event !== 'function') { return null; }
			Probe = function () {};
			Probe.prototype = Object.create(ET.prototype);
			o = R.construct(ET, [], Probe);
			o.addEventListener('x', function () { hits++; });
			o.dispatchEvent(new global.Event('x'));
			return hits === 1 && o instanceof Probe ? ET : null;
		} catch (e) { return null; }
	}());

	/* The event classes, where they can be constructed. */
	function eventClass(name, init) {
		try {
			var C = global[name];
			return typeof C === 'function' && new C('x', init).type === 'x' ? C : null;
		} catch (e) { return null; }
	}
	var NativeEvent = eventClass('Event', {});
	var NativeMessageEvent = eventClass('MessageEvent', { data: 1 });
	var NativeCloseEvent = eventClass('CloseEvent', { code: 1000 });
	var NativeDOMException = (function () {
		try {
			var D = global.DOMException;
			return typeof D === 'function' && new D('m', 'SyntaxError').name === 'SyntaxError' ? D : null;
		} catch (e) { return null; }
	}());

	/* A DOMException (or, without that class, an Error with its name). */
	function domError(name, message) {
		var e;
		if (NativeDOMException) { return new NativeDOMException(message, name); }
		e = new Error(message);
		e.name = name;
		return e;
	}

	/* ---- URLs ---- */

	/* The document's base URL, for relative URLs. */
	function baseHref() {
		var d = global.document, l = global.location;
		if (d && typeof d.baseURI === 'string' && d.baseURI) { return d.baseURI; }
		return l && l.href ? String(l.href) : '';
	}

	/* Remove "." and ".." segments from an absolute path. */
	function removeDots(path) {
		var inSegs = path.split('/'), out = [], i, s;
		for (i = 1; i < inSegs.length; i++) {
			s = inSegs[i];
			if (s === '..' || s === '%2e%2e' || s === '.%2e' || s === '%2e.') {
				if (out.length) { out.pop(); }
				if (i === inSegs.length - 1) { out.push(''); }
			} else if (s === '.' || s === '%2e') {
				if (i === inSegs.length - 1) { out.push(''); }
			} else {
				out.push(s);
			}
		}
		return '/' + out.join('/');
	}

	var DEFAULT_PORT = { http: '80', ws: '80', https: '443', wss: '443' };
	var ABS_RE = /^([a-zA-Z][a-zA-Z0-9+.\-]*):\/\/([^\/?#]*)([^?#]*)(\?[^#]*)?/;

	/* Parse an absolute or relative URL (without its fragment) against the
	 * document's base: {scheme, host (with a port that is not the default),
	 * path, query}, or null when it cannot be parsed. The URL class where the
	 * engine has one, else a small parser for hierarchical URLs. */
	function parseUrl(input) {
		var u, m, base, scheme, host, path, query, at;
		if (NativeURL) {
			try {
				u = new NativeURL(input, baseHref() || undefined);
			} catch (e) { return null; }
			return { scheme: u.protocol.replace(/:$/, '').toLowerCase(), host: u.host,
				path: u.pathname, query: u.search };
		}
		input = input.replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '').replace(/[\t\n\r]/g, '');
		input = input.replace(/#.*$/, '');
		if (!/^[a-zA-Z][a-zA-Z0-9+.\-]*:/.test(input)) {
			base = ABS_RE.exec(baseHref());
			if (!base) { return null; }
			if (input.slice(0, 2) === '//') {
				input = base[1] + ':' + input;
			} else if (input.charAt(0) === '/') {
				input = base[1] + '://' + base[2] + input;
			} else if (input.charAt(0) === '?') {
				input = base[1] + '://' + base[2] + (base[3] || '/') + input;
			} else if (input === '') {
				input = base[1] + '://' + base[2] + (base[3] || '/') + (base[4] || '');
			} else {
				input = base[1] + '://' + base[2] + (base[3] || '/').replace(/[^\/]*$/, '') + input;
			}
		}
		m = ABS_RE.exec(input);
		if (!m || m[0].length !== input.length) { return null; }
		scheme = m[1].toLowerCase();
		host = m[2];
		at = host.lastIndexOf('@');
		if (at >= 0) { host = host.slice(at + 1); }        /* credentials: not used */
		host = host.toLowerCase();
		if (!/^([a-z0-9\-._~!$&'()*+,;=%]+|\[[0-9a-f:.]+\])(:[0-9]*)?$/.test(host)) { return null; }
		host = host.replace(/:$/, '');
		if (DEFAULT_PORT[scheme] && host.slice(-(DEFAULT_PORT[scheme].length + 1)) === ':' + DEFAULT_PORT[scheme]) {
			host = host.slice(0, host.length - DEFAULT_PORT[scheme].length - 1);
		}
		if (/[\u0000-\u0020\u007f<>"`{}|\\\^]/.test(m[3] + (m[4] || ''))) { return null; }
		path = removeDots(m[3] || '/');
		query = m[4] && m[4] !== '?' ? m[4] : '';
		return { scheme: scheme, host: host, path: path, query: query };
	}

	/* The WebSocket constructor's URL steps: parse against the base URL,
	 * http(s) becomes ws(s), any other scheme or a fragment is a SyntaxError.
	 * Returns {url (serialized, ws: or wss:), origin, scheme, host, path, query}. */
	function wsUrl(input) {
		var p;
		input = String(input);
		p = parseUrl(input);
		if (!p) { throw domError('SyntaxError', "The URL '" + input + "' is invalid."); }
		if (p.scheme === 'http') { p.scheme = 'ws'; }
		if (p.scheme === 'https') { p.scheme = 'wss'; }
		if (p.scheme !== 'ws' && p.scheme !== 'wss') {
			throw domError('SyntaxError', "The URL's scheme must be either 'http', 'https', 'ws', or 'wss'. '" +
				input + "' is not allowed.");
		}
		if (input.indexOf('#') >= 0) {
			throw domError('SyntaxError', "The URL contains a fragment identifier ('" + input +
				"'). Fragment identifiers are not allowed in WebSocket URLs.");
		}
		p.origin = p.scheme + '://' + p.host;
		p.url = p.origin + p.path + p.query;
		return p;
	}

	var ROUTE_RE = /^[A-Za-z0-9_.\-]{1,64}$/;

	/* Where the bridge and the route are, for a ws(s) URL from wsUrl: the last
	 * path segment (percent-decoded) is the route, the path before it the
	 * bridge's base, ws becomes http and wss https; the query is not used. */
	function bridgeOf(p) {
		var slash = p.path.lastIndexOf('/'), route;
		try {
			route = decodeURIComponent(p.path.slice(slash + 1));
		} catch (e) { route = ''; }
		if (!ROUTE_RE.test(route)) {
			throw domError('SyntaxError', "The URL '" + p.url + "' names no route: its last path segment must be " +
				'a route name (1 to 64 letters, digits, _ - .).');
		}
		return { base: (p.scheme === 'wss' ? 'https' : 'http') + '://' + p.host + p.path.slice(0, slash), route: route };
	}

	/* Does a URL (as given to the constructor) end in a path segment? */
	function namesRoute(url) {
		var p = parseUrl(String(url));
		return !!(p && /[^\/]$/.test(p.path));
	}

	/* The protocols argument, per WebIDL (DOMString or sequence<DOMString>)
	 * and the WebSocket steps: each one an RFC 6455 token, none twice. */
	function checkProtocols(protocols) {
		var list = [], seen = {}, i, p;
		if (protocols === undefined) { return list; }
		if (Object.prototype.toString.call(protocols) === '[object Array]') {
			for (i = 0; i < protocols.length; i++) { list.push(String(protocols[i])); }
		} else {
			list.push(String(protocols));
		}
		for (i = 0; i < list.length; i++) {
			p = list[i];
			if (!/^[!#$%&'*+\-.\^_`|~0-9A-Za-z]+$/.test(p)) {
				throw domError('SyntaxError', "The subprotocol '" + p + "' is invalid.");
			}
			if (hasOwn.call(seen, '$' + p)) {
				throw domError('SyntaxError', "The subprotocol '" + p + "' is duplicated.");
			}
			seen['$' + p] = true;
		}
		return list;
	}

	/* Apply an install() map to a ws(s) URL: an exact key, else the longest
	 * key that is a prefix ending at "/" (or followed by "/" or "?" in the
	 * URL), whose remainder is appended to the value. Keys are normalized as
	 * the constructor does (http to ws, default ports, a "/" path). A
	 * function map is called with the URL. No match: the URL itself. */
	function mapUrl(map, url) {
		var best = null, bestKey = '', k, key, v, rest, c;
		if (typeof map === 'function') { return map(url) || url; }
		for (k in map) {
			if (!hasOwn.call(map, k)) { continue; }
			try { key = wsUrl(k).url; } catch (e) { continue; }
			if (url === key) { return String(map[k]); }
			c = url.charAt(key.length);
			if (url.slice(0, key.length) === key && key.length > bestKey.length &&
				(key.charAt(key.length - 1) === '/' || c === '/' || c === '?')) {
				best = String(map[k]);
				bestKey = key;
			}
		}
		if (best === null) { return url; }
		rest = url.slice(bestKey.length);
		v = best;
		if (bestKey.charAt(bestKey.length - 1) === '/' && v.charAt(v.length - 1) !== '/' && rest) { v += '/'; }
		return v + rest;
	}

	/* ---- events ---- */

	/* An event object: the engine's Event, MessageEvent or CloseEvent where
	 * they can be constructed, else a plain object with the same fields.
	 * `extra` fields (ours, beyond the standard) are added as own properties. */
	function makeEvent(type, cls, init, extra) {
		var ev = null, k, C = cls === 'MessageEvent' ? NativeMessageEvent : cls === 'CloseEvent' ? NativeCloseEvent : NativeEvent;
		if (C) {
			try { ev = new C(type, init); } catch (e) { ev = null; }
		}
		if (!ev && NativeEvent) {
			try { ev = new NativeEvent(type); } catch (e2) { ev = null; }
			if (ev) { for (k in init) { if (hasOwn.call(init, k)) { setField(ev, k, init[k]); } } }
		}
		if (!ev) {
			ev = plainEvent(type);
			for (k in init) { if (hasOwn.call(init, k)) { ev[k] = init[k]; } }
		}
		for (k in extra) { if (hasOwn.call(extra, k)) { setField(ev, k, extra[k]); } }
		return ev;
	}

	/* Set a field of an event, also one its class defines read-only. */
	function setField(ev, k, v) {
		try { ev[k] = v; } catch (e) {}
		if (ev[k] !== v && HAS_ACCESSORS) {
			try { Object.defineProperty(ev, k, { value: v, configurable: true, enumerable: true, writable: true }); } catch (e2) {}
		}
	}

	/* The fields of Event, for engines that cannot construct one. */
	function plainEvent(type) {
		var ev = { type: type, target: null, currentTarget: null, srcElement: null, eventPhase: 0,
			bubbles: false, cancelable: false, composed: false, defaultPrevented: false,
			isTrusted: false, timeStamp: now(), returnValue: true, _stop: false };
		ev.preventDefault = function () { if (ev.cancelable) { ev.defaultPrevented = true; ev.returnValue = false; } };
		ev.stopPropagation = noop;
		ev.stopImmediatePropagation = function () { ev._stop = true; };
		ev.composedPath = function () { return ev.currentTarget ? [ev.currentTarget] : []; };
		return ev;
	}

	/* A listener's key, for de-duplication: (type, callback, capture). */
	function sameListener(a, callback, capture) {
		return a.callback === callback && a.capture === capture;
	}

	/* The EventTarget methods, for engines without a constructible
	 * EventTarget: listener options (capture, once, passive, signal),
	 * handleEvent objects, de-duplication, removal during dispatch. */
	var eventTargetMethods = {
		addEventListener: function (type, callback, options) {
			var list, capture = false, once = false, signal = null, rec, i, self = this;
			if (callback === null || callback === undefined) { return; }
			if (typeof options === 'boolean') {
				capture = options;
			} else if (options && typeof options === 'object') {
				capture = !!options.capture;
				once = !!options.once;
				signal = options.signal || null;
			}
			if (signal && signal.aborted) { return; }
			type = String(type);
			list = this._listeners[type] || (this._listeners[type] = []);
			for (i = 0; i < list.length; i++) { if (sameListener(list[i], callback, capture)) { return; } }
			rec = { callback: callback, capture: capture, once: once, removed: false };
			list.push(rec);
			if (signal && signal.addEventListener) {
				signal.addEventListener('abort', function () { self.removeEventListener(type, callback, capture); });
			}
		},
		removeEventListener: function (type, callback, options) {
			var list = this._listeners[String(type)] || [], capture = false, i;
			if (typeof options === 'boolean') { capture = options; } else if (options && typeof options === 'object') { capture = !!options.capture; }
			for (i = 0; i < list.length; i++) {
				if (sameListener(list[i], callback, capture)) {
					list[i].removed = true;
					list.splice(i, 1);
					return;
				}
			}
		},
		dispatchEvent: function (ev) {
			var list, i, rec, fn, handler, stopped = false;
			if (!ev || typeof ev.type !== 'string') { throw new TypeError('dispatchEvent needs an Event'); }
			setField(ev, 'target', this);
			setField(ev, 'currentTarget', this);
			setField(ev, 'srcElement', this);
			setField(ev, 'eventPhase', 2);
			if (!HAS_ACCESSORS) {
				/* ES3: on<type> is a plain property, called before the listeners. */
				handler = this['on' + ev.type];
				if (typeof handler === 'function') { callListener(this, handler, ev); }
			}
			list = (this._listeners[ev.type] || []).slice();
			for (i = 0; i < list.length && !stopped; i++) {
				rec = list[i];
				if (rec.removed) { continue; }
				if (rec.once) { this.removeEventListener(ev.type, rec.callback, rec.capture); }
				fn = rec.callback;
				if (typeof fn === 'function') {
					callListener(this, fn, ev);
				} else if (fn && typeof fn.handleEvent === 'function') {
					callListener(fn, fn.handleEvent, ev);
				}
				stopped = ev._stop === true;
			}
			setField(ev, 'currentTarget', null);
			setField(ev, 'eventPhase', 0);
			return !ev.defaultPrevented;
		}
	};

	/* Call a listener; an exception is reported (rethrown from a timer), as
	 * the engine does for its own listeners, and dispatch goes on. */
	function callListener(that, fn, ev) {
		try {
			fn.call(that, ev);
		} catch (e) {
			setTimeout(function () { throw e; }, 0);
		}
	}

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

	/* new PollBridge(url[, protocols[, options]]): as new WebSocket(url,
	 * protocols). url names the bridge and the route: its last path segment
	 * is the route, the rest the bridge's base, ws(s) is http(s)
	 * ("wss://bridge.example/chat": the bridge https://bridge.example, route
	 * "chat"). options: transport ('auto' | 'poll' | 'sse'), wait (long-poll
	 * seconds), headers (extra request headers), withCredentials,
	 * streamTimeout and heartbeatTimeout (ms, buffering-proxy detection).
	 *
	 * The older form new PollBridge(base, route[, options]) still works: it is
	 * recognized when the second argument is a string and a third argument is
	 * given, or when the URL names no route (no last path segment).
	 * options.protocols then holds the subprotocols. */
	function PollBridge(url, protocols, options) {
		var self, legacy, p, b, info, display, o = {};
		if (!(this instanceof PollBridge)) {
			throw new TypeError("Failed to construct 'PollBridge': Please use the 'new' operator.");
		}
		if (arguments.length < 1) {
			throw new TypeError("Failed to construct 'PollBridge': 1 argument required, but only 0 present.");
		}
		legacy = typeof protocols === 'string' && (arguments.length >= 3 || !namesRoute(url));
		if (options && typeof options === 'object') { o = options; }
		if (legacy) {
			p = parseUrl(String(url || '') || '/');
			info = { url: String(url || '').replace(/\/+$/, ''), base: String(url || '').replace(/\/+$/, ''),
				route: String(protocols),
				origin: p ? p.scheme + '://' + p.host : '' };
			protocols = checkProtocols(o.protocols === undefined ? [] : o.protocols);
		} else {
			display = o._display || null;
			p = wsUrl(url);
			protocols = checkProtocols(protocols);
			b = bridgeOf(p);
			info = { url: display ? display.url : p.url, origin: display ? display.origin : p.origin,
				base: b.base, route: b.route };
		}
		self = NativeET ? global.Reflect.construct(NativeET, [], typeof this.constructor === 'function' ?
			this.constructor : PollBridge) : this;
		init(self, info, protocols, o);
		return self;
	}

	function init(self, info, protocols, options) {
		self.url = info.url;
		self.route = info.route;
		self.bridge = info.base;        /* where requests go: bridge + '/v1/sessions' */
		self.readyState = CONNECTING;
		self.protocol = '';
		self.extensions = '';
		self.bufferedAmount = 0;
		self._binaryType = HAS_BLOB ? 'blob' : HAS_BUFFERS ? 'arraybuffer' : 'base64';
		if (!HAS_ACCESSORS) {
			self.binaryType = self._binaryType;
			self.onopen = self.onmessage = self.onclose = self.onerror = self.onreopen = null;
		}
		self.transport = null;          /* 'poll' or 'sse' once receiving */
		self.fallback = null;           /* why the stream was given up for polling */
		self.session = null;            /* the bridge's session id */

		self._origin = info.origin;
		self._transport = options.transport || 'auto';
		self._wait = options.wait === undefined ? 25 : Math.max(0, Number(options.wait) || 0);
		self._headers = options.headers || {};
		self._withCredentials = !!options.withCredentials;
		self._streamTimeout = options.streamTimeout === undefined ? STREAM_TIMEOUT : Number(options.streamTimeout) || 0;
		self._heartbeatTimeout = options.heartbeatTimeout === undefined ? HEARTBEAT_TIMEOUT : Number(options.heartbeatTimeout) || 0;
		self._listeners = {};
		self._handlers = {};            /* on<type> values (ES5 engines) */
		self._handlerFns = {};          /* the listeners that call them */
		self._timers = {};
		self._base = null;              /* bridge + '/v1/sessions/<id>' */
		self._cursor = 0;               /* highest seq delivered */
		self._acked = 0;                /* the cursor the current stream started from */
		self._streamWorked = false;     /* an event stream has delivered bytes */
		self._poll = null;              /* in-flight poll or probe request */
		self._stream = null;            /* the event stream being read */
		self._sendQueue = [];           /* items not yet in a request */
		self._sendBatch = null;         /* the request being sent: {seq, body, bytes} */
		self._sending = false;          /* a send request (or its retry timer) is pending */
		self._sendSeq = 1;              /* X-Send-Seq of the next new request */
		self._gapResyncs = 0;
		self._pollBackoff = new Backoff();
		self._sendBackoff = new Backoff();
		self._userClosing = false;      /* close() was called while open */
		self._closeCode = 1005;
		self._closeReason = '';
		self._create(protocols, 0);
	}

	var proto;
	if (NativeET) {
		PollBridge.prototype = Object.create(NativeET.prototype);
		PollBridge.prototype.constructor = PollBridge;
	}
	proto = PollBridge.prototype;
	if (!NativeET) {
		proto.addEventListener = eventTargetMethods.addEventListener;
		proto.removeEventListener = eventTargetMethods.removeEventListener;
		proto.dispatchEvent = eventTargetMethods.dispatchEvent;
	}

	PollBridge.CONNECTING = proto.CONNECTING = CONNECTING;
	PollBridge.OPEN = proto.OPEN = OPEN;
	PollBridge.CLOSING = proto.CLOSING = CLOSING;
	PollBridge.CLOSED = proto.CLOSED = CLOSED;

	/* on<type> event handler properties, as the standard's: setting a
	 * function adds a listener in that place of the list, null removes it. */
	function defineHandler(type) {
		Object.defineProperty(proto, 'on' + type, {
			configurable: true, enumerable: true,
			get: function () { return hasOwn.call(this._handlers, type) ? this._handlers[type] : null; },
			set: function (fn) {
				var self = this;
				if (typeof fn !== 'function' && !(fn && typeof fn === 'object')) { fn = null; }
				if (fn === null) {
					if (this._handlerFns[type]) { this.removeEventListener(type, this._handlerFns[type]); }
					delete this._handlerFns[type];
					delete this._handlers[type];
					return;
				}
				this._handlers[type] = fn;
				if (!this._handlerFns[type]) {
					this._handlerFns[type] = function (ev) {
						var h = self._handlers[type];
						if (typeof h === 'function' && h.call(self, ev) === false && ev.cancelable) { ev.preventDefault(); }
					};
					this.addEventListener(type, this._handlerFns[type]);
				}
			}
		});
	}
	if (HAS_ACCESSORS) {
		(function () {
			for (var i = 0; i < EVENT_TYPES.length; i++) { defineHandler(EVENT_TYPES[i]); }
		}());
		/* binaryType: "blob" or "arraybuffer" ("base64" too, ours); other values are ignored. */
		Object.defineProperty(proto, 'binaryType', {
			configurable: true, enumerable: true,
			get: function () { return this._binaryType; },
			set: function (v) {
				v = String(v);
				if ((v === 'blob' && HAS_BLOB) || (v === 'arraybuffer' && HAS_BUFFERS) || v === 'base64') { this._binaryType = v; }
			}
		});
	}

	/* Fire one event at the client. */
	proto._emit = function (type, cls, initDict, extra) {
		var ev = makeEvent(type, cls || 'Event', initDict || {}, extra);
		if (NativeET) {
			NativeET.prototype.dispatchEvent.call(this, ev);
		} else {
			eventTargetMethods.dispatchEvent.call(this, ev);
		}
	};

	/* ---- plumbing ---- */

	proto._allHeaders = function (headers) {
		var all = {}, k;
		for (k in this._headers) { if (hasOwn.call(this._headers, k)) { all[k] = this._headers[k]; } }
		for (k in headers) { if (hasOwn.call(headers, k)) { all[k] = headers[k]; } }
		return all;
	};

	proto._http = function (method, url, headers, body, timeout, done) {
		return request({ method: method, url: url, headers: this._allHeaders(headers), body: body, timeout: timeout,
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

	proto._cancel = function (name) {
		clearTimeout(this._timers[name]);
		this._timers[name] = null;
	};

	/* Stop receiving: no poll, no stream, no acknowledgement pending. */
	proto._stopReceiving = function () {
		if (this._poll) { this._poll.abort(); this._poll = null; }
		this._closeStream();
		this._cancel('poll');
		this._cancel('ack');
		this._cancel('stream');
	};

	/* Stop sending: nothing in flight, nothing queued. */
	proto._stopSending = function () {
		if (this._sendReq) { this._sendReq.abort(); this._sendReq = null; }
		this._cancel('send');
		this._sendQueue = [];
		this._sendBatch = null;
		this._sending = false;
	};

	/* Stop everything and report the close (once): readyState CLOSED, then
	 * an error event if the connection failed, then the close event. */
	proto._finish = function (code, reason, wasClean, error) {
		var k;
		if (this.readyState === CLOSED) { return; }
		this.readyState = CLOSED;
		this._stopReceiving();
		this._stopSending();
		for (k in this._timers) { if (hasOwn.call(this._timers, k)) { clearTimeout(this._timers[k]); } }
		if (error) { this._emit('error', 'Event', {}, { message: error }); }
		this._emit('close', 'CloseEvent', { wasClean: wasClean, code: code, reason: reason });
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
		this._http('POST', this.bridge + '/v1/sessions', { 'Content-Type': 'application/json' },
			JSONX.stringify(body), 30000, function (status, res, xhr) {
				var ok = status === 201 && res && typeof res.session === 'string';
				if (self.readyState !== CONNECTING) {
					/* close() came first: end the session it created, if any. */
					if (ok) { self._http('DELETE', self.bridge + '/v1/sessions/' + encodeURIComponent(res.session), {}, null, 10000, noop); }
					return;
				}
				if (ok) {
					self.session = res.session;
					self._base = self.bridge + '/v1/sessions/' + encodeURIComponent(res.session);
					self.protocol = res.protocol || '';
					self._maxBytes = res.max_message_bytes || 1048576;
					if (res.wait_max) { self._wait = Math.min(self._wait, res.wait_max); }
					self.readyState = OPEN;
					self._emit('open', 'Event', {});
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

	/* Streams are read with XMLHttpRequest, on engines that have
	 * EventSource (which tells a current engine, whose XMLHttpRequest hands
	 * out a response as it arrives). */
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
		var i, m, data, bt = HAS_ACCESSORS ? this._binaryType : this.binaryType;
		for (i = 0; i < messages.length && this.readyState === OPEN; i++) {
			m = messages[i];
			if (!m || typeof m.seq !== 'number' || m.seq <= this._cursor) { continue; }
			this._cursor = m.seq;
			if (m.type === 'text' || m.type === 'binary') {
				data = m.data;
				if (m.type === 'binary' && HAS_BUFFERS && bt !== 'base64') {
					data = base64ToBuffer(data);
					if (bt === 'blob' && HAS_BLOB) { data = new global.Blob([data]); }
				}
				this._emit('message', 'MessageEvent',
					{ data: data, origin: this._origin, lastEventId: '', source: null, ports: [] },
					{ binary: m.type === 'binary', seq: m.seq });
			} else if (m.type === 'reopen') {
				/* The bridge re-dialled the upstream: its state was lost. */
				this._emit('reopen', 'Event', {}, { seq: m.seq });
			}
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

	/* ---- the event stream ----
	 *
	 * GET .../events?after=<cursor>, read with XMLHttpRequest as it arrives:
	 * one event per message (id = seq, data = the JSON message a poll
	 * returns). The bridge writes "retry: 2000" first and a comment line as
	 * a heartbeat while idle, so a stream that carries nothing at all is one
	 * that something holds back: a buffering proxy. */
	proto._openStream = function () {
		var self = this, xhr, st, headers, k;
		this.transport = 'sse';
		this._acked = this._cursor;
		xhr = newXHR();
		st = this._stream = { xhr: xhr, pos: 0, rest: '', data: '', event: '', bytes: false,
			live: 0, probed: false };
		function read() {
			var text = '';
			if (self._stream !== st) { return; }
			try {
				if (xhr.status !== 200) { return; }
				text = xhr.responseText || '';
			} catch (e) { return; }
			if (text.length > st.pos) {
				k = text.substring(st.pos);
				st.pos = text.length;
				self._streamBytes(st, k);
			}
		}
		xhr.onreadystatechange = function () {
			if (self._stream !== st) { return; }
			if (xhr.readyState === 3) {
				read();
			} else if (xhr.readyState === 4) {
				read();
				if (self._stream === st) { self._streamEnded(st); }
			}
		};
		try { xhr.onprogress = read; } catch (e) {}
		try {
			xhr.open('GET', this._base + '/events?after=' + this._cursor, true);
			headers = this._allHeaders({ Accept: 'text/event-stream' });
			for (k in headers) { if (hasOwn.call(headers, k)) { xhr.setRequestHeader(k, headers[k]); } }
			if (this._withCredentials) { xhr.withCredentials = true; }
			xhr.send(null);
		} catch (e2) {
			this._stream = null;
			this._longPoll();
			return;
		}
		if (this._transport === 'auto' && this._streamTimeout > 0) {
			this._later('watch', this._streamTimeout, this._streamSilent);
		}
	};

	/* Stop reading the stream (if any). */
	proto._closeStream = function () {
		var st = this._stream;
		this._cancel('watch');
		this._cancel('sendwatch');
		if (!st) { return; }
		this._stream = null;
		st.xhr.onreadystatechange = noop;
		try { st.xhr.onprogress = null; } catch (e) {}
		try { st.xhr.abort(); } catch (e2) {}
	};

	/* Bytes arrived on the stream: it is alive. Parse them into events. */
	proto._streamBytes = function (st, chunk) {
		var lines, i, line, colon, field, value;
		st.bytes = true;
		this._streamWorked = true;
		this._pollBackoff.reset();
		if (this._transport === 'auto' && this._heartbeatTimeout > 0) {
			this._later('watch', this._heartbeatTimeout, this._streamSilent);
		} else {
			this._cancel('watch');
		}
		lines = (st.rest + chunk).split(/\r\n|\r|\n/);
		st.rest = lines.pop();
		for (i = 0; i < lines.length && this._stream === st; i++) {
			line = lines[i];
			if (line === '') {
				if (st.data !== '') {
					st.live = now();
					this._streamEvent(st.event || 'message', st.data.slice(0, -1));
				}
				st.data = '';
				st.event = '';
			} else if (line.charAt(0) === ':') {
				st.live = now();                            /* a comment: the heartbeat */
			} else {
				colon = line.indexOf(':');
				field = colon < 0 ? line : line.slice(0, colon);
				value = colon < 0 ? '' : line.slice(colon + (line.charAt(colon + 1) === ' ' ? 2 : 1));
				if (field === 'data') { st.data += value + '\n'; } else if (field === 'event') { st.event = value; }
			}
		}
	};

	/* One event from the stream. */
	proto._streamEvent = function (type, data) {
		var m;
		try { m = JSONX.parse(data); } catch (e) { return; }
		if (type === 'close') {
			this._upstreamClosed(m, true);
		} else if (type === 'text' || type === 'binary' || type === 'reopen') {
			this._deliver([m]);
			this._scheduleAck();
		}
	};

	/* The stream's response ended. A 200 stream that ended by itself (its
	 * window was full, a newer request displaced it) or was cut after it
	 * carried something is opened again from the cursor; any other answer,
	 * or a network error before any byte, is looked into with a short poll. */
	proto._streamEnded = function (st) {
		var status = 0;
		this._closeStream();
		if (this.readyState !== OPEN) { return; }
		try { status = st.xhr.status; } catch (e) { status = 0; }
		if (status === 200 && st.bytes) {
			this._later('stream', 0, this._openStream);
		} else if (status === 0 && st.bytes) {
			this._later('stream', this._pollBackoff.next(null), this._openStream);
		} else {
			this._probe(false);
		}
	};

	/* The stream showed nothing for too long (transport 'auto' only):
	 * nothing at all since it started (not even the bridge's first line)
	 * means a proxy holds it, so give it up for long polling. A stream that
	 * started and then went silent longer than the heartbeat is checked
	 * with a short poll. */
	proto._streamSilent = function () {
		var st = this._stream;
		if (!st || this.readyState !== OPEN) { return; }
		if (!st.bytes) {
			this._goPolling('buffering proxy: no byte of the event stream within ' + this._streamTimeout + ' ms');
		} else {
			this._probe(true);
		}
	};

	/* The send path shows traffic (a send was accepted): if the stream then
	 * carries neither an event nor a heartbeat for streamTimeout, check it
	 * with a short poll (once per stream). */
	proto._sendWorked = function () {
		var sentAt = now();
		if (this._transport !== 'auto' || !this._streamTimeout || this._timers.sendwatch ||
			(this._stream && this._stream.probed)) { return; }
		this._later('sendwatch', this._streamTimeout, function () {
			var st = this._stream;
			if (st && !st.probed && st.live < sentAt && this.readyState === OPEN) { this._probe(true); }
		});
	};

	/* Give the stream up for long polling, from the cursor: nothing lost. */
	proto._goPolling = function (why) {
		this._closeStream();
		this.fallback = why;
		this._transport = 'poll';
		this._pollBackoff.reset();
		this._longPoll();
	};

	/* A short poll from the cursor, when the stream is in doubt. It ends the
	 * stream on the bridge. Checking (buffered): messages the stream should
	 * have carried mean it is held back, so poll from now on; none: stream
	 * again. After a refused stream: the session is gone (close 1006), the
	 * bridge is busy (stream again later), or it has no /events (auto: poll). */
	proto._probe = function (checking) {
		var self = this;
		if (this._stream) { this._stream.probed = true; }
		this._closeStream();
		this._poll = this._http('GET', this._base + '/messages?after=' + this._cursor + '&wait=0',
			{}, null, 15000, function (status, res, xhr) {
				var found;
				self._poll = null;
				if (self.readyState !== OPEN) { return; }
				if (status === 200 && res && res.messages) {
					found = res.messages.length > 0;
					self._deliver(res.messages);
					if (self.readyState !== OPEN) { return; }
					if (res.state === 'closed') {
						self._upstreamClosed(res.close, true);
					} else if (checking && found) {
						self._goPolling('buffering proxy: the event stream held back messages a poll found');
					} else if (checking) {
						self._openStream();
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
	 * newer poll arrives. */
	proto._scheduleAck = function () {
		if (!this._timers.ack) { this._later('ack', ACK_INTERVAL, this._ack); }
	};

	proto._ack = function () {
		if (this.readyState !== OPEN || !this._stream || this._cursor === this._acked) { return; }
		this._closeStream();
		this._openStream();
	};

	/* ---- sending ---- */

	/* The bytes send() counts for data: UTF-8 for text, the size of binary data. */
	function sizeOf(data) {
		if (HAS_BUFFERS && data instanceof ArrayBuffer) { return data.byteLength; }
		if (HAS_BUFFERS && data && data.buffer instanceof ArrayBuffer && typeof data.byteOffset === 'number') { return data.byteLength; }
		if (HAS_BLOB && data instanceof global.Blob) { return data.size; }
		return utf8Length(wellFormed(String(data)));
	}

	/* send(data), as WebSocket.send: a string is text, an ArrayBuffer, typed
	 * array, DataView or Blob is binary (a Blob is read first, order is
	 * kept), anything else becomes a string. Throws InvalidStateError while
	 * connecting. Once closing or closed, the data is discarded but
	 * bufferedAmount still grows by its size, as the standard says. */
	proto.send = function (data) {
		var item;
		if (arguments.length < 1) {
			throw new TypeError("Failed to execute 'send' on 'WebSocket': 1 argument required, but only 0 present.");
		}
		if (this.readyState === CONNECTING) { throw domError('InvalidStateError', 'Still in CONNECTING state.'); }
		if (this.readyState !== OPEN) {
			this.bufferedAmount += sizeOf(data);
			return;
		}
		if (HAS_BUFFERS && data instanceof ArrayBuffer) {
			item = { type: 'binary', data: bytesToBase64(new Uint8Array(data)), bytes: data.byteLength };
		} else if (HAS_BUFFERS && data && data.buffer instanceof ArrayBuffer && typeof data.byteOffset === 'number') {
			/* a typed array or a DataView */
			item = { type: 'binary', data: bytesToBase64(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
				bytes: data.byteLength };
		} else if (HAS_BLOB && data instanceof global.Blob) {
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
					if (self.readyState === OPEN) { self._sendWorked(); }
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

	/* close([code[, reason]]), as WebSocket.close: code must be 1000 or
	 * 3000-4999 (InvalidAccessError), the reason at most 123 bytes of UTF-8
	 * (SyntaxError). While connecting, the connection fails (error, then
	 * close 1006). While open, queued sends go out first, then DELETE ends
	 * the session (the upstream gets close 1000: the API carries no code or
	 * reason upstream); the close event reports the code and reason given
	 * here (1005 and "" without them). */
	proto.close = function (code, reason) {
		var self = this;
		if (code !== undefined) {
			code = Number(code);
			code = isNaN(code) ? 0 : Math.max(0, Math.min(65535, Math.round(code)));     /* [Clamp] unsigned short */
			if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
				throw domError('InvalidAccessError', 'The close code must be either 1000, or between 3000 and 4999. ' + code + ' is neither.');
			}
		}
		reason = reason === undefined ? '' : wellFormed(String(reason));
		if (utf8Length(reason) > 123) { throw domError('SyntaxError', 'The close reason must not be greater than 123 UTF-8 bytes.'); }
		if (this.readyState === CLOSING || this.readyState === CLOSED) { return; }
		if (this.readyState === CONNECTING) {
			/* As WebSocket: the connection fails (its session is deleted once created). */
			this.readyState = CLOSING;
			setTimeout(function () {
				self._finish(1006, '', false, 'WebSocket is closed before the connection is established.');
			}, 0);
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
		this._cancel('closeFlush');
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

	/* ---- the polyfill ---- */

	/* PollBridge.install({ map, force, options }): define window.WebSocket
	 * (where it is missing, or always with force) as a constructor with
	 * WebSocket's signature whose connections go through a bridge. map turns
	 * the URL the application gives into the bridge URL (see mapUrl); the
	 * instance's url stays the application's. options: as the third
	 * argument of PollBridge. Returns true if it defined WebSocket. */
	PollBridge.install = function (config) {
		var map, opts, prev = global.WebSocket, k;
		config = config || {};
		map = config.map || {};
		opts = config.options || {};
		if (!config.force && prev !== undefined && prev !== null) { return false; }
		function WebSocket(url, protocols) {
			var display, o = {}, list;
			if (!(this instanceof WebSocket)) {
				throw new TypeError("Failed to construct 'WebSocket': Please use the 'new' operator.");
			}
			if (arguments.length < 1) {
				throw new TypeError("Failed to construct 'WebSocket': 1 argument required, but only 0 present.");
			}
			display = wsUrl(url);
			list = checkProtocols(protocols);
			for (k in opts) { if (hasOwn.call(opts, k)) { o[k] = opts[k]; } }
			o._display = display;
			return new PollBridge(mapUrl(map, display.url), list, o);
		}
		WebSocket.prototype = proto;
		WebSocket.CONNECTING = CONNECTING;
		WebSocket.OPEN = OPEN;
		WebSocket.CLOSING = CLOSING;
		WebSocket.CLOSED = CLOSED;
		WebSocket.PollBridge = PollBridge;
		if (prev && !prev.PollBridge) { PollBridge.NativeWebSocket = prev; }
		global.WebSocket = WebSocket;
		return true;
	};

	PollBridge.version = '2.0.0';

	return PollBridge;
}));
