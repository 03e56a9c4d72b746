/*
 * test_config.c: unit tests for src/config.c: the defaults, every flag of
 * docs/API.md "Command line" in both "--flag value" and "--flag=value" forms,
 * the numeric bounds, --listen addresses, route specs ("Routes": URL,
 * default ports, IPv6 hosts, options), --forward-header and the TLS files
 * (--tls-cert, --tls-key, --upstream-ca, read by pb_config_load_files), the
 * flags documented but not built yet, and the --help text. Every rejection
 * must come back as PB_EBADREQ with a non-empty one-line reason that names
 * the offending flag.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "tap.h"

/* The result of one pb_config_parse_args call on a fresh default config. */
struct run {
	struct pb_config cfg;
	enum pb_config_action action;
	char err[512];
	int rc;
};

/* Parse argv (NULL-terminated, argv[0] included) into a fresh config. */
static void run_argv(struct run *r, char *const *argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	if (pb_config_init(&r->cfg))
		tap_bail("pb_config_init failed");
	r->action = (enum pb_config_action)-1;
	memset(r->err, 0, sizeof(r->err));
	r->rc = pb_config_parse_args(&r->cfg, argc, argv, &r->action, r->err, sizeof(r->err));
}

#define ARGV(...) ((char *[]){ "pollbridge", __VA_ARGS__, NULL })
/* A string literal as (text, length), NULs inside included. */
#define S_(lit) (lit), (sizeof(lit) - 1)
#define RUN(r, ...) run_argv((r), ARGV(__VA_ARGS__))

