/*
 * config.c: command line parsing (see config.h). One table lists every
 * option with its kind, bounds and destination, so --help, the parser and
 * the checks cannot disagree about what exists.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "compress.h"
#include "config.h"
#include "error.h"
#include "redis.h"

enum opt_kind {
	OPT_UINT,       /* unsigned seconds */
	OPT_SIZE,       /* size_t count or bytes */
	OPT_LISTEN,
	OPT_ADMIN,      /* --admin-listen */
	OPT_LOGFMT,     /* --access-log-format */
	OPT_ROUTE,
	OPT_STORE,
	OPT_STRING,
	OPT_LEVEL,
	OPT_SWITCH,
	OPT_YESNO,      /* a switch that is on by default: yes or no */
	OPT_CORS,
	OPT_HEADER,     /* --forward-header */
	OPT_FILE,       /* a path, read by pb_config_load_files() */
	OPT_CONFIG,     /* --config FILE: read first, whatever its place */
	OPT_LATER,      /* documented in docs/API.md, not built yet */
};

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t offset;
	unsigned long long min, max;
};

#define OFF(f) offsetof(struct pb_config, f)

static const struct opt pb_opts[] = {
	{ "listen", OPT_LISTEN, 0, 0, 0 },
	{ "admin-listen", OPT_ADMIN, 0, 0, 0 },
	{ "route", OPT_ROUTE, 0, 0, 0 },
	{ "store", OPT_STORE, 0, 0, 0 },
	{ "store-wait-replicas", OPT_UINT, OFF(store_wait_replicas), 0, 16 },
	{ "instance-id", OPT_STRING, OFF(instance_id), 1, 64 },
	{ "wait-max", OPT_UINT, OFF(wait_max), 0, 3600 },
	{ "idle-timeout", OPT_UINT, OFF(idle_timeout), 1, 86400 },
	{ "connect-timeout", OPT_UINT, OFF(connect_timeout), 1, 600 },
	{ "drain-timeout", OPT_UINT, OFF(drain_timeout), 1, 3600 },
	{ "max-message-bytes", OPT_SIZE, OFF(max_message_bytes), 1, 64ULL << 20 },
	{ "max-batch", OPT_SIZE, OFF(max_batch), 1, 100000 },
	{ "max-batch-bytes", OPT_SIZE, OFF(max_batch_bytes), 1, 256ULL << 20 },
	{ "max-sessions", OPT_SIZE, OFF(max_sessions), 1, 10000000 },
	{ "max-sessions-per-client", OPT_SIZE, OFF(max_sessions_per_client), 0, 10000000 },
	{ "max-connections", OPT_SIZE, OFF(max_connections), 0, 10000000 },
	{ "connection-timeout", OPT_UINT, OFF(connection_timeout), 1, 3600 },
	{ "header-timeout", OPT_UINT, OFF(header_timeout), 1, 3600 },
	{ "min-body-rate", OPT_SIZE, OFF(min_body_rate), 1, 1ULL << 30 },
	{ "max-header-bytes", OPT_SIZE, OFF(max_header_bytes), 4096, 1ULL << 20 },
	{ "max-body-bytes", OPT_SIZE, OFF(max_body_bytes), 0, 1ULL << 30 },
	{ "queue-max", OPT_SIZE, OFF(queue_max), 1, 10000000 },
	{ "queue-max-bytes", OPT_SIZE, OFF(queue_max_bytes), 0, 1ULL << 40 },
	{ "total-queue-max-bytes", OPT_SIZE, OFF(total_queue_max_bytes), 1, 1ULL << 48 },
	{ "log-level", OPT_LEVEL, 0, 0, 0 },
	{ "check-config", OPT_SWITCH, OFF(check_config), 0, 0 },
	{ "log-syslog", OPT_SWITCH, OFF(log_syslog), 0, 0 },
	{ "access-log", OPT_STRING, OFF(access_log), 1, 4096 },
	{ "access-log-format", OPT_LOGFMT, 0, 0, 0 },
	{ "sse-heartbeat", OPT_UINT, OFF(sse_heartbeat), 1, 3600 },
	{ "cors-origin", OPT_CORS, 0, 0, 0 },
	{ "jsonp", OPT_SWITCH, OFF(jsonp), 0, 0 },
	{ "lean-long-polls", OPT_YESNO, OFF(lean_long_polls), 0, 0 },
	{ "sockjs-url", OPT_STRING, OFF(sockjs_url), 1, 2048 },
	{ "compress-min-bytes", OPT_SIZE, OFF(compress_min_bytes), 0, 1ULL << 30 },
	{ "config", OPT_CONFIG, 0, 0, 0 },
	{ "ping-interval", OPT_UINT, OFF(ping_interval), 0, 3600 },
	{ "forward-header", OPT_HEADER, 0, 0, 0 },
	{ "tls-cert", OPT_FILE, OFF(tls_cert), 0, 0 },
	{ "tls-key", OPT_FILE, OFF(tls_key), 0, 0 },
	{ "upstream-ca", OPT_FILE, OFF(upstream_ca), 0, 0 },
};

