/*
 * harness.h: what the end-to-end tests need to run real processes and talk
 * real HTTP to them: a private temp dir, free loopback ports, spawning and
 * stopping processes (all are killed when the test exits, however it exits),
 * starting pollbridge, the bundled echo upstream and websocketd, and a
 * libcurl-based HTTP client that parses JSON answers with jansson.
 *
 * Environment (set by `make check`, see Makefile.am):
 *   PB_BIN        path of the pollbridge binary
 *   PB_ECHO_BIN   path of pollbridge-echo
 *   PB_UPSTREAMS  directory of the websocketd scripts (tests/upstreams)
 *   PB_TEST_STORE "redis": every bridge uses a private redis-server that
 *                 h_init() starts; "memory" or unset: the memory store;
 *                 anything else is passed to --store as it is
 *   PB_BRIDGE_WRAPPER optional command line every bridge runs under
 *                 (e.g. "valgrind -q --error-exitcode=97"), split on spaces
 */
#ifndef PB_HARNESS_H
#define PB_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct h_proc {
	pid_t pid;
	char log_path[512];     /* stdout and stderr of the process */
	int exited;             /* set once reaped */
	int status;             /* waitpid status, once exited */
};

/* Initialise the harness: temp dir, atexit/signal cleanup, curl global
 * init, raise RLIMIT_NOFILE. Call first in main(). */
void h_init(void);

/* The test's private temp dir (removed at exit unless PB_KEEP_TMP is set). */
const char *h_tmpdir(void);

/* A loopback TCP port that was free a moment ago. */
int h_free_port(void);

/* Start argv[0] with argv (NULL-terminated); its stdout+stderr go to a log
 * file. If ready_prefix is not NULL, wait up to timeout_ms for a line of the
 * log that contains it, and copy the rest of that line (after the prefix)
 * into rest. NULL if it could not start or did not get ready (the process is
 * then killed). The harness owns the struct; it stays valid until exit. */
struct h_proc *h_spawn(char *const argv[], const char *ready_prefix, int timeout_ms,
		       char *rest, size_t restlen);

/* Send sig and wait up to timeout_ms for the process to exit (SIGKILL
 * after that). Returns the exit code (0-255), or 128+signal if it died of a
 * signal, or -1 if it had to be killed after the timeout. */
int h_stop(struct h_proc *p, int sig, int timeout_ms);

/* Wait up to timeout_ms for p to exit by itself; same return as h_stop,
 * or -2 if it is still running. */
int h_wait_exit(struct h_proc *p, int timeout_ms);

/* 1 if the process is still running. */
int h_alive(struct h_proc *p);

/* Read a whole file into a malloc'd NUL-terminated string (NULL if absent). */
char *h_read_file(const char *path);

/* Replace the file at path with text, atomically (a temp file renamed over
 * it, as an editor or a config tool does); bails out on failure. */
void h_write_file(const char *path, const char *text);

/* Occurrences of needle in the file at path (0 if it is absent). */
int h_count_in_file(const char *path, const char *needle);

/* Number of threads of pid (from /proc/PID/status), -1 on error. */
int h_thread_count(pid_t pid);

/* Resident set size of pid in KiB (VmRSS), -1 on error. */
long h_rss_kib(pid_t pid);

/* --lean-long-polls' memory checks for one kind of waiting poll: held()
 * starts a bridge with route and --lean-long-polls lean, parks its polls,
 * stops it, and returns the RSS per waiting poll (KiB, h_rss_per). Checked:
 * under 10 KiB with "yes", and "no" above 3 times that. In a sanitizer
 * build or under PB_BRIDGE_WRAPPER (where RSS says nothing) only the
 * "yes" run is made, for the checks held() makes itself. */
void h_check_lean_memory(double (*held)(const char *route, const char *lean), const char *route,
			 const char *what);

/* The RSS per poll (KiB) of n polls that took the process from before to
 * during (KiB), reported as a diagnostic naming lean and what; -1 if
 * either is unknown. */
double h_rss_per(long before, long during, int n, const char *lean, const char *what);

/* Sleep ms milliseconds. */
void h_sleep_ms(int ms);

/* Monotonic time in milliseconds. */
int64_t h_now_ms(void);

/* ---- servers ---------------------------------------------------------- */