/* Render s printably into out (size outsz), for test names: TAP lines must not break. */
static const char *vis(const char *s, char *out, size_t outsz)
{
	size_t o = 0;

	for (; *s && o + 5 < outsz; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

/* Check that err is a usable one-line reason: non-empty, no CR or LF. */
static void check_one_line(const char *err, const char *name)
{
	char v[1024];

	tap_ok(err[0] != '\0', "%s: reason is not empty", name);
	tap_ok(!strchr(err, '\n') && !strchr(err, '\r'), "%s: reason is one line: %s", name,
	       vis(err, v, sizeof(v)));
}

/* Check that argv is rejected with a one-line reason containing want. */
static void fails_argv(const char *name, const char *want, char *const *argv)
{
	struct run r;
	char v[1024];

	run_argv(&r, argv);
	tap_is_int(r.rc, PB_EBADREQ, "%s: rejected", name);
	check_one_line(r.err, name);
	if (!tap_ok(strstr(r.err, want) != NULL, "%s: reason mentions '%s'", name, want))
		tap_diag("  reason: %s", vis(r.err, v, sizeof(v)));
	pb_config_free(&r.cfg);
}

#define FAILS(want, ...) fails_argv(#__VA_ARGS__, (want), ARGV(__VA_ARGS__))

/* Check that argv is accepted with action RUN (cfg left for inspection). */
static int accepts_argv(struct run *r, const char *name, char *const *argv)
{
	run_argv(r, argv);
	if (!tap_is_int(r->rc, 0, "%s: accepted", name)) {
		tap_diag("  reason: %s", r->err);
		return 0;
	}
	tap_is_int(r->action, PB_CONFIG_RUN, "%s: action is run", name);
	return 1;
}

#define ACCEPTS(r, ...) accepts_argv((r), #__VA_ARGS__, ARGV(__VA_ARGS__))

/* The defaults of docs/API.md and config.h. */
static void test_defaults(void)
{
	struct run r;

	tap_is_str(PB_DEFAULT_LISTEN, "127.0.0.1:8080", "PB_DEFAULT_LISTEN");
	tap_is_int(PB_DEFAULT_WAIT_MAX, 30, "PB_DEFAULT_WAIT_MAX");
	tap_is_int(PB_DEFAULT_IDLE_TIMEOUT, 60, "PB_DEFAULT_IDLE_TIMEOUT");
	tap_is_int(PB_DEFAULT_CONNECT_TIMEOUT, 10, "PB_DEFAULT_CONNECT_TIMEOUT");

	run_argv(&r, (char *[]){ "pollbridge", NULL });
	tap_is_int(r.rc, 0, "no arguments: accepted");
	tap_is_int(r.action, PB_CONFIG_RUN, "no arguments: action run");
	tap_is_str(r.cfg.listen_host, "127.0.0.1", "default listen host");
	tap_is_int(r.cfg.listen_port, 8080, "default listen port");
	tap_is_int(r.cfg.nroutes, 0, "no routes by default");
	tap_ok(pb_config_route(&r.cfg, "echo") == NULL, "no route 'echo' by default");
	tap_is_str(r.cfg.store, "memory", "default store");
	tap_ok(r.cfg.instance_id == NULL, "default instance id is unset");
	tap_is_int(r.cfg.wait_max, 30, "default wait_max");
	tap_is_int(r.cfg.idle_timeout, 60, "default idle_timeout");
	tap_is_int(r.cfg.connect_timeout, 10, "default connect_timeout");
	tap_is_int(r.cfg.drain_timeout, PB_DEFAULT_DRAIN_TIMEOUT, "default drain_timeout");
	tap_is_int(r.cfg.max_message_bytes, PB_DEFAULT_MAX_MESSAGE_BYTES, "default max_message_bytes");
	tap_is_int(r.cfg.max_batch, PB_DEFAULT_MAX_BATCH, "default max_batch");
	tap_is_int(r.cfg.max_batch_bytes, PB_DEFAULT_MAX_BATCH_BYTES, "default max_batch_bytes");
	tap_is_int(r.cfg.max_sessions, PB_DEFAULT_MAX_SESSIONS, "default max_sessions");
	tap_is_int(r.cfg.queue_max, PB_DEFAULT_QUEUE_MAX, "default queue_max");
	tap_is_int(r.cfg.log_level, PB_LOG_INFO, "default log level");
	tap_is_int(r.cfg.check_config, 0, "check_config off by default");
	pb_config_free(&r.cfg);

	/* argc 0 (no argv[0]) and argc 1 both mean "no options". */
	if (pb_config_init(&r.cfg))
		tap_bail("pb_config_init failed");
	r.action = PB_CONFIG_HELP;
	tap_is_int(pb_config_parse_args(&r.cfg, 0, (char *[]){ NULL }, &r.action, r.err,
					sizeof(r.err)), 0, "argc 0: accepted");
	tap_is_int(r.action, PB_CONFIG_RUN, "argc 0: action run");
	pb_config_free(&r.cfg);
}

/* A numeric flag, its field and its bounds. */
struct num_flag {
	const char *name;
	size_t off;
	int is_size;            /* size_t field, else unsigned */
	unsigned long long def, min, max;
};

#define NUM_U(n, f, d, lo, hi) { n, offsetof(struct pb_config, f), 0, d, lo, hi }
#define NUM_Z(n, f, d, lo, hi) { n, offsetof(struct pb_config, f), 1, d, lo, hi }

static const struct num_flag num_flags[] = {
	NUM_U("wait-max", wait_max, 30, 0, 3600),
	NUM_U("idle-timeout", idle_timeout, 60, 1, 86400),
	NUM_U("connect-timeout", connect_timeout, 10, 1, 600),
	NUM_Z("max-message-bytes", max_message_bytes, 1048576, 1, 64ULL << 20),
	NUM_Z("max-batch", max_batch, 100, 1, 100000),
	NUM_Z("max-batch-bytes", max_batch_bytes, 1048576, 1, 256ULL << 20),
	NUM_Z("max-sessions", max_sessions, 10000, 1, 10000000),
	NUM_Z("queue-max", queue_max, 1000, 1, 10000000),
};

/* The value of f's field in cfg. */
static unsigned long long num_get(const struct pb_config *cfg, const struct num_flag *f)
{
	const char *base = (const char *)cfg;
	size_t z;
	unsigned u;

	if (f->is_size) {
		memcpy(&z, base + f->off, sizeof(z));
		return z;
	}
	memcpy(&u, base + f->off, sizeof(u));
	return u;
}

/* "--name value" and "--name=value" with v; expect it stored. */
static void num_accepts(const struct num_flag *f, unsigned long long v)
{
	char flag[64], eq[96], val[32];
	struct run r;

	snprintf(flag, sizeof(flag), "--%s", f->name);
	snprintf(val, sizeof(val), "%llu", v);
	snprintf(eq, sizeof(eq), "--%s=%llu", f->name, v);
	if (accepts_argv(&r, flag, ARGV(flag, val)))
		tap_is_int(num_get(&r.cfg, f), v, "%s %s: stored", flag, val);
	pb_config_free(&r.cfg);
	if (accepts_argv(&r, eq, ARGV(eq)))
		tap_is_int(num_get(&r.cfg, f), v, "%s: stored", eq);
	pb_config_free(&r.cfg);
}

/* "--name value" and "--name=value" with v; expect a one-line error naming the flag. */
static void num_rejects(const struct num_flag *f, const char *v)
{
	char flag[64], eq[96], name[128];

	snprintf(flag, sizeof(flag), "--%s", f->name);
	snprintf(eq, sizeof(eq), "--%s=%s", f->name, v);
	snprintf(name, sizeof(name), "%s '%s'", flag, v);
	fails_argv(name, flag, ARGV(flag, (char *)v));
	fails_argv(eq, flag, ARGV(eq));
}

/* Every numeric flag: default, both forms, bounds, bad syntax. */
static void test_numeric_flags(void)
{
	static const char *const bad[] = {
		"", "abc", "-1", "+5", " 5", "5 ", "1.5", "0x10", "1e3", "5s",
		"99999999999999999999", "18446744073709551616",
	};
	char s[32];

	for (size_t i = 0; i < sizeof(num_flags) / sizeof(num_flags[0]); i++) {
		const struct num_flag *f = &num_flags[i];
		struct run r;

		run_argv(&r, (char *[]){ "pollbridge", NULL });
		tap_is_int(num_get(&r.cfg, f), f->def, "--%s default", f->name);
		pb_config_free(&r.cfg);

		num_accepts(f, f->def + 7 <= f->max ? f->def + 7 : f->def - 7);
		num_accepts(f, f->min);
		num_accepts(f, f->max);
		if (f->min > 0) {
			snprintf(s, sizeof(s), "%llu", f->min - 1);
			num_rejects(f, s);
		}
		snprintf(s, sizeof(s), "%llu", f->max + 1);
		num_rejects(f, s);
		for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
			num_rejects(f, bad[k]);
	}
	/* The ones the brief of this file names explicitly. */
	FAILS("--idle-timeout", "--idle-timeout", "0");
	FAILS("--max-batch", "--max-batch", "0");
	FAILS("--connect-timeout", "--connect-timeout", "0");
	FAILS("--max-sessions", "--max-sessions=0");
	FAILS("--queue-max", "--queue-max", "-3");

	/* The last occurrence wins. */
	{
		struct run r;

		if (ACCEPTS(&r, "--wait-max", "5", "--wait-max=9"))
			tap_is_int(r.cfg.wait_max, 9, "repeated --wait-max: last wins");
		pb_config_free(&r.cfg);
	}
}

/* Accept --listen v and expect host and port. */
static void listen_ok(const char *v, const char *host, int port)
{
	char eq[128];
	struct run r;

	if (accepts_argv(&r, v, ARGV("--listen", (char *)v))) {
		tap_is_str(r.cfg.listen_host, host, "--listen %s: host", v);
		tap_is_int(r.cfg.listen_port, port, "--listen %s: port", v);
	}
	pb_config_free(&r.cfg);
	snprintf(eq, sizeof(eq), "--listen=%s", v);
	if (accepts_argv(&r, eq, ARGV(eq))) {
		tap_is_str(r.cfg.listen_host, host, "%s: host", eq);
		tap_is_int(r.cfg.listen_port, port, "%s: port", eq);
	}
	pb_config_free(&r.cfg);
}

/* Expect --listen v (both forms) to be rejected, the reason naming --listen. */
static void listen_bad(const char *v)
{
	char eq[128], name[128];

	snprintf(name, sizeof(name), "--listen '%s'", v);
	fails_argv(name, "--listen", ARGV("--listen", (char *)v));
	snprintf(eq, sizeof(eq), "--listen=%s", v);
	fails_argv(eq, "--listen", ARGV(eq));
}

/* --listen: numeric IPv4 or [IPv6] with a port 0..65535. */
static void test_listen(void)
{
	listen_ok("0.0.0.0:80", "0.0.0.0", 80);
	listen_ok("127.0.0.1:9001", "127.0.0.1", 9001);
	listen_ok("10.1.2.3:65535", "10.1.2.3", 65535);
	listen_ok("127.0.0.1:0", "127.0.0.1", 0);
	listen_ok("[::1]:0", "::1", 0);
	listen_ok("[::]:8080", "::", 8080);
	listen_ok("[fe80::1:2]:443", "fe80::1:2", 443);
	listen_ok("[::ffff:127.0.0.1]:1", "::ffff:127.0.0.1", 1);

	listen_bad("localhost:80");
	listen_bad("example.com:80");
	listen_bad("1.2.3.4");
	listen_bad("1.2.3.4:");
	listen_bad("1.2.3.4:65536");
	listen_bad("1.2.3.4:99999999999");
	listen_bad("1.2.3.4:-1");
	listen_bad("1.2.3.4:http");
	listen_bad("1.2.3.4:80x");
	listen_bad("1.2.3.4: 80");
	listen_bad("1.2.3:80");
	listen_bad("256.1.1.1:80");
	listen_bad(":80");
	listen_bad("");
	listen_bad("::1:80");
	listen_bad("[::1]");
	listen_bad("[::1]:");
	listen_bad("[::1]80");
	listen_bad("[::1");
	listen_bad("[]:80");
	listen_bad("[::1]:65536");
	listen_bad("[1.2.3.4]:80");
	listen_bad("[::g]:80");
	listen_bad("[::1]:80:81");

	/* A rejected --listen leaves the earlier value alone. */
	{
		struct run r;

		RUN(&r, "--listen", "10.0.0.1:81", "--listen", "bad:1");
		tap_is_int(r.rc, PB_EBADREQ, "good then bad --listen: rejected");
		tap_is_str(r.cfg.listen_host, "10.0.0.1", "good then bad --listen: host kept");
		tap_is_int(r.cfg.listen_port, 81, "good then bad --listen: port kept");
		pb_config_free(&r.cfg);
	}
}

/* What a parsed route must hold. */
struct route_want {
	const char *name, *url, *host, *path, *origin;
	int port, tls, redial, insecure;
};

/* Compare a parsed route with want. */
static void route_is(const struct pb_route *r, const struct route_want *w, const char *spec)
{
	tap_is_str(r->name, w->name, "route '%s': name", spec);
	tap_is_str(r->url, w->url, "route '%s': url", spec);
	tap_is_str(r->host, w->host, "route '%s': host", spec);
	tap_is_int(r->port, w->port, "route '%s': port", spec);
	tap_is_str(r->path, w->path, "route '%s': path", spec);
	tap_is_int(r->tls, w->tls, "route '%s': tls", spec);
	tap_is_int(r->redial, w->redial, "route '%s': redial", spec);
	tap_is_int(r->insecure, w->insecure, "route '%s': insecure", spec);
	tap_is_str(r->origin, w->origin, "route '%s': origin", spec);
}

/* Parse spec with pb_route_parse and through --route; expect w. */
static void route_ok(const char *spec, struct route_want w)
{
	struct pb_route r;
	struct run run;
	char err[256] = "", eq[512], vspec[512], veq[600];

	vis(spec, vspec, sizeof(vspec));
	if (tap_is_int(pb_route_parse(spec, &r, err, sizeof(err)), 0, "route '%s': parsed", vspec))
		route_is(&r, &w, vspec);
	else
		tap_diag("  reason: %s", err);
	pb_route_free(&r);
	tap_ok(r.name == NULL && r.host == NULL && r.path == NULL && r.url == NULL &&
	       r.origin == NULL, "route '%s': pb_route_free clears", vspec);

	if (accepts_argv(&run, vspec, ARGV("--route", (char *)spec)) &&
	    tap_is_int(run.cfg.nroutes, 1, "--route '%s': one route", vspec)) {
		const struct pb_route *cr = pb_config_route(&run.cfg, w.name);

		tap_ok(cr == &run.cfg.routes[0], "--route '%s': found by name", vspec);
		if (cr)
			route_is(cr, &w, vspec);
	}
	pb_config_free(&run.cfg);

	snprintf(eq, sizeof(eq), "--route=%s", spec);
	snprintf(veq, sizeof(veq), "--route=%s", vspec);
	if (accepts_argv(&run, veq, ARGV(eq)) &&
	    tap_is_int(run.cfg.nroutes, 1, "%s: one route", veq)) {
		const struct pb_route *cr = pb_config_route(&run.cfg, w.name);

		if (tap_ok(cr != NULL, "%s: found by name", veq))
			route_is(cr, &w, veq);
	}
	pb_config_free(&run.cfg);
}

/* Expect spec to be rejected by pb_route_parse and by --route. */
static void route_bad(const char *spec, const char *want)
{
	struct pb_route r;
	char err[512] = "", name[600], vspec[512], verr[1024];

	vis(spec, vspec, sizeof(vspec));
	memset(&r, 0x5a, sizeof(r));
	tap_is_int(pb_route_parse(spec, &r, err, sizeof(err)), PB_EBADREQ,
		   "route '%s': rejected", vspec);
	snprintf(name, sizeof(name), "route '%s'", vspec);
	check_one_line(err, name);
	if (!tap_ok(strstr(err, want) != NULL, "route '%s': reason mentions '%s'", vspec, want))
		tap_diag("  reason: %s", vis(err, verr, sizeof(verr)));
	/* On failure nothing is left to free: pb_route_free must be harmless. */
	tap_ok(r.name == NULL && r.url == NULL && r.host == NULL && r.path == NULL &&
	       r.origin == NULL, "route '%s': nothing owned after failure", vspec);
	pb_route_free(&r);

	snprintf(name, sizeof(name), "--route '%s'", vspec);
	fails_argv(name, "--route", ARGV("--route", (char *)spec));
}

/* --route specs: URL parts, defaults, options and every rejection. */
static void test_routes(void)
{
	route_ok("echo=ws://127.0.0.1:9001/", (struct route_want){
		.name = "echo", .url = "ws://127.0.0.1:9001/", .host = "127.0.0.1",
		.port = 9001, .path = "/" });
	route_ok("a=ws://example.com/chat", (struct route_want){
		.name = "a", .url = "ws://example.com/chat", .host = "example.com",
		.port = 80, .path = "/chat" });
	route_ok("s=wss://example.com/chat", (struct route_want){
		.name = "s", .url = "wss://example.com/chat", .host = "example.com",
		.port = 443, .path = "/chat", .tls = 1 });
	route_ok("s2=wss://h:8443/", (struct route_want){
		.name = "s2", .url = "wss://h:8443/", .host = "h", .port = 8443,
		.path = "/", .tls = 1 });
	route_ok("v6=ws://[::1]:9/x", (struct route_want){
		.name = "v6", .url = "ws://[::1]:9/x", .host = "::1", .port = 9,
		.path = "/x" });
	route_ok("v6b=wss://[2001:db8::1]/", (struct route_want){
		.name = "v6b", .url = "wss://[2001:db8::1]/", .host = "2001:db8::1",
		.port = 443, .path = "/", .tls = 1 });
	route_ok("v6c=ws://[::1]", (struct route_want){
		.name = "v6c", .url = "ws://[::1]", .host = "::1", .port = 80, .path = "/" });
	route_ok("q=ws://h:1/p/a?x=1&y=%20z", (struct route_want){
		.name = "q", .url = "ws://h:1/p/a?x=1&y=%20z", .host = "h", .port = 1,
		.path = "/p/a?x=1&y=%20z" });
	route_ok("np=ws://h", (struct route_want){
		.name = "np", .url = "ws://h", .host = "h", .port = 80, .path = "/" });
	route_ok("np2=ws://h:81", (struct route_want){
		.name = "np2", .url = "ws://h:81", .host = "h", .port = 81, .path = "/" });
	route_ok("max=ws://h:65535/", (struct route_want){
		.name = "max", .url = "ws://h:65535/", .host = "h", .port = 65535,
		.path = "/" });
	route_ok("A-b_c.9=ws://x_y-z.example:1/", (struct route_want){
		.name = "A-b_c.9", .url = "ws://x_y-z.example:1/", .host = "x_y-z.example",
		.port = 1, .path = "/" });
	route_ok("echo=ws://h/ redial", (struct route_want){
		.name = "echo", .url = "ws://h/", .host = "h", .port = 80, .path = "/",
		.redial = 1 });
	route_ok("echo=wss://h/ insecure", (struct route_want){
		.name = "echo", .url = "wss://h/", .host = "h", .port = 443, .path = "/",
		.tls = 1, .insecure = 1 });
	route_ok("echo=ws://h/ origin=https://a.example", (struct route_want){
		.name = "echo", .url = "ws://h/", .host = "h", .port = 80, .path = "/",
		.origin = "https://a.example" });
	route_ok("echo=ws://h/\tredial", (struct route_want){
		.name = "echo", .url = "ws://h/", .host = "h", .port = 80, .path = "/",
		.redial = 1 });
	route_ok("echo=wss://h:9/p?q  redial\tinsecure origin=https://a.example:8443 ",
		 (struct route_want){
		.name = "echo", .url = "wss://h:9/p?q", .host = "h", .port = 9,
		.path = "/p?q", .tls = 1, .redial = 1, .insecure = 1,
		.origin = "https://a.example:8443" });
	route_ok("o=ws://h/ origin=https://a.example origin=https://b.example",
		 (struct route_want){
		.name = "o", .url = "ws://h/", .host = "h", .port = 80, .path = "/",
		.origin = "https://b.example" });
	route_ok("n123456789012345678901234567890123456789012345678901234567890123=ws://h/",
		 (struct route_want){
		.name = "n123456789012345678901234567890123456789012345678901234567890123",
		.url = "ws://h/", .host = "h", .port = 80, .path = "/" });

	route_bad("echo=http://h/", "ws://");
	route_bad("echo=https://h/", "ws://");
	route_bad("echo=WS://h/", "ws://");
	route_bad("echo=ws:/h/", "ws://");
	route_bad("echo=h:80/", "ws://");
	route_bad("echo=", "ws://");
	route_bad("echo", "NAME=");
	route_bad("", "--route");
	route_bad("=ws://h/", "--route");
	route_bad("ec ho=ws://h/", "name");
	route_bad("ec/ho=ws://h/", "name");
	route_bad("ech?o=ws://h/", "name");
	route_bad("\xc3\xa9=ws://h/", "name");
	route_bad("n1234567890123456789012345678901234567890123456789012345678901234=ws://h/",
		  "longer");
	route_bad("echo=ws://", "host");
	route_bad("echo=ws:///x", "host");
	route_bad("echo=ws://:80/", "host");
	route_bad("echo=ws://h^st/", "host");
	route_bad("echo=ws://user@h/", "host");
	route_bad("echo=ws://[]:80/", "IPv6");
	route_bad("echo=ws://[::1:80/", "IPv6");
	route_bad("echo=ws://[::1]x/", "URL");
	route_bad("echo=ws://[not-an-address]:80/", "IPv6");
	route_bad("echo=ws://h:0/", "port");
	route_bad("echo=ws://h:65536/", "port");
	route_bad("echo=ws://h:99999999999999999999/", "port");
	route_bad("echo=ws://h:/", "port");
	route_bad("echo=ws://h:-1/", "port");
	route_bad("echo=ws://h:8o/", "port");
	route_bad("echo=ws://[::1]:0/", "port");
	route_bad("echo=ws://h/a#frag", "path");
	route_bad("echo=ws://h/\x7f", "path");
	route_bad("echo=ws://h/ reddial", "reddial");
	route_bad("echo=ws://h/ redial=yes", "redial=yes");
	route_bad("echo=ws://h/ origin=", "origin=");
	route_bad("echo=ws://h/ ORIGIN=x", "ORIGIN=x");
	route_bad("echo=ws://h/ origin=a\x01" "b", "origin");
	/* Anything that could make the reason span two lines. */
	route_bad("echo=ws://h/\nx", "path");
	route_bad("echo=ws://h/ redial\ninsecure", "option");
	route_bad("ec\nho=ws://h/", "name");

	/* Duplicate names, by themselves and among others. */
	FAILS("twice", "--route", "echo=ws://a/", "--route", "echo=ws://b/");
	FAILS("'echo'", "--route", "echo=ws://a/", "--route=other=ws://c/",
	      "--route=echo=wss://b/ redial");
	{
		struct run r;

		if (ACCEPTS(&r, "--route", "echo=ws://a:1/", "--route=Echo=ws://b:2/",
			    "--route", "echo2=wss://c/p redial") &&
		    tap_is_int(r.cfg.nroutes, 3, "three routes")) {
			const struct pb_route *a = pb_config_route(&r.cfg, "echo");
			const struct pb_route *b = pb_config_route(&r.cfg, "Echo");
			const struct pb_route *c = pb_config_route(&r.cfg, "echo2");

			tap_ok(a && a->port == 1 && strcmp(a->host, "a") == 0, "route echo");
			tap_ok(b && b->port == 2 && strcmp(b->host, "b") == 0,
			       "route names are case-sensitive");
			tap_ok(c && c->tls && c->redial && strcmp(c->path, "/p") == 0,
			       "route echo2");
			tap_ok(pb_config_route(&r.cfg, "ech") == NULL, "no prefix match");
			tap_ok(pb_config_route(&r.cfg, "echo22") == NULL, "no longer match");
			tap_ok(pb_config_route(&r.cfg, "") == NULL, "no empty-name match");
			tap_ok(pb_config_route(&r.cfg, "ECHO") == NULL, "no case-folded match");
		}
		pb_config_free(&r.cfg);
	}
}

/* Each flag that is not a number, in both forms. */
static void test_other_flags(void)
{
	struct run r;

	/* --store */
	if (ACCEPTS(&r, "--store", "memory"))
		tap_is_str(r.cfg.store, "memory", "--store memory: stored");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--store=memory"))
		tap_is_str(r.cfg.store, "memory", "--store=memory: stored");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--store", "redis://x:1"))
		tap_is_str(r.cfg.store, "redis://x:1", "--store redis://x:1: stored");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--store=redis://:pw@x:1/2"))
		tap_is_str(r.cfg.store, "redis://:pw@x:1/2", "--store with password and db: stored");
	pb_config_free(&r.cfg);
	FAILS("--store", "--store", "redis://x:notaport");
	FAILS("--store", "--store", "redis://");
	FAILS("--store", "--store", "redis://x:1/db");
	FAILS("--store", "--store", "bogus");
	FAILS("--store", "--store=");
	FAILS("--store", "--store", "Memory");
	FAILS("--store", "--store", "memory ");

	/* --instance-id */
	if (ACCEPTS(&r, "--instance-id", "node-1"))
		tap_is_str(r.cfg.instance_id, "node-1", "--instance-id node-1: stored");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--instance-id=a", "--instance-id=b"))
		tap_is_str(r.cfg.instance_id, "b", "--instance-id twice: last wins");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--instance-id",
		    "1234567890123456789012345678901234567890123456789012345678901234"))
		tap_is_int(strlen(r.cfg.instance_id), 64, "--instance-id of 64 chars");
	pb_config_free(&r.cfg);
	FAILS("--instance-id", "--instance-id", "");
	FAILS("--instance-id", "--instance-id=");
	FAILS("--instance-id", "--instance-id",
	      "12345678901234567890123456789012345678901234567890123456789012345");

	/* --log-level */
	{
		static const char *const names[] = { "error", "warn", "info", "debug" };
		static const enum pb_log_level levels[] = {
			PB_LOG_ERROR, PB_LOG_WARN, PB_LOG_INFO, PB_LOG_DEBUG
		};
		char eq[64];

		for (int i = 0; i < 4; i++) {
			if (accepts_argv(&r, names[i], ARGV("--log-level", (char *)names[i])))
				tap_is_int(r.cfg.log_level, levels[i], "--log-level %s: stored",
					   names[i]);
			pb_config_free(&r.cfg);
			snprintf(eq, sizeof(eq), "--log-level=%s", names[i]);
			if (accepts_argv(&r, eq, ARGV(eq)))
				tap_is_int(r.cfg.log_level, levels[i], "%s: stored", eq);
			pb_config_free(&r.cfg);
		}
	}
	FAILS("--log-level", "--log-level", "loud");
	FAILS("--log-level", "--log-level=DEBUG");
	FAILS("--log-level", "--log-level", "");
	FAILS("--log-level", "--log-level", "3");

	/* --check-config */
	if (ACCEPTS(&r, "--check-config"))
		tap_is_int(r.cfg.check_config, 1, "--check-config: set");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--route", "e=ws://h/", "--check-config", "--wait-max", "3")) {
		tap_is_int(r.cfg.check_config, 1, "--check-config among others: set");
		tap_is_int(r.cfg.wait_max, 3, "--check-config among others: later flag applied");
	}
	pb_config_free(&r.cfg);
	FAILS("--check-config", "--check-config=yes");

	/* Everything at once. */
	if (ACCEPTS(&r, "--listen", "[::1]:0", "--route=e=wss://h/x redial",
		    "--store", "memory", "--instance-id=i1", "--wait-max", "0",
		    "--idle-timeout=2", "--connect-timeout", "3", "--max-message-bytes=4",
		    "--max-batch", "5", "--max-batch-bytes=6", "--max-sessions", "7",
		    "--queue-max=8", "--log-level", "warn", "--check-config")) {
		tap_is_str(r.cfg.listen_host, "::1", "all flags: listen host");
		tap_is_int(r.cfg.listen_port, 0, "all flags: listen port");
		tap_ok(r.cfg.nroutes == 1 && r.cfg.routes[0].tls && r.cfg.routes[0].redial,
		       "all flags: route");
		tap_is_str(r.cfg.instance_id, "i1", "all flags: instance id");
		tap_is_int(r.cfg.wait_max, 0, "all flags: wait_max");
		tap_is_int(r.cfg.idle_timeout, 2, "all flags: idle_timeout");
		tap_is_int(r.cfg.connect_timeout, 3, "all flags: connect_timeout");
		tap_is_int(r.cfg.max_message_bytes, 4, "all flags: max_message_bytes");
		tap_is_int(r.cfg.max_batch, 5, "all flags: max_batch");
		tap_is_int(r.cfg.max_batch_bytes, 6, "all flags: max_batch_bytes");
		tap_is_int(r.cfg.max_sessions, 7, "all flags: max_sessions");
		tap_is_int(r.cfg.queue_max, 8, "all flags: queue_max");
		tap_is_int(r.cfg.log_level, PB_LOG_WARN, "all flags: log level");
		tap_is_int(r.cfg.check_config, 1, "all flags: check_config");
		tap_is_int(r.cfg.drain_timeout, PB_DEFAULT_DRAIN_TIMEOUT, "all flags: drain untouched");
	}
	pb_config_free(&r.cfg);
}