static const char pb_usage[] =
"Usage: pollbridge [OPTION]...\n"
"Bridge plain-HTTP clients (short polls, long polls) to WebSocket upstreams.\n"
"\n"
"  --listen ADDR:PORT        listen address (default " PB_DEFAULT_LISTEN "; port 0 picks one;\n"
"                            IPv6 as [ADDR]:PORT)\n"
"  --admin-listen ADDR:PORT  serve /metrics, /livez and /readyz (and /healthz)\n"
"                            on this separate plain-HTTP listener instead of the\n"
"                            public one, which then answers 404 for them; port 0\n"
"                            picks one (ready line \"admin listening on ADDR:PORT\")\n"
"  --route NAME=URL [OPTS]   map route NAME to the upstream ws:// or wss:// URL;\n"
"                            repeatable; OPTS (space-separated, in the same argument):\n"
"                            redial, origin=ORIGIN, insecure, deflate (offer\n"
"                            permessage-deflate to the upstream), and at most one\n"
"                            front door: engineio=PATH (Engine.IO polling at PATH,\n"
"                            starting and ending with '/', e.g. /socket.io/) or\n"
"                            sockjs=PREFIX (SockJS under PREFIX, starting with '/',\n"
"                            no trailing '/'); door paths hold [A-Za-z0-9._~/-],\n"
"                            may not overlap each other, be /v1 or under it, or\n"
"                            be /healthz, /livez, /readyz or /metrics\n"
"  --store memory|redis://[:PASSWORD@]HOST:PORT[/DB]\n"
"        |redis+sentinel://[:PASSWORD@]HOST[:PORT],HOST[:PORT].../MASTER[/DB]\n"
"        |redis+cluster://[:PASSWORD@]HOST[:PORT],HOST[:PORT].../\n"
"                            where sessions are buffered (default memory); with\n"
"                            Redis, instances share sessions and adopt each\n"
"                            other's when one drains or dies; with Sentinel, the\n"
"                            sentinels (port default 26379) name the primary of\n"
"                            MASTER and its failovers are followed; with Cluster,\n"
"                            the seed nodes (port default 6379) give the slot\n"
"                            map, each session lives on its slot's primary, and\n"
"                            failovers and resharding are followed\n"
"  --store-wait-replicas N   with Redis, acknowledge a create, a send, an upstream\n"
"                            message or close only once N replicas confirmed it\n"
"                            (WAIT, at most 1 s, else 503; in a cluster, replicas\n"
"                            of the session's primary); default 0\n"
"  --instance-id ID          this instance's name in logs and in Redis; unique\n"
"                            per running instance (default: hostname-pid)\n"
"  --wait-max S              longest long poll, seconds (default 30)\n"
"  --idle-timeout S          end a session after S seconds without a request;\n"
"                            also how long an ended session answers 410 (default 60)\n"
"  --connect-timeout S       the one deadline of an upstream dial (TCP connect, TLS\n"
"                            and the WebSocket upgrade), seconds; 504 after it\n"
"                            (default 10)\n"
"  --drain-timeout S         on SIGTERM, wait at most S seconds for requests to be\n"
"                            answered and upstreams to close before exiting\n"
"                            (default 5)\n"
"  --max-message-bytes N     largest message in either direction (default 1048576)\n"
"  --max-batch N             most messages per poll answer, the default and ceiling\n"
"                            of ?max= (default 100)\n"
"  --max-batch-bytes N       byte budget of one poll answer; one message is always\n"
"                            sent, however large (default 1048576)\n"
"  --max-sessions N          live sessions per instance (default 10000)\n"
"  --max-sessions-per-client N  live sessions per client address on this\n"
"                            instance (429 too_many_client_sessions; default 0:\n"
"                            no limit)\n"
"  --max-connections N       client connections at once; more are refused\n"
"                            (default: half the descriptor limit)\n"
"  --connection-timeout S    close a client connection on which nothing at all\n"
"                            arrived for S seconds (inactivity only: a byte now\n"
"                            and then resets it; see --header-timeout); waiting\n"
"                            polls and streams are not idle (default 60)\n"
"  --header-timeout S        a request's line and headers must be complete within\n"
"                            S seconds of the connection's accept, or on a\n"
"                            keep-alive connection of the previous answer (so an\n"
"                            idle keep-alive connection lasts at most S seconds);\n"
"                            else the connection is closed (default 10)\n"
"  --min-body-rate N         a request body must arrive within --header-timeout\n"
"                            seconds of the headers plus one second per N bytes\n"
"                            received; else the connection is closed. Waiting\n"
"                            polls and streams are complete requests, never cut\n"
"                            (default 1024)\n"
"  --max-header-bytes N      request line and headers (431 headers_too_large\n"
"                            beyond; default 16384); each open client\n"
"                            connection keeps N plus 4 KiB in memory\n"
"  --max-body-bytes N        request body (413 beyond; default 0: twice\n"
"                            --max-message-bytes plus 64 KiB)\n"
"  --queue-max N             messages buffered per session and direction (default 1000)\n"
"  --queue-max-bytes N       message bytes buffered per session and direction; a\n"
"                            send past it is 429 queue_full, an upstream past it\n"
"                            is paused (default 0: 4 x --max-message-bytes)\n"
"  --total-queue-max-bytes N message bytes this instance holds in all; past it\n"
"                            sends are 503 buffers_full and upstreams that send\n"
"                            more are paused until clients catch up (default\n"
"                            268435456, 256 MiB)\n"
"  --sse-heartbeat S         comment line on an idle event stream every S seconds\n"
"                            (default 15)\n"
"  --cors-origin ORIGIN      let pages from ORIGIN (SCHEME://HOST[:PORT], or * for\n"
"                            any) call the API from a browser; repeatable\n"
"                            (default: none)\n"
"  --jsonp                   allow ?callback= on GET .../messages (script-tag\n"
"                            polling for the oldest browsers)\n"
"  --lean-long-polls yes|no  whether a long poll (/v1, Engine.IO, SockJS xhr or\n"
"                            jsonp) waiting on plain HTTP keeps only its\n"
"                            socket rather than libmicrohttpd's connection\n"
"                            memory (--max-header-bytes + 4 KiB) (default: yes)\n"
"  --sockjs-url URL          the sockjs-client script the SockJS iframe page\n"
"                            (PREFIX/iframe.html) loads, for the iframe-based\n"
"                            transports; a URL the browser can reach (default:\n"
"                            none, the page answers 404)\n"
"  --compress-min-bytes N    gzip poll, JSONP and stream answers of at least N\n"
"                            bytes for clients that send Accept-Encoding: gzip;\n"
"                            event streams are compressed whole, flushed per\n"
"                            event; 0 disables (default 1024)\n"
"  --forward-header NAME     a request header of the client's create to send on\n"
"                            the upstream handshake; repeatable, at most 16;\n"
"                            replaces the default list Cookie, Authorization,\n"
"                            User-Agent (X-Forwarded-For is always sent)\n"
"  --tls-cert FILE           serve HTTPS with this PEM certificate (chain)...\n"
"  --tls-key FILE            ...and this PEM private key (both or neither)\n"
"  --upstream-ca FILE        PEM CA bundle that wss:// upstreams must verify\n"
"                            against (default: the system's); the route option\n"
"                            insecure skips verification\n"
"  --ping-interval S         ping an upstream silent for S seconds; close it\n"
"                            (clients see 1006) if no answer within S more;\n"
"                            0 disables (default 20)\n"
"  --config FILE             read options from FILE first: one \"name = value\"\n"
"                            per line (long option names; switches take yes or\n"
"                            no; # comments); flags override single values and\n"
"                            add to repeatable ones\n"
"  --log-level LEVEL         error, warn, info or debug (default info)\n"
"  --log-syslog              log to syslog (daemon facility) instead of stderr\n"
"  --access-log FILE         append one line per answered request to FILE\n"
"  --access-log-format pollbridge|combined\n"
"                            the access log's line format: pollbridge (default)\n"
"                            or the combined log format of Apache and nginx, with\n"
"                            the session id's first 6 characters as the user\n"
"  --check-config            validate the options, print \"config ok\" and exit\n"
"  --version                 print the version and exit\n"
"  --help                    print this help and exit\n"
"\n"

