/*
 * echo.c: pollbridge-echo, the bundled demo upstream. A small libwebsockets
 * server (plain default poll loop, one thread) that echoes every WebSocket
 * message back with its type, and obeys a few "/" text commands so the
 * end-to-end tests can make an upstream burst, send big or fragmented
 * messages, close with a chosen code, drop the TCP connection, or report the
 * subprotocol and handshake headers it saw. With --record FILE it appends
 * one line per event to FILE so tests can check what reached the upstream.
 *
 * Subprotocols: none, "chat" or "echo". lws binds the first protocol of the
 * client's list that it knows. A client that offers only unknown protocols
 * is refused: lws 4.1.6 has no "accept without a protocol" fallback and
 * closes the TCP connection without any HTTP answer (no 101, no 4xx). A
 * client that sends no Sec-WebSocket-Protocol gets protocols[0], reported
 * as "none".
 *
 * /close takes any CODE in 1000-4999 and sends it as given (reserved codes
 * included, so tests can provoke a misbehaving upstream); "/close" alone is
 * 1000 without a reason. Bad arguments make a command unknown: it is echoed.
 *
 * Every connection owns a bounded queue of outgoing items (messages, and
 * generators for /burst and /fragments, and a pending close or drop so that
 * those happen after what was queued before them). Writes happen only on
 * WRITEABLE, one frame per callback. When the queue is full, reading from
 * the peer is paused (lws_rx_flow_control) until it drains.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <libwebsockets.h>

#define ECHO_DEFAULT_LISTEN	"127.0.0.1:9001"
#define ECHO_MAX_MESSAGE	(16u * 1024u * 1024u)	/* bytes, either way */
#define ECHO_MAX_BURST		1000000ul
#define ECHO_QUEUE_PAUSE	256	/* items: stop reading the peer */
#define ECHO_QUEUE_RESUME	64	/* items: read again */
#define ECHO_QUEUE_BYTES_PAUSE	(32u * 1024u * 1024u)
#define ECHO_QUEUE_HARD		1024	/* items: the peer ignored flow control */
#define ECHO_MAX_FDS		(1u << 20)
#define ECHO_TICK_US		(100 * LWS_US_PER_MS)
#define ECHO_REASON_MAX		123	/* a close frame payload is <= 125 */

/* Custom (non-lws-token) request headers that /header can answer. lws 4.1
 * cannot enumerate unknown headers and drops the header table once the
 * connection is upgraded, so the names must be known at ESTABLISHED. */
static const char *const echo_custom_headers[] = {
	"x-test", "x-custom", "x-request-id", "x-forwarded-proto",
	"x-forwarded-host", "x-forwarded-port", "x-api-key", "x-trace-id",
	"x-session", "x-user", "x-token", "x-client", "x-correlation-id",
	"x-echo", "x-pollbridge", "forwarded", NULL
};

static volatile sig_atomic_t echo_stop;

enum out_kind {
	OUT_MESSAGE,	/* buf/len, one frame */
	OUT_BURST,	/* text "n" for n in next..last, one frame each */
	OUT_FRAGMENTS,	/* "alpha-" "beta-" "gamma" as one fragmented message */
	OUT_CLOSE,	/* close with code/reason */
	OUT_DROP	/* shut the TCP connection down, no close frame */
};

struct out {
	struct out *next;
	enum out_kind kind;
	int binary;
	unsigned char *buf;	/* LWS_PRE headroom, then len bytes */
	size_t len;
	unsigned long next_n, last_n;	/* OUT_BURST; next_n is the frame for OUT_FRAGMENTS */
	int code;
	char reason[ECHO_REASON_MAX + 1];
	size_t reason_len;
};

struct header {
	char *name;	/* lowercase, without the colon */
	char *value;
};

/* Per-connection state (lws allocates it zeroed, per_session_data_size). */
struct conn {
	struct out *head, *tail;
	size_t queued, queued_bytes;
	int rx_paused;
	int in_message;
	int rx_binary;
	unsigned char *rx;	/* LWS_PRE headroom, then rx_len bytes, then room for a NUL */
	size_t rx_len, rx_cap;
	char protocol[64];
	struct header *headers;
	size_t nheaders;
};