/* --help, -h and --version, alone and among other flags. */
static void test_actions(void)
{
	struct run r;

	RUN(&r, "--help");
	tap_is_int(r.rc, 0, "--help: ok");
	tap_is_int(r.action, PB_CONFIG_HELP, "--help: action help");
	pb_config_free(&r.cfg);
	RUN(&r, "-h");
	tap_is_int(r.rc, 0, "-h: ok");
	tap_is_int(r.action, PB_CONFIG_HELP, "-h: action help");
	pb_config_free(&r.cfg);
	RUN(&r, "--version");
	tap_is_int(r.rc, 0, "--version: ok");
	tap_is_int(r.action, PB_CONFIG_VERSION, "--version: action version");
	pb_config_free(&r.cfg);
	RUN(&r, "--wait-max", "5", "--help");
	tap_is_int(r.rc, 0, "flags then --help: ok");
	tap_is_int(r.action, PB_CONFIG_HELP, "flags then --help: action help");
	pb_config_free(&r.cfg);
	RUN(&r, "--listen=1.2.3.4:5", "--version", "--wait-max", "5");
	tap_is_int(r.rc, 0, "flags then --version: ok");
	tap_is_int(r.action, PB_CONFIG_VERSION, "flags then --version: action version");
	pb_config_free(&r.cfg);
}