"Logs go to stderr; the ready line is \"listening on ADDR:PORT\". SIGTERM or\n"
"SIGINT drains (answers waiting polls, closes upstreams with 1001) and exits 0.\n"
"SIGHUP re-reads --config (the command line still overrides it) and applies\n"
"it without dropping anyone; an invalid file is logged and the old\n"
"configuration kept; options that cannot change live are logged as \"needs a\n"
"restart\". SIGUSR1 reopens the access log (for logrotate). Under systemd\n"
"(NOTIFY_SOCKET) it reports READY=1, RELOADING=1, STOPPING=1 and STATUS=.\n"
"Health: GET /livez (the process serves), GET /readyz (the store is usable and\n"
"the instance is not draining; /healthz is an alias). Metrics: GET /metrics\n"
"(Prometheus text format). All on --admin-listen when it is set.\n";

const char *pb_config_usage(void)
{
	return pb_usage;
}

/* snprintf into err, ignoring truncation; control characters quoted from
 * the command line become '?' so the reason stays one line. */
static int cfg_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int cfg_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < errlen && err[i]; i++)
		if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
			err[i] = '?';
	return PB_EBADREQ;
}

/* Replace *slot with a copy of s. */
static int cfg_set_str(char **slot, const char *s, size_t len)
{
	char *p = strndup(s, len);

	if (!p)
		return PB_ENOMEM;
	free(*slot);
	*slot = p;
	return 0;
}

int pb_config_init(struct pb_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen_host = strdup("127.0.0.1");
	cfg->listen_port = 8080;
	cfg->store = strdup("memory");
	cfg->wait_max = PB_DEFAULT_WAIT_MAX;
	cfg->idle_timeout = PB_DEFAULT_IDLE_TIMEOUT;
	cfg->connect_timeout = PB_DEFAULT_CONNECT_TIMEOUT;
	cfg->drain_timeout = PB_DEFAULT_DRAIN_TIMEOUT;
	cfg->max_message_bytes = PB_DEFAULT_MAX_MESSAGE_BYTES;
	cfg->sse_heartbeat = PB_DEFAULT_SSE_HEARTBEAT;
	cfg->connection_timeout = 60;
	cfg->header_timeout = PB_DEFAULT_HEADER_TIMEOUT;
	cfg->min_body_rate = PB_DEFAULT_MIN_BODY_RATE;
	cfg->max_header_bytes = 16384;
	cfg->lean_long_polls = 1;
	cfg->ping_interval = PB_DEFAULT_PING_INTERVAL;
	cfg->max_batch = PB_DEFAULT_MAX_BATCH;
	cfg->max_batch_bytes = PB_DEFAULT_MAX_BATCH_BYTES;
	cfg->compress_min_bytes = PB_DEFAULT_COMPRESS_MIN_BYTES;
	cfg->max_sessions = PB_DEFAULT_MAX_SESSIONS;
	cfg->queue_max = PB_DEFAULT_QUEUE_MAX;
	cfg->total_queue_max_bytes = PB_DEFAULT_TOTAL_QUEUE_MAX_BYTES;
	cfg->log_level = PB_LOG_INFO;
	cfg->forward_headers[0] = strdup("Cookie");
	cfg->forward_headers[1] = strdup("Authorization");
	cfg->forward_headers[2] = strdup("User-Agent");
	cfg->nforward_headers = 3;
	if (!cfg->listen_host || !cfg->store || !cfg->forward_headers[0] ||
	    !cfg->forward_headers[1] || !cfg->forward_headers[2]) {
		pb_config_free(cfg);
		return PB_ENOMEM;
	}
	return 0;
}

/* Parse a port number 0..65535 from s[0..len). */
static int cfg_port(const char *s, size_t len, int *port)
{
	uint64_t v;

	if (pb_parse_uint53(s, len, &v) || v > 65535)
		return PB_EBADREQ;
	*port = (int)v;
	return 0;
}

/* Parse the value of --listen or --admin-listen (flag): "A.B.C.D:PORT" or
 * "[V6]:PORT", into *host and *port. */