struct echo_server {
	struct lws_context *context;
	FILE *record;
	lws_sorted_usec_list_t tick;
};

/* Ask the service loop to stop; the periodic tick notices it. */
static void on_signal(int sig)
{
	echo_stop = 1;
}

/* Wake the service loop regularly so a signal is never missed. */
static void on_tick(lws_sorted_usec_list_t *sul)
{
	struct echo_server *srv = lws_container_of(sul, struct echo_server, tick);

	if (!echo_stop)
		lws_sul_schedule(srv->context, 0, &srv->tick, on_tick, ECHO_TICK_US);
}

/* Write data escaped (\ and newline) to f. */
static void put_escaped(FILE *f, const unsigned char *data, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (data[i] == '\\')
			fputs("\\\\", f);
		else if (data[i] == '\n')
			fputs("\\n", f);
		else
			fputc(data[i], f);
	}
}

/* Finish a record line: newline, flush, report any write error. */
static int record_end(FILE *f)
{
	fputc('\n', f);
	return fflush(f) || ferror(f) ? -1 : 0;
}

/* Record a line made of a fixed word and an optional argument. */
static int record_word(struct echo_server *srv, const char *word, const char *arg)
{
	if (!srv->record)
		return 0;
	fputs(word, srv->record);
	if (arg)
		fprintf(srv->record, " %s", arg);
	return record_end(srv->record);
}

/* Record one complete message received from the peer. */
static int record_message(struct echo_server *srv, int binary, const unsigned char *data,
			  size_t len)
{
	size_t i;

	if (!srv->record)
		return 0;
	fprintf(srv->record, "%s %zu ", binary ? "binary" : "text", len);
	if (binary)
		for (i = 0; i < len; i++)
			fprintf(srv->record, "%02x", data[i]);
	else
		put_escaped(srv->record, data, len);
	return record_end(srv->record);
}

/* Record a close frame from the peer (payload: 2-byte code, then reason). */
static int record_close(struct echo_server *srv, const unsigned char *in, size_t len)
{
	unsigned int code = 1005;	/* "no status received" */

	if (!srv->record)
		return 0;
	if (len >= 2)
		code = (unsigned int)in[0] << 8 | in[1];
	fprintf(srv->record, "close %u ", code);
	if (len > 2)
		put_escaped(srv->record, in + 2, len - 2);
	return record_end(srv->record);
}

/* Copy one request header into the connection's table; 0 if absent. */
static int header_add(struct conn *c, const char *name, size_t namelen, int vlen,
		      struct lws *wsi, int token)
{
	struct header *h, *t;
	size_t i;
	int n;

	if (vlen < 0)
		return 0;
	t = realloc(c->headers, (c->nheaders + 1) * sizeof(*t));
	if (!t)
		return -1;
	c->headers = t;
	h = &c->headers[c->nheaders];
	h->name = malloc(namelen + 1);
	h->value = malloc((size_t)vlen + 64);
	if (!h->name || !h->value)
		goto fail;
	for (i = 0; i < namelen; i++)
		h->name[i] = (char)tolower((unsigned char)name[i]);
	h->name[namelen] = '\0';
	if (token >= 0)
		n = lws_hdr_copy(wsi, h->value, vlen + 64, (enum lws_token_indexes)token);
	else
		n = lws_hdr_custom_copy(wsi, h->value, vlen + 64, name, (int)namelen + 1);
	if (n < 0)
		goto fail;
	h->value[n] = '\0';
	c->nheaders++;
	return 0;
fail:
	free(h->name);
	free(h->value);
	return -1;
}

/* Copy the handshake headers /header may ask about (gone after ESTABLISHED). */
static int headers_copy(struct conn *c, struct lws *wsi)
{
	char name[64];
	const char *s;
	size_t sl;
	int i;

	for (i = 0; i < (int)_WSI_TOKEN_CLIENT_SENT_PROTOCOLS; i++) {
		s = (const char *)lws_token_to_string((enum lws_token_indexes)i);
		/* request-line tokens ("get ") and h2 pseudo-headers are not headers */
		if (!s || !*s || s[0] == ':' || (sl = strlen(s)) < 2 || s[sl - 1] != ':')
			continue;
		if (!lws_hdr_total_length(wsi, (enum lws_token_indexes)i))
			continue;
		if (header_add(c, s, sl - 1, lws_hdr_total_length(wsi, (enum lws_token_indexes)i),
			       wsi, i))
			return -1;
	}
	for (i = 0; echo_custom_headers[i]; i++) {
		sl = strlen(echo_custom_headers[i]);
		if (sl + 2 > sizeof(name))
			continue;
		memcpy(name, echo_custom_headers[i], sl);
		name[sl] = ':';
		name[sl + 1] = '\0';
		if (header_add(c, name, sl, lws_hdr_custom_length(wsi, name, (int)sl + 1), wsi, -1))
			return -1;
	}
	return 0;
}