/* Unknown flags, stray words and flags missing their value. */
static void test_bad_syntax(void)
{
	static const char *const need_value[] = {
		"listen", "route", "store", "instance-id", "wait-max", "idle-timeout",
		"connect-timeout", "max-message-bytes", "max-batch", "max-batch-bytes",
		"max-sessions", "queue-max", "log-level",
	};
	char flag[64], name[96];

	FAILS("--bogus", "--bogus");
	FAILS("--bogus", "--bogus=1");
	FAILS("--bogus", "--wait-max", "5", "--bogus", "7");
	FAILS("--wait", "--wait", "5");
	FAILS("--listen-addr", "--listen-addr", "1.2.3.4:5");
	FAILS("--LISTEN", "--LISTEN", "1.2.3.4:5");
	FAILS("-x", "-x");
	FAILS("stray", "stray");
	FAILS("stray", "--wait-max", "5", "stray");
	FAILS("'-'", "-");
	FAILS("'--'", "--");
	FAILS("--", "--=5");
	FAILS("--", "");
	FAILS("--bo", "--bo\ngus");

	for (size_t i = 0; i < sizeof(need_value) / sizeof(need_value[0]); i++) {
		snprintf(flag, sizeof(flag), "--%s", need_value[i]);
		snprintf(name, sizeof(name), "%s at the end", flag);
		fails_argv(name, flag, ARGV(flag));
		snprintf(name, sizeof(name), "%s at the end after others", flag);
		fails_argv(name, flag, ARGV("--check-config", flag));
	}
}