static int cfg_listen(const char *flag, const char *v, char **host_out, int *port_out,
		      char *err, size_t errlen)
{
	const char *colon, *host = v;
	size_t hostlen;
	unsigned char tmp[sizeof(struct in6_addr)];
	char hbuf[64];
	int port, af;

	if (v[0] == '[') {
		const char *close = strchr(v, ']');

		if (!close || close[1] != ':')
			return cfg_fail(err, errlen, "%s %s: expected [IPV6]:PORT", flag, v);
		host = v + 1;
		hostlen = (size_t)(close - host);
		colon = close + 1;
		af = AF_INET6;
	} else {
		colon = strrchr(v, ':');
		if (!colon)
			return cfg_fail(err, errlen, "%s %s: expected ADDR:PORT", flag, v);
		hostlen = (size_t)(colon - v);
		af = AF_INET;
	}
	if (hostlen == 0 || hostlen >= sizeof(hbuf))
		return cfg_fail(err, errlen, "%s %s: bad address", flag, v);
	memcpy(hbuf, host, hostlen);
	hbuf[hostlen] = '\0';
	if (inet_pton(af, hbuf, tmp) != 1)
		return cfg_fail(err, errlen, "%s %s: '%s' is not a numeric IP address", flag, v, hbuf);
	if (cfg_port(colon + 1, strlen(colon + 1), &port))
		return cfg_fail(err, errlen, "%s %s: bad port", flag, v);
	*port_out = port;
	return cfg_set_str(host_out, hbuf, hostlen);
}

void pb_route_free(struct pb_route *r)
{
	free(r->name);
	free(r->url);
	free(r->host);
	free(r->path);
	free(r->origin);
	free(r->engineio);
	free(r->sockjs);
	memset(r, 0, sizeof(*r));
}

/* Check a door option's path (opt "engineio" or "sockjs"): NULL, or why
 * it is refused (static text). engineio=PATH starts and ends with '/',
 * sockjs=PREFIX starts with '/' and does not end with it; both hold only
 * [A-Za-z0-9._~/-] without "//" or "." / ".." segments, and stay clear of
 * the /v1 API and the operations paths. */
static const char *cfg_door_path_bad(const char *opt, const char *v)
{
	static const char *const ops[] = { "/healthz", "/livez", "/readyz", "/metrics" };
	size_t len = strlen(v), stem;
	int engineio = opt[0] == 'e';

	if (v[0] != '/')
		return "must start with '/'";
	if (engineio && v[len - 1] != '/')
		return "must end with '/'";
	if (!engineio && v[len - 1] == '/')
		return "must not end with '/'";
	for (const char *q = v; *q; q++)
		if (!isalnum((unsigned char)*q) && !strchr("._~/-", *q))
			return "may hold only letters, digits and . _ ~ / -";
	if (strstr(v, "//"))
		return "may not hold '//'";
	for (const char *q = v; *q; q = q + 1 + strcspn(q + 1, "/")) {
		size_t n = strcspn(q + 1, "/");

		if ((n == 1 && q[1] == '.') || (n == 2 && q[1] == '.' && q[2] == '.'))
			return "may not hold a '.' or '..' segment";
	}
	stem = engineio ? len - 1 : len;        /* without the trailing '/' */
	if ((stem == 3 && !strncmp(v, "/v1", 3)) || !strncmp(v, "/v1/", 4))
		return "may not be /v1 or under it (the /v1 API's)";
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strlen(ops[i]) == stem && !strncmp(v, ops[i], stem))
			return "may not be an operations path (/healthz, /livez, /readyz, /metrics)";
	return NULL;
}

/* The door path of a route (engineio or sockjs; NULL: none), its option
 * name in *opt. */
static const char *cfg_door_path(const struct pb_route *r, const char **opt)
{
	*opt = r->engineio ? "engineio" : "sockjs";
	return r->engineio ? r->engineio : r->sockjs;
}

/* 1 if door paths a and b overlap: one equals the other or lies under it,
 * compared by path segments (a trailing '/' ignored): /echo and /echo/x
 * overlap, /echo and /echo2 do not. */
static int cfg_doors_overlap(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la && a[la - 1] == '/')
		la--;
	if (lb && b[lb - 1] == '/')
		lb--;
	if (la > lb) {
		const char *t = a;
		size_t tl = la;

		a = b;
		la = lb;
		b = t;
		lb = tl;
	}
	return !strncmp(a, b, la) && (lb == la || b[la] == '/');
}

/* 1 if c may appear in a route name. */
static int cfg_name_char(int c)
{
	return isalnum(c) || c == '_' || c == '-' || c == '.';
}