/* The value of a copied request header (name case-insensitive), or "". */
static const char *header_get(const struct conn *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nheaders; i++)
		if (!strcasecmp(c->headers[i].name, name))
			return c->headers[i].value;
	return "";
}

/* A new queue item of kind with room for len bytes of payload. */
static struct out *out_new(enum out_kind kind, size_t len)
{
	struct out *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->kind = kind;
	if (kind == OUT_MESSAGE) {
		o->buf = malloc(LWS_PRE + len + 1);
		if (!o->buf) {
			free(o);
			return NULL;
		}
		o->len = len;
	}
	return o;
}

/* Free one queue item. */
static void out_free(struct out *o)
{
	free(o->buf);
	free(o);
}

/* Append o to the queue (taking ownership) and ask for WRITEABLE; pauses
 * reading when the queue gets full. -1 if the peer overran the hard bound. */
static int conn_push(struct lws *wsi, struct conn *c, struct out *o)
{
	if (c->queued >= ECHO_QUEUE_HARD) {
		out_free(o);
		return -1;
	}
	if (c->tail)
		c->tail->next = o;
	else
		c->head = o;
	c->tail = o;
	c->queued++;
	c->queued_bytes += o->len;
	if (!c->rx_paused &&
	    (c->queued >= ECHO_QUEUE_PAUSE || c->queued_bytes >= ECHO_QUEUE_BYTES_PAUSE)) {
		c->rx_paused = 1;
		lws_rx_flow_control(wsi, 0);
	}
	lws_callback_on_writable(wsi);
	return 0;
}

/* Remove the head item of the queue; resumes reading once drained enough. */
static void conn_pop(struct lws *wsi, struct conn *c)
{
	struct out *o = c->head;

	c->head = o->next;
	if (!c->head)
		c->tail = NULL;
	c->queued--;
	c->queued_bytes -= o->len;
	out_free(o);
	if (c->rx_paused && c->queued < ECHO_QUEUE_RESUME &&
	    c->queued_bytes < ECHO_QUEUE_BYTES_PAUSE / 4) {
		c->rx_paused = 0;
		lws_rx_flow_control(wsi, 1);
	}
}

/* Queue a message holding a copy of data. */
static int conn_push_copy(struct lws *wsi, struct conn *c, int binary, const void *data,
			  size_t len)
{
	struct out *o = out_new(OUT_MESSAGE, len);

	if (!o)
		return -1;
	o->binary = binary;
	if (len)
		memcpy(o->buf + LWS_PRE, data, len);
	return conn_push(wsi, c, o);
}

/* Free everything the connection holds. */
static void conn_free(struct conn *c)
{
	size_t i;

	while (c->head) {
		struct out *o = c->head;

		c->head = o->next;
		out_free(o);
	}
	c->tail = NULL;
	c->queued = c->queued_bytes = 0;
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
	for (i = 0; i < c->nheaders; i++) {
		free(c->headers[i].name);
		free(c->headers[i].value);
	}
	free(c->headers);
	c->headers = NULL;
	c->nheaders = 0;
}

/* Append a received chunk to the message being reassembled; -1 if the
 * message would exceed ECHO_MAX_MESSAGE or memory runs out. */
static int rx_append(struct conn *c, const void *in, size_t len)
{
	size_t need = c->rx_len + len, cap;
	unsigned char *t;

	if (need > ECHO_MAX_MESSAGE)
		return -1;
	if (!c->rx || LWS_PRE + need + 1 > c->rx_cap) {
		cap = c->rx_cap ? c->rx_cap : 4096;
		while (cap < LWS_PRE + need + 1)
			cap *= 2;
		t = realloc(c->rx, cap);
		if (!t)
			return -1;
		c->rx = t;
		c->rx_cap = cap;
	}
	if (len)
		memcpy(c->rx + LWS_PRE + c->rx_len, in, len);
	c->rx_len = need;
	return 0;
}

