/*
 * test_tls.c: HTTPS on the front end, wss:// upstreams and the request
 * headers forwarded on the upstream handshake (docs/API.md "Create a session",
 * "Command line"). A throwaway CA and server certificates are made with the
 * openssl command line in the test's temp dir.
 * - HTTPS: with --tls-cert/--tls-key the bridge prints the same ready line
 *   and create, send, poll, long poll, /healthz and DELETE work over HTTPS
 *   (libcurl with our CA); a client without our CA refuses the certificate;
 *   plain HTTP to the HTTPS port gets no HTTP answer and leaves the bridge
 *   serving; missing, mismatched or lone TLS files, and a missing
 *   --upstream-ca, exit non-zero with exactly one line that names the file.
 * - wss: websocketd --ssl running tests/upstreams/echo.sh. With
 *   --upstream-ca CA a create echoes; without it (the system's CAs do not
 *   know ours) it is 502 upstream_unreachable, quickly (not 504); the route
 *   option insecure works without the CA; a certificate for another host
 *   name is 502 even with the CA, and works with insecure.
 * - forwarded headers, read back through pollbridge-echo's "/header NAME":
 *   by default Cookie, Authorization and User-Agent (not X-Test), repeated
 *   Cookie headers joined with "; ", X-Forwarded-For "127.0.0.1" or the
 *   client's value(s) + ", 127.0.0.1", the client's Origin; with
 *   --forward-header X-Test only X-Test (Cookie no longer). A forwarded
 *   header (or Origin) holding CR or another control character (sent over a
 *   raw socket: curl cannot) is 400 bad_request; the same in a header that
 *   is not forwarded does not matter.
 * - certificate reload (issue 13): a bridge started with --config naming
 *   certificate A (CN pb-a) keeps serving A when a SIGHUP finds a corrupt
 *   certificate or a key that does not match ("reload failed" logged);
 *   after the file names certificate B and a SIGHUP, a new connection is
 *   shown B while a keep-alive connection opened before the reload still
 *   answers on the same connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "e2e/harness.h"
#include "tap.h"

#define COLLECT_MS	10000	/* for h_collect */
#define CONNECT_S	"5"	/* --connect-timeout: a hang would be 504 after it */

static char ca_pem[512], ca_key[512], srv_pem[512], srv_key[512], wrong_pem[512],
	wrong_key[512];

/* Run a shell command (its output goes to the temp dir's openssl.log);
 * bail out if it fails. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[4096], full[4600];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && { %s; } >>openssl.log 2>&1", h_tmpdir(), cmd);
	rc = system(full);
	if (rc != 0)
		tap_bail("command failed (%d): %s (see openssl.log, PB_KEEP_TMP=1)", rc, cmd);
}

/* Make the CA, a certificate for 127.0.0.1 and one for wrong.example, both
 * signed by the CA (P-256 keys: quick to generate). */
static void make_certs(void)
{
	const char *d = h_tmpdir();
	const char *newkey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

	if (system("openssl version >/dev/null 2>&1") != 0)
		tap_bail("the openssl command is missing (sh contrib/deps.sh test)");
	sh("openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj '/CN=pollbridge test CA'",
	   newkey);
	sh("openssl req %s -keyout srv.key -out srv.csr -subj '/CN=127.0.0.1' && "
	   "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' >srv.ext && "
	   "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 "
	   "-extfile srv.ext -out srv.pem", newkey);
	sh("openssl req %s -keyout wrong.key -out wrong.csr -subj '/CN=wrong.example' && "
	   "printf 'subjectAltName=DNS:wrong.example\\n' >wrong.ext && "
	   "openssl x509 -req -in wrong.csr -CA ca.pem -CAkey ca.key -set_serial 3 -days 2 "
	   "-extfile wrong.ext -out wrong.pem", newkey);
	snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", d);
	snprintf(ca_key, sizeof(ca_key), "%s/ca.key", d);
	snprintf(srv_pem, sizeof(srv_pem), "%s/srv.pem", d);
	snprintf(srv_key, sizeof(srv_key), "%s/srv.key", d);
	snprintf(wrong_pem, sizeof(wrong_pem), "%s/wrong.pem", d);
	snprintf(wrong_key, sizeof(wrong_key), "%s/wrong.key", d);
}

/* ---- HTTPS client ------------------------------------------------------ */