int pb_route_parse(const char *spec, struct pb_route *r, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '='), *url, *p, *hostend, *end;
	unsigned char addr[sizeof(struct in6_addr)];
	size_t urllen;
	int rc = PB_EBADREQ;

	memset(r, 0, sizeof(*r));
	if (!eq || eq == spec)
		return cfg_fail(err, errlen, "--route %s: expected NAME=ws://HOST:PORT/PATH", spec);
	if ((size_t)(eq - spec) > PB_MAX_ROUTE_LEN)
		return cfg_fail(err, errlen, "--route %s: name longer than %d", spec, PB_MAX_ROUTE_LEN);
	for (p = spec; p < eq; p++)
		if (!cfg_name_char((unsigned char)*p))
			return cfg_fail(err, errlen,
					"--route %s: a name may hold only letters, digits, '_', '-', '.'",
					spec);
	url = eq + 1;
	urllen = strcspn(url, " \t");
	if (strncmp(url, "ws://", 5) == 0) {
		r->port = 80;
		p = url + 5;
	} else if (strncmp(url, "wss://", 6) == 0) {
		r->tls = 1;
		r->port = 443;
		p = url + 6;
	} else {
		return cfg_fail(err, errlen, "--route %s: the URL must start with ws:// or wss://", spec);
	}
	end = url + urllen;
	if (*p == '[') {
		hostend = memchr(p, ']', (size_t)(end - p));
		if (!hostend || hostend == p + 1)
			return cfg_fail(err, errlen, "--route %s: bad IPv6 host", spec);
		r->host = strndup(p + 1, (size_t)(hostend - p - 1));
		if (r->host && inet_pton(AF_INET6, r->host, addr) != 1) {
			cfg_fail(err, errlen, "--route %s: bad IPv6 host", spec);
			goto fail;
		}
		p = hostend + 1;
	} else {
		hostend = p;
		while (hostend < end && *hostend != ':' && *hostend != '/')
			hostend++;
		if (hostend == p)
			return cfg_fail(err, errlen, "--route %s: missing host", spec);
		for (const char *h = p; h < hostend; h++)
			if (!isalnum((unsigned char)*h) && *h != '-' && *h != '.' && *h != '_')
				return cfg_fail(err, errlen, "--route %s: bad host", spec);
		r->host = strndup(p, (size_t)(hostend - p));
		p = hostend;
	}
	if (!r->host)
		goto nomem;
	if (p < end && *p == ':') {
		const char *ps = ++p;

		while (p < end && *p != '/')
			p++;
		if (cfg_port(ps, (size_t)(p - ps), &r->port) || r->port == 0) {
			cfg_fail(err, errlen, "--route %s: bad port", spec);
			goto fail;
		}
	}
	if (p < end && *p != '/') {
		cfg_fail(err, errlen, "--route %s: bad URL", spec);
		goto fail;
	}
	for (const char *q = p; q < end; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#') {
			cfg_fail(err, errlen, "--route %s: bad character in the path", spec);
			goto fail;
		}
	r->path = p < end ? strndup(p, (size_t)(end - p)) : strdup("/");
	r->name = strndup(spec, (size_t)(eq - spec));
	r->url = strndup(url, urllen);
	if (!r->path || !r->name || !r->url)
		goto nomem;
	/* Options, separated by blanks. */
	p = end;
	for (;;) {
		size_t n;

		p += strspn(p, " \t");
		if (!*p)
			break;
		n = strcspn(p, " \t");
		if (n == 6 && strncmp(p, "redial", 6) == 0) {
			r->redial = 1;
		} else if (n == 8 && strncmp(p, "insecure", 8) == 0) {
			r->insecure = 1;
		} else if (n == 7 && strncmp(p, "deflate", 7) == 0) {
			r->deflate = 1;
		} else if ((n >= 9 && strncmp(p, "engineio=", 9) == 0) ||
			   (n >= 7 && strncmp(p, "sockjs=", 7) == 0)) {
			int eio = p[0] == 'e';
			const char *opt = eio ? "engineio" : "sockjs", *why;
			char **slot = eio ? &r->engineio : &r->sockjs;
			size_t skip = eio ? 9 : 7;

			if (*slot) {
				cfg_fail(err, errlen, "--route %s: %s= given twice", spec, opt);
				goto fail;
			}
			*slot = strndup(p + skip, n - skip);
			if (!*slot)
				goto nomem;
			if (r->engineio && r->sockjs) {
				cfg_fail(err, errlen, "--route %s: engineio= and sockjs= on one route "
					 "(one door per route)", spec);
				goto fail;
			}
			why = cfg_door_path_bad(opt, *slot);
			if (why) {
				cfg_fail(err, errlen, "--route %s: %s=%s %s", spec, opt, *slot, why);
				goto fail;
			}
		} else if (n > 7 && strncmp(p, "origin=", 7) == 0) {
			free(r->origin);
			r->origin = strndup(p + 7, n - 7);
			if (!r->origin)
				goto nomem;
			for (const char *q = r->origin; *q; q++)
				if ((unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e) {
					cfg_fail(err, errlen, "--route %s: bad origin", spec);
					goto fail;
				}
		} else {
			cfg_fail(err, errlen, "--route %s: unknown option '%.*s'", spec, (int)n, p);
			goto fail;
		}
		p += n;
	}
	return 0;
nomem:
	cfg_fail(err, errlen, "out of memory");
	rc = PB_ENOMEM;
fail:
	pb_route_free(r);
	return rc;
}

/* Add a route to cfg; duplicate names are an error. */
static int cfg_add_route(struct pb_config *cfg, const char *spec, char *err, size_t errlen)
{
	struct pb_route r, *nr;
	int rc = pb_route_parse(spec, &r, err, errlen);

	if (rc)
		return rc;
	if (pb_config_route(cfg, r.name)) {
		cfg_fail(err, errlen, "--route %s: route '%s' is defined twice", spec, r.name);
		pb_route_free(&r);
		return PB_EBADREQ;
	}
	for (size_t i = 0; (r.engineio || r.sockjs) && i < cfg->nroutes; i++) {
		const struct pb_route *o = &cfg->routes[i];
		const char *opt, *oopt, *path = cfg_door_path(&r, &opt);
		const char *opath = cfg_door_path(o, &oopt);

		if (opath && cfg_doors_overlap(path, opath)) {
			cfg_fail(err, errlen, "--route %s: %s=%s overlaps %s=%s of route '%s'", spec,
				 opt, path, oopt, opath, o->name);
			pb_route_free(&r);
			return PB_EBADREQ;
		}
	}
	nr = realloc(cfg->routes, (cfg->nroutes + 1) * sizeof(*nr));
	if (!nr) {
		pb_route_free(&r);
		return cfg_fail(err, errlen, "out of memory");
	}
	cfg->routes = nr;
	cfg->routes[cfg->nroutes++] = r;
	return 0;
}

/* Add an allowed CORS origin: "*", or scheme://host[:port] with no path. */
static int cfg_add_cors(struct pb_config *cfg, const char *v, char *err, size_t errlen)
{
	const char *host = strstr(v, "://");
	char *copy;

	if (strcmp(v, "*") != 0) {
		if (!host || host == v || !host[3] || strchr(host + 3, '/'))
			return cfg_fail(err, errlen,
					"--cors-origin %s: expected * or SCHEME://HOST[:PORT]", v);
		for (const char *q = v; *q; q++)
			if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
				return cfg_fail(err, errlen, "--cors-origin: bad character");
	}
	if (cfg->ncors_origins == PB_MAX_CORS_ORIGINS)
		return cfg_fail(err, errlen, "--cors-origin: at most %d origins",
				PB_MAX_CORS_ORIGINS);
	copy = strdup(v);
	if (!copy)
		return cfg_fail(err, errlen, "out of memory");
	cfg->cors_origins[cfg->ncors_origins++] = copy;
	return 0;
}