/* Queue the reassembled message as its own echo, handing the buffer over. */
static int conn_echo(struct lws *wsi, struct conn *c)
{
	struct out *o = calloc(1, sizeof(*o));

	if (!o)
		return -1;
	o->kind = OUT_MESSAGE;
	o->binary = c->rx_binary;
	o->buf = c->rx;
	o->len = c->rx_len;
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
	return conn_push(wsi, c, o);
}

/* Parse a decimal number in [0, max] that ends the string; -1 if not one. */
static int parse_count(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

/* The argument of "/word ARG" if text is that command, else NULL. */
static const char *command_arg(const char *text, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(text, word, n))
		return NULL;
	if (text[n] == '\0')
		return text + n;
	if (text[n] == ' ')
		return text + n + 1;
	return NULL;
}

/* Queue a close (code, reason) after what is queued already; "/close" alone
 * means 1000 without a reason. 1 if arg is not a valid "CODE REASON...". */
static int command_close(struct lws *wsi, struct conn *c, const char *arg)
{
	struct out *o;
	unsigned long code = 1000;
	const char *sp = strchr(arg, ' ');
	char num[8];
	size_t n = sp ? (size_t)(sp - arg) : strlen(arg);

	if (n) {
		if (n >= sizeof(num))
			return 1;
		memcpy(num, arg, n);
		num[n] = '\0';
		if (parse_count(num, 4999, &code) || code < 1000)
			return 1;
	}
	o = out_new(OUT_CLOSE, 0);
	if (!o)
		return -1;
	o->code = (int)code;
	if (sp) {
		o->reason_len = strlen(sp + 1);
		if (o->reason_len > ECHO_REASON_MAX)
			o->reason_len = ECHO_REASON_MAX;
		memcpy(o->reason, sp + 1, o->reason_len);
	}
	return conn_push(wsi, c, o);
}

/* Queue a message of n bytes: 'x' for text, i % 256 for binary. */
static int command_fill(struct lws *wsi, struct conn *c, int binary, unsigned long n)
{
	struct out *o = out_new(OUT_MESSAGE, n);
	unsigned long i;

	if (!o)
		return -1;
	o->binary = binary;
	for (i = 0; i < n; i++)
		o->buf[LWS_PRE + i] = binary ? (unsigned char)(i % 256) : 'x';
	return conn_push(wsi, c, o);
}

/* Queue a generator item (burst, fragments, drop). */
static int command_generator(struct lws *wsi, struct conn *c, enum out_kind kind,
			     unsigned long last)
{
	struct out *o = out_new(kind, 0);

	if (!o)
		return -1;
	o->next_n = kind == OUT_BURST ? 1 : 0;
	o->last_n = last;
	return conn_push(wsi, c, o);
}

/* Run the command in the NUL-terminated text. 1 if it is not a known
 * command (the caller echoes it), 0 if done, -1 on failure. */
static int command_run(struct lws *wsi, struct conn *c, const char *text)
{
	const char *arg;
	unsigned long n;

	if ((arg = command_arg(text, "/close")))
		return command_close(wsi, c, arg);
	if ((arg = command_arg(text, "/burst")) && !parse_count(arg, ECHO_MAX_BURST, &n))
		return n ? command_generator(wsi, c, OUT_BURST, n) : 0;
	if ((arg = command_arg(text, "/big")) && !parse_count(arg, ECHO_MAX_MESSAGE, &n))
		return command_fill(wsi, c, 0, n);
	if ((arg = command_arg(text, "/binary")) && !parse_count(arg, ECHO_MAX_MESSAGE, &n))
		return command_fill(wsi, c, 1, n);
	if (!strcmp(text, "/fragments"))
		return command_generator(wsi, c, OUT_FRAGMENTS, 0);
	if (!strcmp(text, "/drop"))
		return command_generator(wsi, c, OUT_DROP, 0);
	if (!strcmp(text, "/protocol"))
		return conn_push_copy(wsi, c, 0, c->protocol, strlen(c->protocol));
	if ((arg = command_arg(text, "/header")) && *arg) {
		const char *v = header_get(c, arg);

		return conn_push_copy(wsi, c, 0, v, strlen(v));
	}
	return 1;
}