/* libcurl write callback: append to the response body. */
static size_t tls_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct h_resp *r = userp;
	size_t n = size * nmemb;
	char *t = realloc(r->body, r->len + n + 1);

	if (!t)
		return 0;
	memcpy(t + r->len, data, n);
	r->body = t;
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/* One HTTPS request that trusts cainfo (NULL: libcurl's default CAs).
 * Body (may be NULL) is sent as content_type. Returns the status, 0 if no
 * HTTP answer arrived; r must be freed with h_resp_free. */
static long https(struct h_resp *r, const char *method, const char *url, const char *cainfo,
		  const char *content_type, const char *body)
{
	struct curl_slist *hl = NULL, *t;
	char ct[128];
	CURL *c = curl_easy_init();
	CURLcode cc;

	memset(r, 0, sizeof(*r));
	r->body = calloc(1, 1);
	if (!c || !r->body)
		tap_bail("out of memory");
	snprintf(ct, sizeof(ct), "Content-Type: %s", content_type ? content_type : "");
	if (content_type && (t = curl_slist_append(hl, ct)))
		hl = t;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	if (cainfo)
		curl_easy_setopt(c, CURLOPT_CAINFO, cainfo);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tls_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (body || !strcmp(method, "POST")) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
	}
	if (strcmp(method, body || !strcmp(method, "POST") ? "POST" : "GET"))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->len && r->body[0] == '{')
			r->json = json_loadb(r->body, r->len, 0, NULL);
	} else {
		tap_diag("%s %s: %s", method, url, curl_easy_strerror(cc));
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return r->status;
}

/* The string member key of the JSON object o, or "". */
static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* ---- processes --------------------------------------------------------- */

/* Wait up to 10 s until something accepts on 127.0.0.1:port. */
static int wait_port(int port)
{
	int64_t deadline = h_now_ms() + 10000;
	struct sockaddr_in a = { 0 };

	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	while (h_now_ms() < deadline) {
		int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

		ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return 0;
		h_sleep_ms(50);
	}
	return -1;
}

/* websocketd --ssl with cert/key running echo.sh on a free port. */
static struct h_proc *wss_echo_start(int *port, const char *cert, const char *key)
{
	char portarg[32], certarg[600], keyarg[600], script[600];
	char *argv[] = { "websocketd", "--address=127.0.0.1", portarg, "--ssl", certarg, keyarg,
			 script, NULL };
	const char *up = getenv("PB_UPSTREAMS");
	struct h_proc *p;

	*port = h_free_port();
	snprintf(portarg, sizeof(portarg), "--port=%d", *port);
	snprintf(certarg, sizeof(certarg), "--sslcert=%s", cert);
	snprintf(keyarg, sizeof(keyarg), "--sslkey=%s", key);
	snprintf(script, sizeof(script), "%s/echo.sh", up ? up : "tests/upstreams");
	p = h_spawn(argv, NULL, 0, NULL, 0);
	if (!p || wait_port(*port))
		tap_bail("websocketd --ssl did not start on port %d", *port);
	return p;
}

/* Run pollbridge with argv (NULL-terminated, after the binary) until it
 * exits; returns its exit code and its output (malloc'd) in *out. */
static int run_bridge(char **out, char *const *args)
{
	char *argv[16];
	struct h_proc *p;
	int n = 0, rc;

	argv[n++] = getenv("PB_BIN");
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	while (*args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;
	p = h_spawn(argv, NULL, 0, NULL, 0);
	if (!p) {
		*out = NULL;
		return -1;
	}
	rc = h_wait_exit(p, 10000);
	*out = h_read_file(p->log_path);
	if (rc == -2)
		h_stop(p, SIGKILL, 1000);
	return rc;
}

#define ARGS(...) ((char *const[]){ __VA_ARGS__, NULL })

/* A start that must fail: exit code want_rc and exactly the one line want. */
static void start_fails(const char *what, int want_rc, const char *want, char *const *args)
{
	char *out = NULL;
	int rc = run_bridge(&out, args);

	tap_is_int(rc, want_rc, "%s: exit %d", what, want_rc);
	tap_is_str(out ? out : "", want, "%s: exactly one line naming the file", what);
	free(out);
}

/* ---- raw HTTP ---------------------------------------------------------- */

/* Send req (raw bytes) to 127.0.0.1:port and read the answer until the
 * server closes. Returns the status (0 if none) and the body's JSON error
 * code in err (at least 64 bytes). */
static long raw_http(int port, const char *req, char *err)
{
	struct sockaddr_in a = { 0 };
	char buf[8192];
	size_t len = 0;
	ssize_t n;
	long status = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	err[0] = '\0';
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		tap_diag("raw request: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.1 %ld", &status) != 1)
		status = 0;
	{
		const char *body = strstr(buf, "\r\n\r\n");
		json_t *j = body ? json_loads(body + 4, 0, NULL) : NULL;

		snprintf(err, 64, "%s", jstr(j, "error"));
		json_decref(j);
	}
	return status;
}