/* Headers pollbridge writes itself on the handshake, or that would change
 * how the upstream reads it: never forwarded from the client. */
static const char *const cfg_own_headers[] = {
	"Host", "Connection", "Upgrade", "Origin", "X-Forwarded-For", "Content-Length",
	"Transfer-Encoding", "Keep-Alive", "TE", "Trailer", "Expect", NULL
};

/* Add a --forward-header name; the first one replaces the default list. */
static int cfg_add_forward_header(struct pb_config *cfg, const char *v, char *err, size_t errlen)
{
	char *copy;

	if (!pb_header_name_valid(v, strlen(v)))
		return cfg_fail(err, errlen, "--forward-header %s: expected a header name "
				"(1 to %d letters, digits or !#$%%&'*+-.^_`|~)", v,
				PB_MAX_HEADER_NAME_LEN);
	for (size_t i = 0; cfg_own_headers[i]; i++)
		if (strcasecmp(v, cfg_own_headers[i]) == 0)
			return cfg_fail(err, errlen, "--forward-header %s: pollbridge sets this "
					"header itself", v);
	if (strncasecmp(v, "Sec-WebSocket-", 14) == 0)
		return cfg_fail(err, errlen, "--forward-header %s: pollbridge sets the "
				"Sec-WebSocket-* headers itself", v);
	if (!cfg->forward_headers_set) {
		for (size_t i = 0; i < cfg->nforward_headers; i++)
			free(cfg->forward_headers[i]);
		cfg->nforward_headers = 0;
		cfg->forward_headers_set = 1;
	}
	for (size_t i = 0; i < cfg->nforward_headers; i++)
		if (strcasecmp(cfg->forward_headers[i], v) == 0)
			return cfg_fail(err, errlen, "--forward-header %s: named twice", v);
	if (cfg->nforward_headers == PB_MAX_FORWARD_HEADERS)
		return cfg_fail(err, errlen, "--forward-header: at most %d names",
				PB_MAX_FORWARD_HEADERS);
	copy = strdup(v);
	if (!copy)
		return cfg_fail(err, errlen, "out of memory");
	cfg->forward_headers[cfg->nforward_headers++] = copy;
	return 0;
}

int pb_config_cors_allowed(const struct pb_config *cfg, const char *origin)
{
	for (size_t i = 0; origin && i < cfg->ncors_origins; i++)
		if (strcmp(cfg->cors_origins[i], "*") == 0 ||
		    strcmp(cfg->cors_origins[i], origin) == 0)
			return 1;
	return 0;
}

/* Apply one option with its value (NULL for switches). */
static int cfg_apply(struct pb_config *cfg, const struct opt *o, const char *v,
		     char *err, size_t errlen)
{
	char *base = (char *)cfg;
	uint64_t n;

	switch (o->kind) {
	case OPT_UINT:
	case OPT_SIZE:
		if (pb_parse_uint53(v, strlen(v), &n) || n < o->min || n > o->max)
			return cfg_fail(err, errlen, "--%s %s: expected a whole number from %llu to %llu",
					o->name, v, o->min, o->max);
		if (o->kind == OPT_UINT)
			*(unsigned *)(base + o->offset) = (unsigned)n;
		else
			*(size_t *)(base + o->offset) = (size_t)n;
		return 0;
	case OPT_LISTEN:
		return cfg_listen("--listen", v, &cfg->listen_host, &cfg->listen_port, err, errlen);
	case OPT_ADMIN:
		return cfg_listen("--admin-listen", v, &cfg->admin_host, &cfg->admin_port, err,
				  errlen);
	case OPT_LOGFMT:
		if (strcmp(v, "combined") && strcmp(v, "pollbridge"))
			return cfg_fail(err, errlen, "--access-log-format %s: expected combined or "
					"pollbridge", v);
		cfg->access_log_combined = v[0] == 'c';
		return 0;
	case OPT_ROUTE:
		return cfg_add_route(cfg, v, err, errlen);
	case OPT_STORE:
		if (strcmp(v, "memory") == 0)
			return cfg_set_str(&cfg->store, v, strlen(v));
		if (strncmp(v, "redis://", 8) == 0 || strncmp(v, "redis+sentinel://", 17) == 0 ||
		    strncmp(v, "redis+cluster://", 16) == 0) {
			struct pb_redis_url u;
			char why[256];

			if (pb_redis_parse_url(v, &u, why, sizeof(why)))
				return cfg_fail(err, errlen, "--store: %s", why);
			return cfg_set_str(&cfg->store, v, strlen(v));
		}
		return cfg_fail(err, errlen, "--store %s: expected memory, redis://HOST:PORT, "
				"redis+sentinel://HOST:PORT,.../MASTER or "
				"redis+cluster://HOST:PORT,.../", v);
	case OPT_STRING:
		if (strlen(v) < o->min || strlen(v) > o->max)
			return cfg_fail(err, errlen, "--%s: expected %llu to %llu characters",
					o->name, o->min, o->max);
		return cfg_set_str((char **)(base + o->offset), v, strlen(v));
	case OPT_LEVEL:
		if (pb_log_parse_level(v, &cfg->log_level))
			return cfg_fail(err, errlen, "--log-level %s: expected error, warn, info or debug", v);
		return 0;
	case OPT_SWITCH:
		*(int *)(base + o->offset) = 1;
		return 0;
	case OPT_YESNO:
		if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
			return cfg_fail(err, errlen, "--%s %s: expected yes or no", o->name, v);
		*(int *)(base + o->offset) = v[0] == 'y';
		return 0;
	case OPT_CORS:
		return cfg_add_cors(cfg, v, err, errlen);
	case OPT_HEADER:
		return cfg_add_forward_header(cfg, v, err, errlen);
	case OPT_FILE:
		if (!*v)
			return cfg_fail(err, errlen, "--%s: expected a file name", o->name);
		return cfg_set_str((char **)(base + o->offset), v, strlen(v));
	case OPT_CONFIG:
		return 0;       /* applied before the command line */
	case OPT_LATER:
		return cfg_fail(err, errlen, "--%s is not available in this version", o->name);
	}
	return PB_EBADREQ;
}