/* A running pollbridge. */
struct h_bridge {
	struct h_proc *proc;
	int port;
	char base[64];          /* "http://127.0.0.1:PORT" */
};

/* Start pollbridge listening on 127.0.0.1:0 (the ready line tells the port)
 * with PB_TEST_STORE's store, plus the NULL-terminated extra arguments.
 * 0, or -1 if it did not print its ready line within 10 s. */
int h_bridge_start(struct h_bridge *b, const char *arg, ...);

/* The --store value every bridge gets (NULL: the default memory store). */
const char *h_store(void);

/* 1 if the bridges share a store (Redis): drain and instance failure then
 * hand sessions over instead of closing them. */
int h_store_shared(void);

/* Start a redis-server on a free loopback port (no persistence unless the
 * NULL-terminated extra arguments say so, e.g. "--appendonly", "yes"),
 * with its files in the temp dir. Returns the process and sets *port, or
 * NULL. */
struct h_proc *h_redis_start(int *port, const char *arg, ...);

/* Start a redis-server on the given loopback port with its files in dir
 * (no persistence unless the NULL-terminated extra arguments say so); it
 * can be started again on the same port and dir. NULL on failure. */
struct h_proc *h_redis_at(int port, const char *dir, char *const *extra);

/* Run `redis-cli -h 127.0.0.1 -p port ARGS` (args as one shell string);
 * its output (stdout and stderr, cut to outlen - 1) in out. 0 if it ran. */
int h_redis_cli(int port, const char *args, char *out, size_t outlen);

/* Start pollbridge-echo on a free port; extra arguments NULL-terminated.
 * Returns the process and sets *port, or NULL. */
struct h_proc *h_echo_start(int *port, const char *arg, ...);

/* Start websocketd on a free loopback port running the script
 * PB_UPSTREAMS/<script> with the NULL-terminated extra arguments for the
 * script; waits until the port accepts connections. NULL on failure. */
struct h_proc *h_websocketd_start(int *port, const char *script, ...);

/* Start tests/upstreams/node/ws_upstream.js (an npm `ws` server) in mode
 * with the NULL-terminated extra arguments; sets *port. NULL if node or
 * the ws package (contrib/deps.sh test installs it) is missing, or it did
 * not start: callers skip their checks then (h_ws_available() tells). */
struct h_proc *h_ws_start(int *port, const char *mode, ...);

/* 1 if node and the npm ws package are installed for h_ws_start(). */
int h_ws_available(void);

/* A listening socket that never accepts (so a WebSocket handshake to it
 * never completes). Returns the fd and sets *port, or -1. */
int h_blackhole_listen(int *port);

/* A socket listening on 127.0.0.1:*port (0: a free port, then stored in
 * *port), with SO_REUSEADDR so that the connections it leaves in TIME_WAIT
 * do not keep a later server off the port. Nothing accepts on it until
 * the caller does. The fd, or -1. */
int h_listen(int *port);

/* Fork a fake server: the child ignores SIGPIPE, dies with this process
 * and runs serve(lfd, arg), exiting 0 if that returns; the parent's copy
 * of lfd is closed. Returns the child's pid (stop it with kill+waitpid);
 * bails out if fork fails. */
pid_t h_fork_server(int lfd, void (*serve)(int lfd, void *arg), void *arg);

/* ---- HTTP ------------------------------------------------------------- */

struct h_resp {
	long status;            /* 0 if the request failed at transport level */
	char *body;             /* malloc'd, NUL-terminated */
	size_t len;
	json_t *json;           /* parsed body if it is JSON, else NULL */
	char content_type[128];
	char location[256];
	char retry_after[32];
	char allow[128];
	char cache_control[128];
	char connection[32];    /* the Connection header */
	double seconds;         /* total time of the request */
};

/* Perform one request with libcurl. content_type may be NULL (no body
 * header); body may be NULL with len 0; headers is a NULL-terminated list of
 * "Name: value" lines or NULL. A zero-length body is still sent as a body
 * (Content-Length: 0) for POST. Returns 0 if an HTTP answer arrived
 * (whatever its status), -1 otherwise. r must be freed with h_resp_free. */
int h_http(struct h_resp *r, const char *method, const char *url, const char *content_type,
	   const void *body, size_t len, const char *const *headers);