/* ---- checks ------------------------------------------------------------ */

/* Create a session on route with the extra request headers (NULL-terminated
 * "Name: value" lines); returns the status and the id in id (64 bytes). */
static long create_with(struct h_bridge *b, const char *route, const char *const *headers,
			char *id, struct h_resp *r)
{
	char url[128], body[128];

	snprintf(url, sizeof(url), "%s/v1/sessions", b->base);
	snprintf(body, sizeof(body), "{\"route\":\"%s\"}", route);
	h_http(r, "POST", url, "application/json", body, strlen(body), headers);
	snprintf(id, 64, "%s", r->status == 201 ? jstr(r->json, "session") : "");
	return r->status;
}

/* Ask pollbridge-echo for each handshake header in names (NULL-terminated)
 * and check the answers against want, in order, exactly. */
static void check_headers(struct h_bridge *b, const char *id, const char *const *names,
			  const char *const *want, const char *what)
{
	json_t *got = json_array();
	char cmd[128];
	size_t n = 0, i;
	struct h_resp r;

	for (; names[n]; n++) {
		snprintf(cmd, sizeof(cmd), "/header %s", names[n]);
		if (h_send_text(b, id, cmd, &r) != 200)
			tap_diag("%s: send '%s': %ld %s", what, cmd, r.status, r.body);
		h_resp_free(&r);
	}
	tap_is_int(h_collect(b, id, 0, n, COLLECT_MS, got), n, "%s: %zu answers", what, n);
	for (i = 0; i < n && i < json_array_size(got); i++)
		tap_is_str(jstr(json_array_get(got, i), "data"), want[i], "%s: %s is '%s'", what,
			   names[i], want[i]);
	json_decref(got);
}

/* Create on route through b and echo one message through the session. */
static void echo_ok(struct h_bridge *b, const char *route, const char *what)
{
	json_t *got = json_array();
	struct h_resp r;
	char id[64];

	if (!tap_is_int(h_create(b, route, id, &r), 201, "%s: create is 201", what)) {
		tap_diag("  %s", r.body ? r.body : "");
		h_resp_free(&r);
		json_decref(got);
		return;
	}
	h_resp_free(&r);
	tap_is_int(h_send_text(b, id, "over wss", &r), 200, "%s: send is 200", what);
	h_resp_free(&r);
	tap_is_int(h_collect(b, id, 0, 1, COLLECT_MS, got), 1, "%s: one message back", what);
	tap_is_str(jstr(json_array_get(got, 0), "data"), "over wss", "%s: the echo is exact", what);
	tap_is_int(h_delete(b, id), 204, "%s: DELETE is 204", what);
	json_decref(got);
}

/* A create on route must fail at once with 502 upstream_unreachable. */
static void create_502(struct h_bridge *b, const char *route, const char *what)
{
	struct h_resp r;

	tap_is_int(h_create(b, route, NULL, &r), 502, "%s: create is 502", what);
	tap_is_str(h_err(&r), "upstream_unreachable", "%s: upstream_unreachable", what);
	tap_ok(r.seconds < 4.0, "%s: refused at once (%.2f s), not after the timeout", what,
	       r.seconds);
	h_resp_free(&r);
}