/* The option called name[0..len), or NULL. */
static const struct opt *cfg_find(const char *name, size_t len)
{
	for (size_t k = 0; k < sizeof(pb_opts) / sizeof(pb_opts[0]); k++)
		if (strlen(pb_opts[k].name) == len && strncmp(pb_opts[k].name, name, len) == 0)
			return &pb_opts[k];
	return NULL;
}

/* Apply a config file: one "name = value" per line (long option names,
 * switches take yes/no), blank lines and whole-line # comments. Errors
 * say "FILE:LINE: reason". */
static int cfg_load_file(struct pb_config *cfg, const char *path, char *err, size_t errlen)
{
	char line[8192], why[512];
	FILE *fp = fopen(path, "r");
	int lineno = 0, r = 0;

	if (!fp)
		return cfg_fail(err, errlen, "--config %s: %s", path, strerror(errno));
	while (!r && fgets(line, sizeof(line), fp)) {
		char *p = line, *eq, *name, *val, *end;
		const struct opt *o;

		lineno++;
		if (!strchr(line, '\n') && !feof(fp)) {
			r = cfg_fail(err, errlen, "%s:%d: line too long", path, lineno);
			break;
		}
		p += strspn(p, " \t");
		end = p + strlen(p);
		while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' ||
				   end[-1] == '\t'))
			*--end = '\0';
		if (!*p || *p == '#')
			continue;
		eq = strchr(p, '=');
		if (!eq) {
			r = cfg_fail(err, errlen, "%s:%d: expected name = value", path, lineno);
			break;
		}
		name = p;
		val = eq + 1;
		while (eq > name && (eq[-1] == ' ' || eq[-1] == '\t'))
			eq--;
		*eq = '\0';
		val += strspn(val, " \t");
		o = cfg_find(name, strlen(name));
		if (!o || o->kind == OPT_CONFIG || strcmp(name, "check-config") == 0) {
			r = cfg_fail(err, errlen, "%s:%d: unknown option '%s'", path, lineno, name);
			break;
		}
		if (o->kind == OPT_SWITCH) {
			if (strcmp(val, "yes") && strcmp(val, "no")) {
				r = cfg_fail(err, errlen, "%s:%d: %s takes yes or no", path, lineno, name);
				break;
			}
			*(int *)((char *)cfg + o->offset) = val[0] == 'y';
			continue;
		}
		if (cfg_apply(cfg, o, val, why, sizeof(why)))
			r = cfg_fail(err, errlen, "%s:%d: %s", path, lineno, why);
	}
	if (!r && ferror(fp))
		r = cfg_fail(err, errlen, "--config %s: read error", path);
	fclose(fp);
	return r;
}

/* Resolve the byte bounds' defaults and check they fit together: the
 * largest message must fit a session's queue, which must fit the
 * instance's. */
static int cfg_resolve_bytes(struct pb_config *cfg, char *err, size_t errlen)
{
	size_t q = cfg->queue_max_bytes;

	if (!q)
		q = cfg->max_message_bytes * PB_DEFAULT_QUEUE_MAX_BYTES_FACTOR;
	else if (q < cfg->max_message_bytes)
		return cfg_fail(err, errlen, "--queue-max-bytes %zu is below --max-message-bytes %zu: "
				"the largest message must fit a queue", q, cfg->max_message_bytes);
	if (cfg->total_queue_max_bytes < q)
		return cfg_fail(err, errlen, "--total-queue-max-bytes %zu is below --queue-max-bytes "
				"%zu", cfg->total_queue_max_bytes, q);
	cfg->queue_max_bytes = q;
	return 0;
}

/* 1 if --admin-listen would take --listen's port: the same port (not 0)
 * on the same address or where either is a wildcard address. */
static int cfg_admin_clash(const struct pb_config *cfg)
{
	const char *a = cfg->admin_host, *l = cfg->listen_host;

	if (!a || !l || cfg->admin_port == 0 || cfg->admin_port != cfg->listen_port)
		return 0;
	return strcmp(a, l) == 0 || !strcmp(a, "0.0.0.0") || !strcmp(a, "::") ||
	       !strcmp(l, "0.0.0.0") || !strcmp(l, "::");
}

int pb_config_parse_args(struct pb_config *cfg, int argc, char *const argv[],
			 enum pb_config_action *action, char *err, size_t errlen)
{
	const char *file = NULL;