/* Free what a response holds and zero it. */
void h_resp_free(struct h_resp *r);

/* An integer member of a JSON answer, or -1. */
long long h_json_int(const struct h_resp *r, const char *key);

/* The error code string of an error JSON answer, or "" if none. */
const char *h_err(const struct h_resp *r);

/* ---- raw HTTP --------------------------------------------------------- */
/* Plain sockets, for the tests that check what libcurl would hide: framing,
 * connection handling, slow or partial requests. */

#define H_RAW_MS 5000           /* the usual wait for a raw answer */

/* What h_raw_read() got. */
enum { H_RAW_TIMEOUT = -1, H_RAW_CLOSED = 0, H_RAW_ANSWER = 1 };

/* A TCP connection to 127.0.0.1:port from the local address src (NULL:
 * the default, 127.0.0.1; a bind failure is reported as a diagnostic).
 * The fd, or -1 (connect refused included). */
int h_raw_connect(int port, const char *src);

/* h_raw_connect() with the SOL_SOCKET option opt set to val before the
 * connect (opt 0: none). */
int h_raw_connect_opt(int port, const char *src, int opt, int val);

/* Write all n bytes of buf to fd (no SIGPIPE). 0, or -1 if the peer is
 * gone. */
int h_raw_write(int fd, const void *buf, size_t n);

/* Read one HTTP answer from fd within timeout_ms into r: it ends after
 * Content-Length bytes of body, or without one at EOF. Fills status, body,
 * json (a body starting with '{'), content_type, retry_after, connection
 * and seconds; r is zeroed first and must be freed with h_resp_free
 * whatever the result. H_RAW_ANSWER, H_RAW_CLOSED if the connection ended
 * (EOF or reset) before a whole answer, or H_RAW_TIMEOUT. */
int h_raw_read(int fd, int timeout_ms, struct h_resp *r);

/* 1 if fd is at EOF or reset within timeout_ms (nothing more to read),
 * 0 if it is still open or has bytes to read. */
int h_raw_closed(int fd, int timeout_ms);

/* Send the len bytes of req on a fresh connection from src (NULL:
 * 127.0.0.1) and read the answer into r (H_RAW_MS at most; r must be
 * freed); the connection is then closed. Returns the status, 0 if no
 * answer came. */
long h_raw_request(int port, const char *src, const char *req, size_t len, struct h_resp *r);

/* ---- API shortcuts (all against b->base) ------------------------------ */

/* POST /v1/sessions {"route":route}; on 201 copies the id into id
 * (at least 64 bytes). Returns the status. r may be NULL. */
long h_create(struct h_bridge *b, const char *route, char *id, struct h_resp *r);

/* GET /v1/sessions/<id>/messages?<query> (query may be NULL or "").
 * Returns the status; r is filled and must be freed. */
long h_poll(struct h_bridge *b, const char *id, const char *query, struct h_resp *r);

/* POST text/plain to /v1/sessions/<id>/messages. Returns the status. */
long h_send_text(struct h_bridge *b, const char *id, const char *text, struct h_resp *r);

/* DELETE /v1/sessions/<id>. Returns the status. */
long h_delete(struct h_bridge *b, const char *id);

/* Poll (long polls of up to 1 s) until at least n messages with seq > after
 * have been seen in total or timeout_ms passes; appends each message object
 * (a new reference) to out (a JSON array). Does not acknowledge anything past
 * after. Returns the number collected. */
size_t h_collect(struct h_bridge *b, const char *id, uint64_t after, size_t n, int timeout_ms,
		 json_t *out);

/* The value of the /metrics sample line that starts with name (exact name
 * and labels, as in pollbridge_http_responses_total{code="431"}), or
 * -1 if there is none or /metrics did not answer 200. */
double h_metric(struct h_bridge *b, const char *name);

/* Wait up to ms for at least n occurrences of needle in the bridge's log;
 * returns how many there are. */
int h_wait_log(struct h_bridge *b, const char *needle, int n, int ms);

/* 1 if the bridge answers /healthz with 200 and can still create a session
 * on route and echo one message through it: the "still serving" check used
 * after every bad input. */
int h_still_serving(struct h_bridge *b, const char *route);

#endif