/* Flags docs/API.md documents that this version does not implement yet. */
static void test_later_flags(void)
{
	struct run r;

	/* Every flag of docs/API.md is built now: --config and --ping-interval. */
	if (ACCEPTS(&r, "--ping-interval", "20"))
		tap_is_int(r.cfg.ping_interval, 20, "--ping-interval 20: stored");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--ping-interval=0"))
		tap_is_int(r.cfg.ping_interval, 0, "--ping-interval 0 turns pings off");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--route", "e=ws://h:1/"))
		tap_is_int(r.cfg.ping_interval, 20, "--ping-interval defaults to 20");
	pb_config_free(&r.cfg);
	FAILS("--ping-interval", "--ping-interval", "x");
	FAILS("--ping-interval", "--ping-interval", "3601");
	FAILS("--config", "--config");
	FAILS("/nonexistent/pollbridge.conf", "--config", "/nonexistent/pollbridge.conf");
}

/* A temp dir for the files --tls-cert, --tls-key and --upstream-ca name. */
static char files_dir[64];

/* Write text to files_dir/name; returns the path (static, one of 8 slots). */
static const char *put_file(const char *name, const char *text, size_t len)
{
	static char paths[8][128];
	static int slot;
	char *path = paths[slot++ % 8];
	FILE *fp;

	snprintf(path, 128, "%s/%s", files_dir, name);
	fp = fopen(path, "wb");
	if (!fp || fwrite(text, 1, len, fp) != len || fclose(fp))
		tap_bail("cannot write %s", path);
	return path;
}

/* Parse argv (it must be accepted), then expect pb_config_load_files() to
 * fail with a one-line reason containing want and to keep no PEM text. */
static void files_fail(const char *name, const char *want, char *const *argv)
{
	struct run r;
	char v[1024];
	int rc;

	if (accepts_argv(&r, name, argv)) {
		memset(r.err, 0, sizeof(r.err));
		rc = pb_config_load_files(&r.cfg, r.err, sizeof(r.err));
		tap_is_int(rc, PB_EBADREQ, "%s: files rejected", name);
		check_one_line(r.err, name);
		if (!tap_ok(strstr(r.err, want) != NULL, "%s: reason mentions '%s'", name, want))
			tap_diag("  reason: %s", vis(r.err, v, sizeof(v)));
		tap_ok(!r.cfg.tls_cert_pem && !r.cfg.tls_key_pem, "%s: no PEM text kept", name);
	}
	pb_config_free(&r.cfg);
}

#define FILES_FAIL(want, ...) files_fail(#__VA_ARGS__, (want), ARGV(__VA_ARGS__))

#define PEM_CERT "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
#define PEM_KEY "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"