/* (a) The front end over HTTPS. */
static void test_https(void)
{
	struct h_bridge b;
	struct h_proc *echo;
	struct h_resp r;
	char route[128], url[256], id[64], want[64], *log, *out;
	int eport;

	echo = h_echo_start(&eport, NULL);
	if (!echo)
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "echo=ws://127.0.0.1:%d/", eport);
	if (h_bridge_start(&b, "--tls-cert", srv_pem, "--tls-key", srv_key, "--route", route, NULL))
		tap_bail("pollbridge with --tls-cert did not start");
	snprintf(b.base, sizeof(b.base), "https://127.0.0.1:%d", b.port);
	log = h_read_file(b.proc->log_path);
	snprintf(want, sizeof(want), "\nlistening on 127.0.0.1:%d\n", b.port);
	tap_ok(log && strstr(log, want), "HTTPS: the ready line is 'listening on 127.0.0.1:%d'",
	       b.port);
	free(log);

	snprintf(url, sizeof(url), "%s/v1/sessions?route=echo", b.base);
	tap_is_int(https(&r, "POST", url, ca_pem, NULL, NULL), 201, "HTTPS: create is 201");
	snprintf(id, sizeof(id), "%s", jstr(r.json, "session"));
	tap_is_int(strlen(id), 22, "HTTPS: a session id");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages", b.base, id);
	tap_is_int(https(&r, "POST", url, ca_pem, "text/plain", "hello over https"), 200,
		   "HTTPS: send is 200");
	tap_is_str(r.body, "{\"accepted\":1}", "HTTPS: send accepted 1");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=0&wait=5", b.base, id);
	tap_is_int(https(&r, "GET", url, ca_pem, NULL, NULL), 200, "HTTPS: long poll is 200");
	tap_is_str(r.body, "{\"messages\":[{\"seq\":1,\"type\":\"text\",\"data\":\"hello over https\"}],"
		   "\"state\":\"open\"}", "HTTPS: the echo comes back exactly");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=1&wait=1", b.base, id);
	tap_is_int(https(&r, "GET", url, ca_pem, NULL, NULL), 200, "HTTPS: empty long poll is 200");
	tap_is_str(r.body, "{\"messages\":[],\"state\":\"open\"}", "HTTPS: empty long poll body");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/healthz", b.base);
	tap_is_int(https(&r, "GET", url, ca_pem, NULL, NULL), 200, "HTTPS: /healthz is 200");
	h_resp_free(&r);

	/* The certificate is really checked by a client: ours is unknown to
	 * the system's CAs. */
	tap_is_int(https(&r, "GET", url, NULL, NULL, NULL), 0,
		   "HTTPS: a client without our CA refuses the certificate");
	h_resp_free(&r);
	/* Plain HTTP to the HTTPS port: no HTTP answer; the bridge goes on. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", b.port);
	h_http(&r, "GET", url, NULL, NULL, 0, NULL);
	tap_is_int(r.status, 0, "plain HTTP to the HTTPS port gets no HTTP answer");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/sessions?route=echo", b.port);
	h_http(&r, "POST", url, NULL, NULL, 0, NULL);
	tap_is_int(r.status, 0, "plain HTTP create on the HTTPS port gets no HTTP answer");
	h_resp_free(&r);
	tap_ok(h_alive(b.proc), "HTTPS: the bridge is still running");

	snprintf(url, sizeof(url), "%s/v1/sessions/%s", b.base, id);
	tap_is_int(https(&r, "DELETE", url, ca_pem, NULL, NULL), 204, "HTTPS: DELETE is 204");
	h_resp_free(&r);
	snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages?after=1", b.base, id);
	tap_is_int(https(&r, "GET", url, ca_pem, NULL, NULL), 410, "HTTPS: then a poll is 410");
	h_resp_free(&r);
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "HTTPS: SIGTERM exits 0");
	h_stop(echo, SIGTERM, 5000);

	/* Startup failures: one line, naming the file. */
	{
		char l1[1200], l2[1200];
		char *nope = "/nonexistent/cert.pem";

		snprintf(l1, sizeof(l1), "pollbridge: --tls-cert %s: No such file or directory\n", nope);
		start_fails("missing --tls-cert file", 2, l1,
			    ARGS("--tls-cert", nope, "--tls-key", srv_key));
		snprintf(l1, sizeof(l1), "pollbridge: --tls-key %s/nope.key: No such file or directory\n",
			 h_tmpdir());
		snprintf(l2, sizeof(l2), "%s/nope.key", h_tmpdir());
		start_fails("missing --tls-key file", 2, l1, ARGS("--tls-cert", srv_pem, "--tls-key", l2));
		start_fails("--tls-cert alone", 2,
			    "pollbridge: --tls-cert without --tls-key: give both or neither\n",
			    ARGS("--tls-cert", srv_pem));
		start_fails("--tls-key alone", 2,
			    "pollbridge: --tls-key without --tls-cert: give both or neither\n",
			    ARGS("--tls-key", srv_key));
		snprintf(l1, sizeof(l1), "pollbridge: --tls-cert %s: no PEM certificate in it\n", srv_key);
		start_fails("a key as --tls-cert", 2, l1, ARGS("--tls-cert", srv_key, "--tls-key", srv_key));
		snprintf(l1, sizeof(l1), "pollbridge: --upstream-ca %s/nope.pem: No such file or directory\n",
			 h_tmpdir());
		snprintf(l2, sizeof(l2), "%s/nope.pem", h_tmpdir());
		start_fails("missing --upstream-ca file", 2, l1, ARGS("--upstream-ca", l2));

		/* A certificate with another certificate's key: the TLS library
		 * says why; the line names both files. */
		snprintf(l1, sizeof(l1), "pollbridge: --tls-cert %s / --tls-key %s: ", srv_pem, wrong_key);
		{
			int rc = run_bridge(&out, ARGS("--tls-cert", srv_pem, "--tls-key", wrong_key));
			size_t nl = 0;

			for (const char *p = out; p && *p; p++)
				nl += *p == '\n';
			tap_is_int(rc, 1, "mismatched certificate and key: exit 1");
			tap_is_int(nl, 1, "mismatched certificate and key: one line");
			tap_ok(out && !strncmp(out, l1, strlen(l1)),
			       "mismatched certificate and key: names both files (%.*s)",
			       out ? (int)strcspn(out, "\n") : 0, out ? out : "");
			free(out);
		}
		tap_is_int(run_bridge(&out, ARGS("--tls-cert", srv_pem, "--tls-key", srv_key,
						  "--upstream-ca", ca_pem, "--check-config")), 0,
			   "--check-config with good TLS files: exit 0");
		tap_is_str(out ? out : "", "config ok\n", "--check-config with good TLS files: config ok");
		free(out);
	}
}