/* A whole message arrived: record it, then run it as a command or echo it. */
static int on_message(struct lws *wsi, struct echo_server *srv, struct conn *c)
{
	char *text;
	int r;

	c->in_message = 0;
	if (record_message(srv, c->rx_binary, c->rx ? c->rx + LWS_PRE : NULL, c->rx_len))
		return -1;
	if (!c->rx && rx_append(c, NULL, 0))	/* an empty message still needs a buffer */
		return -1;
	if (!c->rx_binary && c->rx_len && c->rx[LWS_PRE] == '/') {
		text = (char *)c->rx + LWS_PRE;
		text[c->rx_len] = '\0';
		r = command_run(wsi, c, text);
		if (r <= 0) {
			c->rx_len = 0;
			return r;
		}
	}
	return conn_echo(wsi, c);
}

/* Write the next frame of the queue head. -1 closes the connection. */
static int conn_write(struct lws *wsi, struct conn *c)
{
	static const char *const frags[] = { "alpha-", "beta-", "gamma" };
	unsigned char buf[LWS_PRE + 32];
	struct out *o = c->head;
	size_t len;
	int flags;

	if (!o)
		return 0;
	switch (o->kind) {
	case OUT_MESSAGE:
		if (lws_write(wsi, o->buf + LWS_PRE, o->len,
			      o->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)o->len)
			return -1;
		conn_pop(wsi, c);
		break;
	case OUT_BURST:
		len = (size_t)snprintf((char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE, "%lu",
				       o->next_n);
		if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len)
			return -1;
		if (o->next_n++ >= o->last_n)
			conn_pop(wsi, c);
		break;
	case OUT_FRAGMENTS:
		len = strlen(frags[o->next_n]);
		memcpy(buf + LWS_PRE, frags[o->next_n], len);
		flags = lws_write_ws_flags(LWS_WRITE_TEXT, o->next_n == 0, o->next_n == 2);
		if (lws_write(wsi, buf + LWS_PRE, len, (enum lws_write_protocol)flags) < (int)len)
			return -1;
		if (++o->next_n == 3)
			conn_pop(wsi, c);
		break;
	case OUT_CLOSE:
		lws_close_reason(wsi, (enum lws_close_status)o->code, (unsigned char *)o->reason,
				 o->reason_len);
		return -1;
	case OUT_DROP:
		/* no close frame: lws's attempt to send one finds the socket shut */
		shutdown(lws_get_socket_fd(wsi), SHUT_RDWR);
		return -1;
	}
	if (c->head)
		lws_callback_on_writable(wsi);
	return 0;
}