/* --forward-header (names, the default list, limits) and the TLS files
 * (--tls-cert/--tls-key both or neither, --upstream-ca), as parsed and as
 * read by pb_config_load_files(). */
static void test_forward_and_tls(void)
{
	static const char *const own[] = {
		"Host", "host", "Origin", "X-Forwarded-For", "x-forwarded-for", "Connection",
		"Upgrade", "Content-Length", "Transfer-Encoding", "Sec-WebSocket-Key",
		"sec-websocket-protocol", "Sec-WebSocket-Extensions",
	};
	static const char *const bad_names[] = {
		"", "X A", "X:A", "X-A:", "X\r\nY", "X\tY", "caf\xc3\xa9", "(x)", "a/b", "a,b",
		"12345678901234567890123456789012345678901234567890123456789012345",
	};
	const char *cert, *key, *ca, *plain, *enc, *big, *bin;
	char name[160], *bigtext;
	struct run r;

	/* The default list, replaced by the first --forward-header. */
	run_argv(&r, (char *[]){ "pollbridge", NULL });
	if (tap_is_int(r.cfg.nforward_headers, 3, "default: 3 forwarded headers")) {
		tap_is_str(r.cfg.forward_headers[0], "Cookie", "default forwarded header 1");
		tap_is_str(r.cfg.forward_headers[1], "Authorization", "default forwarded header 2");
		tap_is_str(r.cfg.forward_headers[2], "User-Agent", "default forwarded header 3");
	}
	tap_ok(!r.cfg.tls_cert && !r.cfg.tls_key && !r.cfg.upstream_ca,
	       "default: no TLS files, the system's CAs");
	tap_is_int(pb_config_load_files(&r.cfg, r.err, sizeof(r.err)), 0,
		   "default: pb_config_load_files has nothing to do");
	tap_ok(!r.cfg.tls_cert_pem && !r.cfg.tls_key_pem, "default: no PEM text");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--forward-header", "X-Test") &&
	    tap_is_int(r.cfg.nforward_headers, 1, "--forward-header X-Test: one name"))
		tap_is_str(r.cfg.forward_headers[0], "X-Test", "--forward-header X-Test: stored");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--forward-header=X-A", "--forward-header", "x-b", "--forward-header=Cookie") &&
	    tap_is_int(r.cfg.nforward_headers, 3, "three --forward-header: three names")) {
		tap_is_str(r.cfg.forward_headers[0], "X-A", "--forward-header 1 in order");
		tap_is_str(r.cfg.forward_headers[1], "x-b", "--forward-header 2 in order, case kept");
		tap_is_str(r.cfg.forward_headers[2], "Cookie", "--forward-header 3: a default again");
	}
	pb_config_free(&r.cfg);
	{
		char *av[2 * (PB_MAX_FORWARD_HEADERS + 1) + 2], names[PB_MAX_FORWARD_HEADERS + 1][16];
		int n = 0;

		av[n++] = "pollbridge";
		for (int i = 0; i <= PB_MAX_FORWARD_HEADERS; i++) {
			snprintf(names[i], sizeof(names[i]), "X-H%d", i);
			av[n++] = "--forward-header";
			av[n++] = names[i];
		}
		av[n] = NULL;
		av[n - 2] = NULL;       /* 16 names */
		if (accepts_argv(&r, "16 --forward-header", av))
			tap_is_int(r.cfg.nforward_headers, PB_MAX_FORWARD_HEADERS,
				   "16 --forward-header: all kept");
		pb_config_free(&r.cfg);
		av[n - 2] = "--forward-header";
		fails_argv("17 --forward-header", "at most 16", av);
	}
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		char v[200];

		snprintf(name, sizeof(name), "--forward-header '%s'", vis(bad_names[i], v, sizeof(v)));
		fails_argv(name, "--forward-header", ARGV("--forward-header", (char *)bad_names[i]));
	}
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		snprintf(name, sizeof(name), "--forward-header %s", own[i]);
		fails_argv(name, "itself", ARGV("--forward-header", (char *)own[i]));
	}
	FAILS("named twice", "--forward-header", "X-Test", "--forward-header", "x-test");
	FAILS("named twice", "--forward-header=Cookie", "--forward-header=COOKIE");
	FAILS("--forward-header", "--forward-header");
	FAILS("--forward-header", "--forward-header=");

	/* The TLS files: parsing keeps the paths, pb_config_load_files reads them. */
	snprintf(files_dir, sizeof(files_dir), "/tmp/pb-test-config-XXXXXX");
	if (!mkdtemp(files_dir))
		tap_bail("mkdtemp failed");
	cert = put_file("cert.pem", S_(PEM_CERT "extra chain\n" PEM_CERT));
	key = put_file("key.pem", S_(PEM_KEY));
	ca = put_file("ca.pem", S_("# bundle\n" PEM_CERT));
	plain = put_file("plain.txt", S_("hello\n"));
	enc = put_file("enc.pem", S_("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n"
				    "-----END ENCRYPTED PRIVATE KEY-----\n"));
	bin = put_file("bin.pem", S_(PEM_CERT "\0\1"));
	bigtext = calloc(1, PB_MAX_PEM_FILE + 2);
	if (!bigtext)
		tap_bail("out of memory");
	memcpy(bigtext, PEM_CERT, strlen(PEM_CERT));
	memset(bigtext + strlen(PEM_CERT), 'A', PB_MAX_PEM_FILE + 1 - strlen(PEM_CERT));
	big = put_file("big.pem", bigtext, PB_MAX_PEM_FILE + 1);
	free(bigtext);

	if (ACCEPTS(&r, "--tls-cert", (char *)cert, "--tls-key=" "x", "--tls-key", (char *)key,
		    "--upstream-ca", (char *)ca)) {
		tap_is_str(r.cfg.tls_cert, cert, "--tls-cert: path stored");
		tap_is_str(r.cfg.tls_key, key, "--tls-key: the last one stored");
		tap_is_str(r.cfg.upstream_ca, ca, "--upstream-ca: path stored");
		tap_ok(!r.cfg.tls_cert_pem, "parsing reads no file");
		tap_is_int(pb_config_load_files(&r.cfg, r.err, sizeof(r.err)), 0,
			   "good cert, key and CA: loaded");
		tap_is_str(r.cfg.tls_cert_pem, PEM_CERT "extra chain\n" PEM_CERT,
			   "certificate text kept whole (chain)");
		tap_is_str(r.cfg.tls_key_pem, PEM_KEY, "key text kept");
		tap_is_int(pb_config_load_files(&r.cfg, r.err, sizeof(r.err)), 0,
			   "loading again: fine (read afresh)");
		tap_is_str(r.cfg.tls_key_pem, PEM_KEY, "key text after loading again");
	}
	pb_config_free(&r.cfg);
	tap_ok(!r.cfg.tls_cert_pem && !r.cfg.tls_key_pem && !r.cfg.tls_cert &&
	       !r.cfg.upstream_ca && r.cfg.nforward_headers == 0, "pb_config_free clears TLS and headers");
	if (ACCEPTS(&r, "--upstream-ca", (char *)ca))
		tap_is_int(pb_config_load_files(&r.cfg, r.err, sizeof(r.err)), 0,
			   "--upstream-ca alone: loaded");
	pb_config_free(&r.cfg);
	FAILS("--tls-cert", "--tls-cert=");
	FAILS("--tls-key", "--tls-key", "");
	FAILS("--upstream-ca", "--upstream-ca=");
	FAILS("--upstream-ca", "--upstream-ca");
	FILES_FAIL("both or neither", "--tls-cert", (char *)cert);
	FILES_FAIL("--tls-key without --tls-cert", "--tls-key", (char *)key);
	FILES_FAIL("--tls-cert /nonexistent/c.pem", "--tls-cert", "/nonexistent/c.pem", "--tls-key",
		   (char *)key);
	FILES_FAIL("--tls-key /nonexistent/k.pem", "--tls-cert", (char *)cert, "--tls-key",
		   "/nonexistent/k.pem");
	FILES_FAIL("no PEM certificate", "--tls-cert", (char *)plain, "--tls-key", (char *)key);
	FILES_FAIL("no PEM certificate", "--tls-cert", (char *)key, "--tls-key", (char *)key);
	FILES_FAIL("no PEM private key", "--tls-cert", (char *)cert, "--tls-key", (char *)plain);
	FILES_FAIL("no PEM private key", "--tls-cert", (char *)cert, "--tls-key", (char *)cert);
	FILES_FAIL("encrypted", "--tls-cert", (char *)cert, "--tls-key", (char *)enc);
	FILES_FAIL("--tls-cert /tmp", "--tls-cert", "/tmp", "--tls-key", (char *)key);
	FILES_FAIL("larger than", "--tls-cert", (char *)big, "--tls-key", (char *)key);
	FILES_FAIL("not a PEM file", "--tls-cert", (char *)bin, "--tls-key", (char *)key);
	FILES_FAIL("--upstream-ca /nonexistent/ca.pem", "--upstream-ca", "/nonexistent/ca.pem");
	FILES_FAIL("--upstream-ca", "--upstream-ca", (char *)plain);
	FILES_FAIL("--upstream-ca", "--tls-cert", (char *)cert, "--tls-key", (char *)key,
		   "--upstream-ca", (char *)key);
	for (const char *f = "cert.pem\0key.pem\0ca.pem\0plain.txt\0enc.pem\0bin.pem\0big.pem\0";
	     *f; f += strlen(f) + 1) {
		char path[128];

		snprintf(path, sizeof(path), "%s/%s", files_dir, f);
		unlink(path);
	}
	rmdir(files_dir);
}