/* (b) wss:// upstreams. */
static void test_wss(void)
{
	struct h_bridge b1, b2;
	struct h_proc *good, *wrong;
	char r_good[128], r_good_ins[128], r_wrong[128], r_wrong_ins[128];
	int gport, wport;

	good = wss_echo_start(&gport, srv_pem, srv_key);
	wrong = wss_echo_start(&wport, wrong_pem, wrong_key);
	snprintf(r_good, sizeof(r_good), "good=wss://127.0.0.1:%d/", gport);
	snprintf(r_good_ins, sizeof(r_good_ins), "goodins=wss://127.0.0.1:%d/ insecure", gport);
	snprintf(r_wrong, sizeof(r_wrong), "wrong=wss://127.0.0.1:%d/", wport);
	snprintf(r_wrong_ins, sizeof(r_wrong_ins), "wrongins=wss://127.0.0.1:%d/ insecure", wport);

	if (h_bridge_start(&b1, "--upstream-ca", ca_pem, "--connect-timeout", CONNECT_S,
			   "--route", r_good, "--route", r_good_ins, "--route", r_wrong,
			   "--route", r_wrong_ins, NULL))
		tap_bail("pollbridge with --upstream-ca did not start");
	echo_ok(&b1, "good", "wss with --upstream-ca");
	echo_ok(&b1, "goodins", "wss insecure with --upstream-ca");
	create_502(&b1, "wrong", "wss to a certificate for another host, with the CA");
	echo_ok(&b1, "wrongins", "wss insecure to a certificate for another host");
	echo_ok(&b1, "good", "wss with --upstream-ca after the failures");
	tap_is_int(h_stop(b1.proc, SIGTERM, 10000), 0, "--upstream-ca bridge: SIGTERM exits 0");

	if (h_bridge_start(&b2, "--connect-timeout", CONNECT_S, "--route", r_good,
			   "--route", r_good_ins, "--route", r_wrong, "--route", r_wrong_ins, NULL))
		tap_bail("pollbridge without --upstream-ca did not start");
	create_502(&b2, "good", "wss without --upstream-ca (system CAs)");
	echo_ok(&b2, "goodins", "wss insecure without --upstream-ca");
	create_502(&b2, "wrong", "wss to another host's certificate without the CA");
	echo_ok(&b2, "wrongins", "wss insecure to another host's certificate without the CA");
	tap_is_int(h_stop(b2.proc, SIGTERM, 10000), 0, "system-CA bridge: SIGTERM exits 0");
	h_stop(good, SIGTERM, 5000);
	h_stop(wrong, SIGTERM, 5000);
}

