// Type declarations for pollbridge.js: a WebSocket over pollbridge's HTTP API.
// The instance interface is the DOM's WebSocket, plus a few members of its own.

declare namespace PollBridge {
	/** The third argument of the constructor, and install()'s `options`. */
	interface Options {
		/** "auto" (default): an event stream where the engine can, long polling otherwise or behind a
		 * buffering proxy; "sse": the stream only; "poll": long polling only. */
		transport?: 'auto' | 'sse' | 'poll';
		/** Long-poll seconds (default 25, capped by the bridge's wait_max); 0 short-polls once a second. */
		wait?: number;
		/** Extra request headers on every request. */
		headers?: { [name: string]: string };
		/** Send cookies on cross-origin requests. */
		withCredentials?: boolean;
		/** ms: a stream that shows no byte this long after it started is given up for long polling (default 5000; 0: never). */
		streamTimeout?: number;
		/** ms: an open stream silent this long is checked with a short poll (default 40000; 0: never). */
		heartbeatTimeout?: number;
	}

	/** The old form's options: new PollBridge(base, route, options). */
	interface LegacyOptions extends Options {
		protocols?: string | string[];
	}

	interface InstallConfig {
		/** Application URL (or prefix) → bridge URL; or a function of the application's URL. */
		map?: { [url: string]: string } | ((url: string) => string | null | undefined);
		/** Replace an existing window.WebSocket too (default false). */
		force?: boolean;
		/** Options for every connection made through the installed WebSocket. */
		options?: Options;
	}

	interface PollBridgeMessageEvent extends MessageEvent {
		/** True for a binary message (useful with binaryType "base64"). */
		readonly binary: boolean;
		/** The bridge's sequence number of the message. */
		readonly seq: number;
	}

	interface PollBridgeEventMap extends WebSocketEventMap {
		reopen: Event;
	}
}

interface PollBridge extends EventTarget {
	readonly CONNECTING: 0;
	readonly OPEN: 1;
	readonly CLOSING: 2;
	readonly CLOSED: 3;
	/** The URL given (as ws: or wss:); in the old form, the bridge's base. */
	readonly url: string;
	readonly readyState: number;
	readonly bufferedAmount: number;
	readonly protocol: string;
	readonly extensions: string;
	/** "blob" (default where Blob exists) or "arraybuffer"; "base64" delivers base64 strings. */
	binaryType: BinaryType | 'base64';
	onopen: ((this: PollBridge, ev: Event) => any) | null;
	onmessage: ((this: PollBridge, ev: MessageEvent) => any) | null;
	onerror: ((this: PollBridge, ev: Event) => any) | null;
	onclose: ((this: PollBridge, ev: CloseEvent) => any) | null;
	/** The bridge dialled the upstream again: state kept there was lost. */
	onreopen: ((this: PollBridge, ev: Event) => any) | null;
	send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void;
	close(code?: number, reason?: string): void;
	addEventListener<K extends keyof PollBridge.PollBridgeEventMap>(type: K,
		listener: (this: PollBridge, ev: PollBridge.PollBridgeEventMap[K]) => any, options?: boolean | AddEventListenerOptions): void;
	addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
	removeEventListener<K extends keyof PollBridge.PollBridgeEventMap>(type: K,
		listener: (this: PollBridge, ev: PollBridge.PollBridgeEventMap[K]) => any, options?: boolean | EventListenerOptions): void;
	removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
	/** The route (the URL's last path segment, or the old form's second argument). */
	readonly route: string;
	/** The bridge's base URL (http: or https:); requests go to bridge + "/v1/sessions". */
	readonly bridge: string;
	/** "sse" or "poll" once receiving, else null. */
	readonly transport: 'sse' | 'poll' | null;
	/** Why the stream was given up for long polling (a buffering proxy), else null. */
	readonly fallback: string | null;
	/** The bridge's session id (a capability: do not log it). */
	readonly session: string | null;
}

declare var PollBridge: {
	prototype: PollBridge;
	/** As new WebSocket(url, protocols): url's last path segment is the route, the rest the bridge. */
	new (url: string | URL, protocols?: string | string[], options?: PollBridge.Options): PollBridge;
	/** The old form: the bridge's base, a route name. */
	new (base: string, route: string, options?: PollBridge.LegacyOptions): PollBridge;
	readonly CONNECTING: 0;
	readonly OPEN: 1;
	readonly CLOSING: 2;
	readonly CLOSED: 3;
	readonly version: string;
	/** The WebSocket that install({ force: true }) replaced, if any. */
	NativeWebSocket?: typeof WebSocket;
	/** Define window.WebSocket (where missing, or always with force) over the bridge. True if it did. */
	install(config?: PollBridge.InstallConfig): boolean;
};

export = PollBridge;
export as namespace PollBridge;