/* The browser-facing flags: SSE heartbeat, CORS origins, JSONP. */
static void test_browser_flags(void)
{
	struct run r;

	if (ACCEPTS(&r, "--sse-heartbeat", "5"))
		tap_is_int(r.cfg.sse_heartbeat, 5, "--sse-heartbeat 5: stored");
	pb_config_free(&r.cfg);
	FAILS("--sse-heartbeat", "--sse-heartbeat", "0");
	FAILS("--sse-heartbeat", "--sse-heartbeat", "x");
	if (ACCEPTS(&r, "--cors-origin", "https://a.example", "--cors-origin=http://b.example:8080")) {
		tap_is_int(r.cfg.ncors_origins, 2, "--cors-origin twice: two origins");
		tap_ok(pb_config_cors_allowed(&r.cfg, "https://a.example"), "first origin allowed");
		tap_ok(pb_config_cors_allowed(&r.cfg, "http://b.example:8080"), "second origin allowed");
		tap_ok(!pb_config_cors_allowed(&r.cfg, "https://a.example.evil"), "no prefix match");
		tap_ok(!pb_config_cors_allowed(&r.cfg, "http://a.example"), "scheme matters");
		tap_ok(!pb_config_cors_allowed(&r.cfg, NULL), "no Origin: not allowed");
	}
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--cors-origin", "*"))
		tap_ok(pb_config_cors_allowed(&r.cfg, "https://anything.example"), "* allows any");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--route", "e=ws://h:1/"))
		tap_ok(!pb_config_cors_allowed(&r.cfg, "https://a.example"), "default: no origin");
	pb_config_free(&r.cfg);
	FAILS("--cors-origin", "--cors-origin", "a.example");
	FAILS("--cors-origin", "--cors-origin", "https://a.example/path");
	FAILS("--cors-origin", "--cors-origin", "https://");
	FAILS("--cors-origin", "--cors-origin=");
	if (ACCEPTS(&r, "--jsonp"))
		tap_is_int(r.cfg.jsonp, 1, "--jsonp: on");
	pb_config_free(&r.cfg);
	FAILS("--jsonp", "--jsonp=yes");
	if (ACCEPTS(&r, "--route", "e=ws://h:1/"))
		tap_is_int(r.cfg.lean_long_polls, 1, "--lean-long-polls: yes by default");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--lean-long-polls", "no"))
		tap_is_int(r.cfg.lean_long_polls, 0, "--lean-long-polls no: off");
	pb_config_free(&r.cfg);
	if (ACCEPTS(&r, "--lean-long-polls=yes"))
		tap_is_int(r.cfg.lean_long_polls, 1, "--lean-long-polls=yes: on");
	pb_config_free(&r.cfg);
	FAILS("--lean-long-polls", "--lean-long-polls", "on");
	FAILS("--lean-long-polls", "--lean-long-polls");
}

/* 1 if text mentions flag as a whole word ("--max-batch" is not in "--max-batch-bytes"). */
static int mentions_flag(const char *text, const char *flag)
{
	size_t n = strlen(flag);

	for (const char *p = strstr(text, flag); p; p = strstr(p + 1, flag)) {
		char c = p[n];

		if ((p == text || p[-1] == ' ' || p[-1] == '\n' || p[-1] == '[' ||
		     p[-1] == '"') &&
		    !(c == '-' || c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return 1;
	}
	return 0;
}

/* The --help text lists every accepted flag and only flags the parser knows. */
static void test_usage(void)
{
	static const char *const accepted[] = {
		"--listen", "--route", "--store", "--instance-id", "--wait-max",
		"--idle-timeout", "--connect-timeout", "--max-message-bytes", "--max-batch",
		"--max-batch-bytes", "--max-sessions", "--queue-max", "--log-level",
		"--check-config", "--version", "--help", "--forward-header", "--tls-cert",
		"--tls-key", "--upstream-ca",
	};
	const char *u = pb_config_usage();
	size_t n;

	tap_ok(u != NULL && strncmp(u, "Usage: pollbridge", 17) == 0, "usage starts with Usage:");
	if (!u)
		return;
	n = strlen(u);
	tap_ok(n > 0 && u[n - 1] == '\n', "usage ends with a newline");
	tap_ok(pb_config_usage() == u, "usage is static");
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
		tap_ok(mentions_flag(u, accepted[i]), "usage mentions %s", accepted[i]);
	tap_ok(strstr(u, PB_DEFAULT_LISTEN) != NULL, "usage shows the default listen address");
	tap_ok(strstr(u, "redial") && strstr(u, "insecure") && strstr(u, "origin="),
	       "usage lists the route options");
	tap_ok(!mentions_flag(u, "--bogus"), "mentions_flag itself can say no");
	tap_ok(!strstr(u, "Not available"), "usage lists nothing as not available any more");
	tap_ok(!mentions_flag("--max-batch-bytes N", "--max-batch"),
	       "mentions_flag needs the whole flag");

	/* Every --word in the text: accepted (or documented as not yet available),
	 * never unknown to the parser. */
	for (const char *p = strstr(u, "--"); p; p = strstr(p + 2, "--")) {
		char flag[64];
		size_t k = 2;
		struct run r;

		while (k < sizeof(flag) - 1 &&
		       ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= '0' && p[k] <= '9') || p[k] == '-'))
			k++;
		if (k == 2)
			continue;
		memcpy(flag, p, k);
		flag[k] = '\0';
		RUN(&r, flag, "x");
		tap_ok(r.rc == 0 || strncmp(r.err, "unknown option", 14) != 0,
		       "usage's %s is known to the parser", flag);
		pb_config_free(&r.cfg);
	}
}