	*action = PB_CONFIG_RUN;
	/* The file comes first: flags override its single values and add to
	 * its repeatable ones. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc)
				return cfg_fail(err, errlen, "--config needs a value");
			file = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			file = argv[i] + 9;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
			   strcmp(argv[i], "--version") == 0) {
			file = NULL;
			break;
		}
	}
	if (file) {
		int r = cfg_load_file(cfg, file, err, errlen);

		if (r)
			return r;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *val = NULL;
		const struct opt *o;
		size_t namelen;
		int r;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*action = PB_CONFIG_HELP;
			return 0;
		}
		if (strcmp(a, "--version") == 0) {
			*action = PB_CONFIG_VERSION;
			return 0;
		}
		if (strncmp(a, "--", 2) != 0 || !a[2])
			return cfg_fail(err, errlen, "unexpected argument '%s' (try --help)", a);
		name = a + 2;
		namelen = strcspn(name, "=");
		if (name[namelen] == '=')
			val = name + namelen + 1;
		o = cfg_find(name, namelen);
		if (!o)
			return cfg_fail(err, errlen, "unknown option '--%.*s' (try --help)",
					(int)namelen, name);
		if (o->kind == OPT_SWITCH) {
			if (val)
				return cfg_fail(err, errlen, "--%s takes no value", o->name);
		} else if (!val) {
			if (i + 1 >= argc)
				return cfg_fail(err, errlen, "--%s needs a value", o->name);
			val = argv[++i];
		}
		r = cfg_apply(cfg, o, val, err, errlen);
		if (r)
			return r;
	}
	if (cfg_admin_clash(cfg))
		return cfg_fail(err, errlen, "--admin-listen %s:%d: must differ from --listen %s:%d",
				cfg->admin_host, cfg->admin_port, cfg->listen_host, cfg->listen_port);
	return cfg_resolve_bytes(cfg, err, errlen);
}

/* Read the file a flag names into a malloc'd NUL-terminated string. */
static int cfg_read_file(const char *flag, const char *path, char **out, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	char *data = NULL;
	size_t len;
	int rc = PB_EBADREQ;

	*out = NULL;
	if (!fp)
		return cfg_fail(err, errlen, "%s %s: %s", flag, path, strerror(errno));
	data = malloc(PB_MAX_PEM_FILE + 1);
	if (!data) {
		cfg_fail(err, errlen, "out of memory");
		rc = PB_ENOMEM;
		goto out;
	}
	len = fread(data, 1, PB_MAX_PEM_FILE + 1, fp);
	if (ferror(fp)) {
		cfg_fail(err, errlen, "%s %s: %s", flag, path, strerror(errno));
		goto out;
	}
	if (len > PB_MAX_PEM_FILE) {
		cfg_fail(err, errlen, "%s %s: larger than %d bytes", flag, path, PB_MAX_PEM_FILE);
		goto out;
	}
	if (memchr(data, '\0', len)) {
		cfg_fail(err, errlen, "%s %s: not a PEM file (binary data)", flag, path);
		goto out;
	}
	data[len] = '\0';
	*out = data;
	data = NULL;
	rc = 0;
out:
	if (data) {
		explicit_bzero(data, PB_MAX_PEM_FILE + 1);
		free(data);
	}
	fclose(fp);
	return rc;
}

/* Release a file's contents, wiping them (they may hold a private key). */
static void cfg_free_pem(char **pem)
{
	if (*pem) {
		explicit_bzero(*pem, strlen(*pem));
		free(*pem);
		*pem = NULL;
	}
}

int pb_config_load_files(struct pb_config *cfg, char *err, size_t errlen)
{
	char *ca = NULL;
	int r;

	cfg_free_pem(&cfg->tls_cert_pem);
	cfg_free_pem(&cfg->tls_key_pem);
	if (!cfg->tls_cert != !cfg->tls_key)
		return cfg_fail(err, errlen, "%s without %s: give both or neither",
				cfg->tls_cert ? "--tls-cert" : "--tls-key",
				cfg->tls_cert ? "--tls-key" : "--tls-cert");
	if (cfg->tls_cert) {
		r = cfg_read_file("--tls-cert", cfg->tls_cert, &cfg->tls_cert_pem, err, errlen);
		if (r)
			return r;
		if (!strstr(cfg->tls_cert_pem, "-----BEGIN CERTIFICATE-----")) {
			cfg_free_pem(&cfg->tls_cert_pem);
			return cfg_fail(err, errlen, "--tls-cert %s: no PEM certificate in it",
					cfg->tls_cert);
		}
		r = cfg_read_file("--tls-key", cfg->tls_key, &cfg->tls_key_pem, err, errlen);
		if (r)
			goto fail_r;
		if (strstr(cfg->tls_key_pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
			cfg_fail(err, errlen, "--tls-key %s: encrypted keys are not supported",
				 cfg->tls_key);
			goto fail;
		}
		if (!strstr(cfg->tls_key_pem, "-----BEGIN ") ||
		    !strstr(cfg->tls_key_pem, "PRIVATE KEY-----")) {
			cfg_fail(err, errlen, "--tls-key %s: no PEM private key in it", cfg->tls_key);
			goto fail;
		}
	}
	if (cfg->upstream_ca) {
		r = cfg_read_file("--upstream-ca", cfg->upstream_ca, &ca, err, errlen);
		if (r)
			goto fail_r;
		if (!strstr(ca, "-----BEGIN CERTIFICATE-----")) {
			cfg_fail(err, errlen, "--upstream-ca %s: no PEM certificate in it",
				 cfg->upstream_ca);
			free(ca);
			goto fail;
		}
		free(ca);
	}
	return 0;
fail:
	r = PB_EBADREQ;
fail_r:
	cfg_free_pem(&cfg->tls_cert_pem);
	cfg_free_pem(&cfg->tls_key_pem);
	return r;
}

const struct pb_route *pb_config_route(const struct pb_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nroutes; i++)
		if (strcmp(cfg->routes[i].name, name) == 0)
			return &cfg->routes[i];
	return NULL;
}

void pb_config_free(struct pb_config *cfg)
{
	for (size_t i = 0; i < cfg->nroutes; i++)
		pb_route_free(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->listen_host);
	free(cfg->admin_host);
	free(cfg->store);
	free(cfg->instance_id);
	free(cfg->access_log);
	free(cfg->sockjs_url);
	for (size_t i = 0; i < cfg->ncors_origins; i++)
		free(cfg->cors_origins[i]);
	for (size_t i = 0; i < cfg->nforward_headers; i++)
		free(cfg->forward_headers[i]);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->upstream_ca);
	cfg_free_pem(&cfg->tls_cert_pem);
	cfg_free_pem(&cfg->tls_key_pem);
	memset(cfg, 0, sizeof(*cfg));
}