/* (c) Request headers forwarded on the upstream handshake. */
static void test_forwarded(void)
{
	static const char *const names[] = {
		"cookie", "authorization", "user-agent", "x-test", "x-forwarded-for", "origin", NULL
	};
	struct h_bridge b, bx;
	struct h_proc *echo;
	struct h_resp r;
	char route[128], id[64], err[64], req[512];
	int eport;

	echo = h_echo_start(&eport, NULL);
	if (!echo)
		tap_bail("pollbridge-echo did not start");
	snprintf(route, sizeof(route), "echo=ws://127.0.0.1:%d/", eport);
	if (h_bridge_start(&b, "--route", route, NULL))
		tap_bail("pollbridge did not start");

	if (create_with(&b, "echo", (const char *const[]){ "Cookie: a=1", "Authorization: Bearer t0k",
			"User-Agent: pb-test/1.0", "X-Test: xt", NULL }, id, &r) == 201)
		check_headers(&b, id, names, (const char *const[]){ "a=1", "Bearer t0k",
			      "pb-test/1.0", "", "127.0.0.1", "" }, "default list");
	else
		tap_ok(0, "default list: create is 201 (%ld %s)", r.status, r.body);
	h_resp_free(&r);

	if (create_with(&b, "echo", (const char *const[]){ "Cookie: a=1", "Cookie: b=2",
			"X-Forwarded-For: 10.0.0.1", "Origin: https://app.example", NULL }, id,
			&r) == 201)
		check_headers(&b, id, names, (const char *const[]){ "a=1; b=2", "", "", "",
			      "10.0.0.1, 127.0.0.1", "https://app.example" },
			      "client X-Forwarded-For, two Cookies, Origin");
	else
		tap_ok(0, "client X-Forwarded-For: create is 201 (%ld %s)", r.status, r.body);
	h_resp_free(&r);

	if (create_with(&b, "echo", (const char *const[]){ "X-Forwarded-For: 10.0.0.1",
			"X-Forwarded-For: 10.0.0.2, 10.0.0.3", NULL }, id, &r) == 201)
		check_headers(&b, id, (const char *const[]){ "x-forwarded-for", NULL },
			      (const char *const[]){ "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1" },
			      "two X-Forwarded-For headers");
	else
		tap_ok(0, "two X-Forwarded-For: create is 201 (%ld %s)", r.status, r.body);
	h_resp_free(&r);

	/* A control character in a forwarded header never reaches the upstream. */
	snprintf(req, sizeof(req), "POST /v1/sessions?route=echo HTTP/1.1\r\nHost: x\r\n"
		 "Cookie: a=1\rX-Evil: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	tap_is_int(raw_http(b.port, req, err), 400, "CR inside a forwarded Cookie: 400");
	tap_is_str(err, "bad_request", "CR inside a forwarded Cookie: bad_request");
	snprintf(req, sizeof(req), "POST /v1/sessions?route=echo HTTP/1.1\r\nHost: x\r\n"
		 "User-Agent: a\x01" "b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	tap_is_int(raw_http(b.port, req, err), 400, "control character in User-Agent: 400");
	tap_is_str(err, "bad_request", "control character in User-Agent: bad_request");
	snprintf(req, sizeof(req), "POST /v1/sessions?route=echo HTTP/1.1\r\nHost: x\r\n"
		 "X-Forwarded-For: 10.0.0.1\r, 1.2.3.4\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	tap_is_int(raw_http(b.port, req, err), 400, "CR inside X-Forwarded-For: 400");
	snprintf(req, sizeof(req), "POST /v1/sessions?route=echo HTTP/1.1\r\nHost: x\r\n"
		 "Origin: https://a.example\rX-Evil: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	tap_is_int(raw_http(b.port, req, err), 400, "CR inside Origin: 400");
	tap_is_str(err, "bad_request", "CR inside Origin: bad_request");
	snprintf(req, sizeof(req), "POST /v1/sessions?route=echo HTTP/1.1\r\nHost: x\r\n"
		 "X-Test: a\rb\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	tap_is_int(raw_http(b.port, req, err), 201, "CR in a header that is not forwarded: 201");
	tap_ok(h_still_serving(&b, "echo"), "default list: still serving");
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "default list: SIGTERM exits 0");

	/* --forward-header replaces the default list. */
	if (h_bridge_start(&bx, "--route", route, "--forward-header", "X-Test", NULL))
		tap_bail("pollbridge --forward-header did not start");
	if (create_with(&bx, "echo", (const char *const[]){ "Cookie: a=1", "Authorization: Bearer t0k",
			"User-Agent: pb-test/1.0", "x-test: xt value", NULL }, id, &r) == 201)
		check_headers(&bx, id, names, (const char *const[]){ "", "", "", "xt value",
			      "127.0.0.1", "" }, "--forward-header X-Test");
	else
		tap_ok(0, "--forward-header X-Test: create is 201 (%ld %s)", r.status, r.body);
	h_resp_free(&r);
	if (create_with(&bx, "echo", NULL, id, &r) == 201)
		check_headers(&bx, id, (const char *const[]){ "x-test", "x-forwarded-for", NULL },
			      (const char *const[]){ "", "127.0.0.1" },
			      "--forward-header X-Test, client sends none");
	else
		tap_ok(0, "--forward-header X-Test, none sent: create is 201 (%ld %s)", r.status,
		       r.body);
	h_resp_free(&r);
	snprintf(req, sizeof(req), "POST /v1/sessions?route=echo HTTP/1.1\r\nHost: x\r\n"
		 "X-Test: a\rb\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	tap_is_int(raw_http(bx.port, req, err), 400, "--forward-header X-Test: CR in X-Test is 400");
	tap_is_str(err, "bad_request", "--forward-header X-Test: CR in X-Test is bad_request");
	snprintf(req, sizeof(req), "POST /v1/sessions?route=echo HTTP/1.1\r\nHost: x\r\n"
		 "Cookie: a\rb\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	tap_is_int(raw_http(bx.port, req, err), 201,
		   "--forward-header X-Test: CR in Cookie (no longer forwarded) is 201");
	tap_is_int(h_stop(bx.proc, SIGTERM, 10000), 0, "--forward-header bridge: SIGTERM exits 0");
	h_stop(echo, SIGTERM, 5000);
}

/* ---- certificate reload ------------------------------------------------ */

/* GET url on c (a handle that may hold a kept-alive connection); subject
 * gets the server certificate's subject when a handshake ran, *fresh the
 * number of new connections made. Returns the status, 0 on failure. */
static long cert_get(CURL *c, const char *url, char *subject, size_t sublen, long *fresh)
{
	struct h_resp r;
	struct curl_certinfo *ci = NULL;
	long status = 0;
	CURLcode cc;

	memset(&r, 0, sizeof(r));
	r.body = calloc(1, 1);
	if (!r.body)
		tap_bail("out of memory");
	subject[0] = '\0';
	*fresh = -1;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca_pem);
	curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tls_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, fresh);
		if (curl_easy_getinfo(c, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci &&
		    ci->num_of_certs > 0)
			for (struct curl_slist *l = ci->certinfo[0]; l; l = l->next)
				if (!strncmp(l->data, "Subject:", 8))
					snprintf(subject, sublen, "%s", l->data + 8);
	} else {
		tap_diag("GET %s: %s", url, curl_easy_strerror(cc));
	}
	h_resp_free(&r);
	return status;
}

/* The subject a brand-new connection to url is shown ("" if none). */
static const char *new_subject(const char *url, char *subject, size_t sublen)
{
	CURL *c = curl_easy_init();
	long fresh;

	if (!c)
		tap_bail("out of memory");
	cert_get(c, url, subject, sublen, &fresh);
	curl_easy_cleanup(c);
	return subject;
}

/* Write a --config file naming cert and key (idle keep-alive connections
 * kept for 2 minutes: the failed reloads' checks take a while). */
static void tls_conf(const char *cfg, const char *cert, const char *key)
{
	char text[2048];

	snprintf(text, sizeof(text), "tls-cert = %s\ntls-key = %s\nlog-level = info\n"
		 "header-timeout = 120\nconnection-timeout = 120\n", cert, key);
	h_write_file(cfg, text);
}

/* (d) SIGHUP takes up a new --tls-cert / --tls-key for new connections. */
static void test_cert_reload(void)
{
	const char *d = h_tmpdir();
	const char *newkey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
	char cfg[600], a_pem[600], a_key[600], b_pem[600], b_key[600], bad_pem[600];
	char url[128], subject[512];
	struct h_bridge b;
	CURL *keep;
	long fresh;

	for (int i = 0; i < 2; i++)
		sh("openssl req %s -keyout pb%c.key -out pb%c.csr -subj '/CN=pb-%c' && "
		   "printf 'subjectAltName=IP:127.0.0.1\\n' >pb%c.ext && "
		   "openssl x509 -req -in pb%c.csr -CA ca.pem -CAkey ca.key -set_serial %d -days 2 "
		   "-extfile pb%c.ext -out pb%c.pem", newkey, 'a' + i, 'a' + i, 'a' + i, 'a' + i,
		   'a' + i, 10 + i, 'a' + i, 'a' + i);
	snprintf(cfg, sizeof(cfg), "%s/tls.conf", d);
	snprintf(a_pem, sizeof(a_pem), "%s/pba.pem", d);
	snprintf(a_key, sizeof(a_key), "%s/pba.key", d);
	snprintf(b_pem, sizeof(b_pem), "%s/pbb.pem", d);
	snprintf(b_key, sizeof(b_key), "%s/pbb.key", d);
	snprintf(bad_pem, sizeof(bad_pem), "%s/bad.pem", d);
	h_write_file(bad_pem, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
		 "-----END CERTIFICATE-----\n");
	tls_conf(cfg, a_pem, a_key);
	if (h_bridge_start(&b, "--config", cfg, NULL))
		tap_bail("pollbridge --config with TLS did not start");
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/healthz", b.port);
	keep = curl_easy_init();
	if (!keep)
		tap_bail("out of memory");
	tap_is_int(cert_get(keep, url, subject, sizeof(subject), &fresh), 200,
		   "cert reload: /healthz over HTTPS with certificate A");
	tap_ok(strstr(subject, "pb-a") != NULL, "the first connection is shown pb-a (%s)", subject);

	/* A corrupt certificate, then a key of another certificate. */
	tls_conf(cfg, bad_pem, a_key);
	kill(b.proc->pid, SIGHUP);
	tap_is_int(h_wait_log(&b, "reload failed", 1, 5000), 1,
		   "SIGHUP with a corrupt certificate: 'reload failed' logged");
	tap_ok(strstr(new_subject(url, subject, sizeof(subject)), "pb-a") != NULL,
	       "a new connection is still shown pb-a (%s)", subject);
	tls_conf(cfg, a_pem, b_key);
	kill(b.proc->pid, SIGHUP);
	tap_is_int(h_wait_log(&b, "reload failed", 2, 5000), 2,
		   "SIGHUP with a key that does not match: 'reload failed' logged");
	tap_ok(strstr(new_subject(url, subject, sizeof(subject)), "pb-a") != NULL,
	       "a new connection is still shown pb-a (%s)", subject);

	/* Certificate B. */
	tls_conf(cfg, b_pem, b_key);
	kill(b.proc->pid, SIGHUP);
	tap_is_int(h_wait_log(&b, "reloaded configuration from ", 3, 5000), 3,
		   "SIGHUP with certificate B: reloaded");
	tap_is_int(h_wait_log(&b, "need a restart", 1, 0), 0, "no 'need a restart' logged");
	tap_ok(strstr(new_subject(url, subject, sizeof(subject)), "pb-b") != NULL,
	       "a new connection is shown pb-b (%s)", subject);
	tap_is_int(cert_get(keep, url, subject, sizeof(subject), &fresh), 200,
		   "the keep-alive connection from before the reload still answers");
	tap_is_int(fresh, 0, "...on the same connection (no new connect)");
	curl_easy_cleanup(keep);
	tap_is_int(h_stop(b.proc, SIGTERM, 10000), 0, "cert reload bridge: SIGTERM exits 0");
}

int main(void)
{
	h_init();
	if (!getenv("PB_BIN"))
		tap_bail("PB_BIN is not set (run through make check)");
	make_certs();
	test_https();
	test_wss();
	test_forwarded();
	test_cert_reload();
	return tap_done();
}