/* Reasons are cut to errlen and stay NUL-terminated. */
static void test_err_truncation(void)
{
	struct pb_config cfg;
	enum pb_config_action action;
	char err[9];

	memset(err, 'Z', sizeof(err));
	if (pb_config_init(&cfg))
		tap_bail("pb_config_init failed");
	tap_is_int(pb_config_parse_args(&cfg, 3, ARGV("--wait-max", "nope"), &action, err, 8),
		   PB_EBADREQ, "short err buffer: rejected");
	tap_is_int(strlen(err), 7, "short err buffer: reason cut to 7 chars");
	tap_is_str(err, "--wait-", "short err buffer: reason prefix");
	tap_is_int(err[8], 'Z', "short err buffer: nothing written past errlen");
	pb_config_free(&cfg);
}

/* pb_config_free releases everything and leaves a config that can be re-initialised. */
static void test_free(void)
{
	struct run r;

	RUN(&r, "--route", "a=ws://h/ origin=https://o.example", "--route", "b=wss://[::1]/",
	    "--instance-id", "x", "--listen", "[::1]:1");
	tap_is_int(r.rc, 0, "config with owned strings: accepted");
	pb_config_free(&r.cfg);
	tap_ok(r.cfg.routes == NULL && r.cfg.nroutes == 0 && r.cfg.listen_host == NULL &&
	       r.cfg.store == NULL && r.cfg.instance_id == NULL, "pb_config_free clears");
	tap_is_int(pb_config_init(&r.cfg), 0, "re-init after free");
	tap_is_str(r.cfg.listen_host, "127.0.0.1", "re-init restores the default listen host");
	pb_config_free(&r.cfg);
	/* A failed parse leaves a config pb_config_free can release (no leak, no double free). */
	RUN(&r, "--route", "a=ws://h/", "--instance-id", "y", "--route", "a=ws://h/");
	tap_is_int(r.rc, PB_EBADREQ, "failed parse: rejected");
	tap_is_int(r.cfg.nroutes, 1, "failed parse: the first route stays");
	pb_config_free(&r.cfg);
}

/* The front doors' route options engineio=PATH and sockjs=PREFIX: parsed,
 * and every refusal with its reason, on the command line and in a config
 * file (with the file's line number). */
static void test_doors(void)
{
	struct run r;
	char path[128];
	FILE *fp;

	if (ACCEPTS(&r, "--route", "chat=ws://127.0.0.1:5000/socket.io/?EIO=4 engineio=/socket.io/",
		    "--route", "echo=ws://127.0.0.1:8080/echo sockjs=/echo",
		    "--route", "e2=ws://127.0.0.1:8080/ sockjs=/echo2",
		    "--route", "deep=ws://127.0.0.1:8080/ sockjs=/a.b/c_d~e-f")) {
		tap_is_str(r.cfg.routes[0].engineio, "/socket.io/", "engineio= parsed");
		tap_ok(r.cfg.routes[0].sockjs == NULL, "no sockjs= on the engineio route");
		tap_is_str(r.cfg.routes[1].sockjs, "/echo", "sockjs= parsed");
		tap_is_str(r.cfg.routes[2].sockjs, "/echo2", "/echo and /echo2 do not overlap");
	}
	pb_config_free(&r.cfg);
	route_bad("a=ws://h/ engineio=socket.io/", "engineio=socket.io/ must start with '/'");
	route_bad("a=ws://h/ engineio=", "engineio= must start with '/'");
	route_bad("a=ws://h/ sockjs=echo", "sockjs=echo must start with '/'");
	route_bad("a=ws://h/ engineio=/socket.io", "engineio=/socket.io must end with '/'");
	route_bad("a=ws://h/ sockjs=/echo/", "sockjs=/echo/ must not end with '/'");
	route_bad("a=ws://h/ sockjs=/v1", "may not be /v1 or under it");
	route_bad("a=ws://h/ engineio=/v1/", "may not be /v1 or under it");
	route_bad("a=ws://h/ sockjs=/v1/sessions", "may not be /v1 or under it");
	route_bad("a=ws://h/ engineio=/v1/x/", "may not be /v1 or under it");
	route_bad("a=ws://h/ sockjs=/metrics", "may not be an operations path");
	route_bad("a=ws://h/ engineio=/healthz/", "may not be an operations path");
	route_bad("a=ws://h/ sockjs=/livez", "may not be an operations path");
	route_bad("a=ws://h/ sockjs=/readyz", "may not be an operations path");
	route_bad("a=ws://h/ sockjs=/a%20b", "may hold only letters, digits and . _ ~ / -");
	route_bad("a=ws://h/ sockjs=/a?b", "may hold only letters");
	route_bad("a=ws://h/ sockjs=/a//b", "may not hold '//'");
	route_bad("a=ws://h/ engineio=/a/../v1/", "may not hold a '.' or '..' segment");
	route_bad("a=ws://h/ engineio=/x/ sockjs=/y", "engineio= and sockjs= on one route");
	route_bad("a=ws://h/ sockjs=/y engineio=/x/", "engineio= and sockjs= on one route");
	route_bad("a=ws://h/ sockjs=/y sockjs=/z", "sockjs= given twice");
	FAILS("sockjs=/echo overlaps sockjs=/echo of route 'a'", "--route", "a=ws://h/ sockjs=/echo",
	      "--route", "b=ws://h/ sockjs=/echo");
	FAILS("sockjs=/echo/x overlaps sockjs=/echo of route 'a'", "--route",
	      "a=ws://h/ sockjs=/echo", "--route", "b=ws://h/ sockjs=/echo/x");
	FAILS("engineio=/echo/ overlaps sockjs=/echo of route 'a'", "--route",
	      "a=ws://h/ sockjs=/echo", "--route", "b=ws://h/ engineio=/echo/");
	FAILS("sockjs=/s overlaps engineio=/s/io/ of route 'a'", "--route",
	      "a=ws://h/ engineio=/s/io/", "--route", "b=ws://h/ sockjs=/s");
	/* In a config file: the reason carries FILE:LINE. */
	snprintf(path, sizeof(path), "/tmp/pb-test-doors-%d.conf", (int)getpid());
	fp = fopen(path, "w");
	if (fp) {
		fputs("# doors\nroute = a=ws://h/ sockjs=/echo\nroute = b=ws://h/ engineio=/echo/x/\n", fp);
		fclose(fp);
		run_argv(&r, ARGV("--config", path));
		tap_is_int(r.rc, PB_EBADREQ, "config file: overlapping doors rejected");
		tap_ok(strstr(r.err, ":3: --route") && strstr(r.err, "overlaps sockjs=/echo"),
		       "config file: the reason names line 3 and the overlap: %s", r.err);
		pb_config_free(&r.cfg);
		unlink(path);
	}
}

int main(void)
{
	test_defaults();
	test_doors();
	test_numeric_flags();
	test_listen();
	test_routes();
	test_other_flags();
	test_actions();
	test_bad_syntax();
	test_later_flags();
	test_forward_and_tls();
	test_browser_flags();
	test_usage();
	test_err_truncation();
	test_free();
	return tap_done();
}