/* The one protocol callback shared by protocols[0] ("none"), chat and echo. */
static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			 void *in, size_t len)
{
	struct echo_server *srv = lws_context_user(lws_get_context(wsi));
	struct conn *c = user;
	int r;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		/* a plain HTTP request, not an upgrade: this is a WebSocket server */
		if (lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "WebSocket only"))
			return -1;
		return lws_http_transaction_completed(wsi);

	case LWS_CALLBACK_ESTABLISHED:
		/* the Sec-WebSocket-Protocol header is still there: did lws choose one? */
		snprintf(c->protocol, sizeof(c->protocol), "%s",
			 lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) > 0 ?
			 lws_get_protocol(wsi)->name : "none");
		if (headers_copy(c, wsi))
			return -1;
		return record_word(srv, "open", c->protocol);

	case LWS_CALLBACK_RECEIVE:
		if (!c->in_message || lws_is_first_fragment(wsi)) {
			c->in_message = 1;
			c->rx_len = 0;
			c->rx_binary = lws_frame_is_binary(wsi);
		}
		if (rx_append(c, in, len)) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
			return -1;
		}
		if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
			return 0;
		r = on_message(wsi, srv, c);
		if (r)
			lws_close_reason(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, NULL, 0);
		return r;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		return conn_write(wsi, c);

	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		return record_close(srv, in, len);

	case LWS_CALLBACK_CLOSED:
		conn_free(c);
		return record_word(srv, "disconnect", NULL);

	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols echo_protocols[] = {
	/* protocols[0] takes connections without a subprotocol (and plain HTTP) */
	{ "pollbridge-echo", callback_echo, sizeof(struct conn), 4096, 0, NULL, 0 },
	{ "chat", callback_echo, sizeof(struct conn), 4096, 0, NULL, 0 },
	{ "echo", callback_echo, sizeof(struct conn), 4096, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* Split "ADDR:PORT" (ADDR may be "[v6]") into addr and port; -1 if bad. */
static int parse_listen(const char *s, char *addr, size_t addrlen, int *port)
{
	const char *colon = strrchr(s, ':');
	size_t n;
	unsigned long p;

	if (!colon || colon == s || parse_count(colon + 1, 65535, &p))
		return -1;
	n = (size_t)(colon - s);
	if (s[0] == '[') {
		if (n < 3 || s[n - 1] != ']')
			return -1;
		s++;
		n -= 2;
	}
	if (n >= addrlen)
		return -1;
	memcpy(addr, s, n);
	addr[n] = '\0';
	*port = (int)p;
	return 0;
}

/* Raise the soft fd limit to the hard one; returns the new soft limit. */
static unsigned int raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > ECHO_MAX_FDS)
		rl.rlim_cur = ECHO_MAX_FDS;
	else
		rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) && getrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	return rl.rlim_cur > ECHO_MAX_FDS ? ECHO_MAX_FDS : (unsigned int)rl.rlim_cur;
}

/* Print the usage text to f. */
static void usage(FILE *f)
{
	fprintf(f,
		"usage: pollbridge-echo [--listen ADDR:PORT] [--record FILE] [--help]\n"
		"  --listen ADDR:PORT  where to listen (default " ECHO_DEFAULT_LISTEN
		"; port 0 picks a free one)\n"
		"  --record FILE       append one line per event to FILE\n"
		"Echoes every WebSocket message; text commands: /close CODE REASON, /burst N,\n"
		"/big N, /binary N, /fragments, /drop, /protocol, /header NAME.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "record", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct lws_context_creation_info info;
	struct echo_server srv;
	struct sigaction sa;
	const char *listen_at = ECHO_DEFAULT_LISTEN, *record_path = NULL;
	char addr[256];
	int opt, port, r = 1;

	memset(&srv, 0, sizeof(srv));
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_at = optarg;
			break;
		case 'r':
			record_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "pollbridge-echo: option '%s' needs an argument\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "pollbridge-echo: bad option '%s' (try --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pollbridge-echo: unexpected argument '%s' (try --help)\n",
			argv[optind]);
		return 2;
	}
	if (parse_listen(listen_at, addr, sizeof(addr), &port)) {
		fprintf(stderr, "pollbridge-echo: bad --listen '%s', want ADDR:PORT\n", listen_at);
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	if (record_path) {
		srv.record = fopen(record_path, "a");
		if (!srv.record) {
			fprintf(stderr, "pollbridge-echo: cannot open %s: %s\n", record_path,
				strerror(errno));
			return 1;
		}
	}

	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
	memset(&info, 0, sizeof(info));
	info.iface = addr;
	info.port = port;
	info.protocols = echo_protocols;
	info.user = &srv;
	info.fd_limit_per_thread = raise_fd_limit();
	info.max_http_header_data = 8192;
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
	if (!strchr(addr, ':'))
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	srv.context = lws_create_context(&info);
	if (!srv.context) {
		fprintf(stderr, "pollbridge-echo: cannot listen on %s\n", listen_at);
		goto out;
	}
	port = lws_get_vhost_listen_port(lws_get_vhost_by_name(srv.context, "default"));
	fprintf(stderr, strchr(addr, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n",
		addr, port);
	fflush(stderr);

	lws_sul_schedule(srv.context, 0, &srv.tick, on_tick, ECHO_TICK_US);
	while (!echo_stop && lws_service(srv.context, 0) >= 0)
		;
	r = echo_stop ? 0 : 1;
out:
	if (srv.context)
		lws_context_destroy(srv.context);
	if (srv.record && fclose(srv.record))
		r = 1;
	return r;
}
