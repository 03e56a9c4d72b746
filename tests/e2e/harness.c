/*
 * harness.c: the end-to-end test harness (see harness.h). It owns the test's
 * private temp dir and the list of processes it spawned: whatever way the
 * test ends (exit, SIGINT/SIGTERM, the 300 s SIGALRM watchdog), every
 * process still running gets SIGKILL and the temp dir is removed (unless
 * PB_KEEP_TMP is set). The signal path uses only system calls, so it is
 * safe wherever the signal lands. HTTP goes through one libcurl easy handle
 * per request; JSON bodies are parsed with jansson. Problems are reported as
 * TAP "# " diagnostics, and a broken harness (no temp dir, no ports) bails
 * out of the whole test.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tap.h"
#include "e2e/harness.h"

#define H_MAX_PROCS	256
#define H_MAX_ARGS	64
#define H_WATCHDOG_S	300
#define H_POLL_MS	10
#define H_START_MS	10000	/* ready line / port wait for the servers */
#define H_HTTP_TIMEOUT_S 40L
#define H_MAX_FDS	(1u << 20)	/* never hand children an absurd fd limit */
#define H_LOG_TAIL	20	/* log lines shown when a process fails to start */

/* The harness's own state: its temp dir and every process it started. The
 * signal handler reads procs[0 .. nprocs-1]; an entry is stored before
 * nprocs grows, so the handler never sees a half-made one. */
static struct {
	int inited;
	pid_t owner;		/* the test process (not a forked child) */
	int keep_tmp;
	char tmpdir[256];	/* short enough for the log paths below it */
	struct h_proc *procs[H_MAX_PROCS];
	volatile sig_atomic_t nprocs;
	unsigned int spawned;	/* for log file names */
	int redis_port;		/* PB_TEST_STORE=redis: the private Redis */
	char store_url[300];	/* --store for every bridge, "" for the default */
} h;

static int collect_args(char **argv, int *argc, va_list ap);

/* ---- cleanup -------------------------------------------------------- */

/* SIGKILL every spawned process not yet reaped (async-signal-safe). */
static void kill_all(void)
{
	sig_atomic_t i;

	for (i = 0; i < h.nprocs; i++)
		if (h.procs[i] && !h.procs[i]->exited && h.procs[i]->pid > 0)
			kill(h.procs[i]->pid, SIGKILL);
}

/* Remove everything below the directory open at dfd, using only system
 * calls (it runs in the signal handler too); depth-limited. */
static void rm_tree_at(int dfd, int depth)
{
	char buf[4096];
	struct dirent64 *d;
	ssize_t n, off;
	int pass, found, sub;

	for (pass = 0; pass < 16; pass++) {
		found = 0;
		lseek(dfd, 0, SEEK_SET);
		while ((n = getdents64(dfd, buf, sizeof(buf))) > 0) {
			for (off = 0; off < n; off += d->d_reclen) {
				d = (struct dirent64 *)(void *)(buf + off);
				if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
					continue;
				found = 1;
				if (!unlinkat(dfd, d->d_name, 0) || errno != EISDIR || depth >= 8)
					continue;
				sub = openat(dfd, d->d_name,
					     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub >= 0) {
					rm_tree_at(sub, depth + 1);
					close(sub);
				}
				unlinkat(dfd, d->d_name, AT_REMOVEDIR);
			}
		}
		if (!found)
			break;
	}
}

/* Remove the temp dir and its contents (async-signal-safe). */
static void rm_tmpdir(void)
{
	int dfd;

	if (!h.tmpdir[0] || h.keep_tmp)
		return;
	dfd = open(h.tmpdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd >= 0) {
		rm_tree_at(dfd, 0);
		close(dfd);
	}
	rmdir(h.tmpdir);
}

/* Write a string to fd 1 with no stdio (async-signal-safe). */
static void write_str(const char *s)
{
	size_t len = strlen(s);
	ssize_t n;

	while (len) {
		n = write(STDOUT_FILENO, s, len);
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* SIGINT/SIGTERM/SIGALRM: kill the children, remove the temp dir, then die
 * of the same signal so the test counts as failed. */
static void on_fatal_signal(int sig)
{
	if (getpid() == h.owner) {
		if (sig == SIGALRM)
			write_str("Bail out! harness watchdog: the test ran for too long\n");
		kill_all();
		rm_tmpdir();
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* atexit: kill and reap the children, remove the temp dir, free the list. */
static void cleanup_at_exit(void)
{
	sig_atomic_t i, n = h.nprocs;

	if (getpid() != h.owner)
		return;
	alarm(0);
	kill_all();
	for (i = 0; i < n; i++)
		if (h.procs[i] && !h.procs[i]->exited)
			waitpid(h.procs[i]->pid, NULL, 0);
	if (h.keep_tmp)
		tap_diag("kept temp dir %s (PB_KEEP_TMP)", h.tmpdir);
	rm_tmpdir();
	h.nprocs = 0;
	for (i = 0; i < n; i++)
		free(h.procs[i]);
	curl_global_cleanup();
}

void h_init(void)
{
	const char *base = getenv("TMPDIR");
	char path[PATH_MAX], real[PATH_MAX];
	struct sigaction sa;
	struct rlimit rl;
	const char *store;

	if (h.inited)
		return;
	h.owner = getpid();
	h.keep_tmp = getenv("PB_KEEP_TMP") != NULL;
	if (!base || !*base)
		base = "/tmp";
	if (snprintf(path, sizeof(path), "%s/pollbridge-e2e.XXXXXX", base) >= (int)sizeof(path))
		tap_bail("TMPDIR too long");
	if (!mkdtemp(path))
		tap_bail("cannot make a temp dir under %s: %s", base, strerror(errno));
	if (!realpath(path, real))
		snprintf(real, sizeof(real), "%s", path);
	if (snprintf(h.tmpdir, sizeof(h.tmpdir), "%s", real) >= (int)sizeof(h.tmpdir)) {
		rmdir(path);
		tap_bail("temp dir path too long: %s", real);
	}
	if (atexit(cleanup_at_exit))
		tap_bail("atexit failed");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	/* a test writing to a socket the server closed gets EPIPE, not death */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	alarm(H_WATCHDOG_S);

	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > H_MAX_FDS)
			rl.rlim_cur = H_MAX_FDS;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			tap_diag("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT))
		tap_bail("curl_global_init failed");
	h.inited = 1;
	store = getenv("PB_TEST_STORE");
	if (store && strcmp(store, "redis") == 0) {
		/* One private Redis for the whole test program. */
		if (!h_redis_start(&h.redis_port, NULL))
			tap_bail("cannot start redis-server for PB_TEST_STORE=redis");
		snprintf(h.store_url, sizeof(h.store_url), "redis://127.0.0.1:%d", h.redis_port);
	} else if (store && *store && strcmp(store, "memory") != 0) {
		snprintf(h.store_url, sizeof(h.store_url), "%s", store);
	}
}

const char *h_store(void)
{
	return h.store_url[0] ? h.store_url : NULL;
}

int h_store_shared(void)
{
	return strncmp(h.store_url, "redis", 5) == 0;     /* redis://, redis+sentinel:// */
}

int h_redis_cli(int port, const char *args, char *out, size_t outlen)
{
	char cmd[512];
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd), "redis-cli -h 127.0.0.1 -p %d %s 2>&1", port, args);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	pclose(f);
	return 0;
}

struct h_proc *h_redis_at(int port, const char *dir, char *const *extra)
{
	char *argv[H_MAX_ARGS], portbuf[16];
	int argc = 0;

	snprintf(portbuf, sizeof(portbuf), "%d", port);
	argv[argc++] = "redis-server";
	argv[argc++] = "--port";
	argv[argc++] = portbuf;
	argv[argc++] = "--bind";
	argv[argc++] = "127.0.0.1";
	argv[argc++] = "--save";
	argv[argc++] = "";
	argv[argc++] = "--dir";
	argv[argc++] = (char *)dir;
	argv[argc++] = "--daemonize";
	argv[argc++] = "no";
	for (; extra && *extra && argc < H_MAX_ARGS - 1; extra++)
		argv[argc++] = *extra;
	argv[argc] = NULL;
	return h_spawn(argv, "Ready to accept connections", H_START_MS, NULL, 0);
}

struct h_proc *h_redis_start(int *port, const char *arg, ...)
{
	char *extra[H_MAX_ARGS];
	struct h_proc *p = NULL;
	va_list ap;
	int n = 0;

	if (arg) {
		extra[n++] = (char *)arg;
		va_start(ap, arg);
		collect_args(extra, &n, ap);
		va_end(ap);
	}
	extra[n] = NULL;
	for (int attempt = 0; attempt < 3 && !p; attempt++) {
		*port = h_free_port();
		p = h_redis_at(*port, h.tmpdir, extra);
	}
	return p;
}

const char *h_tmpdir(void)
{
	return h.tmpdir;
}

/* ---- small utilities ------------------------------------------------- */

void h_sleep_ms(int ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int64_t h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *h_read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *t;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			t = realloc(buf, cap);
			if (!t) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = t;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	if (buf && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

void h_write_file(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) || rename(tmp, path))
		tap_bail("cannot write %s", path);
}

int h_count_in_file(const char *path, const char *needle)
{
	char *s = h_read_file(path), *p;
	int n = 0;

	for (p = s; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(s);
	return n;
}

/* The number after "key:" in /proc/PID/status, or -1. */
static long proc_status_field(pid_t pid, const char *key)
{
	char path[64], *text, *p;
	size_t klen = strlen(key);
	long v = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	text = h_read_file(path);
	if (!text)
		return -1;
	for (p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, key, klen) && p[klen] == ':') {
			v = strtol(p + klen + 1, NULL, 10);
			break;
		}
	}
	free(text);
	return v;
}

int h_thread_count(pid_t pid)
{
	return (int)proc_status_field(pid, "Threads");
}

long h_rss_kib(pid_t pid)
{
	return proc_status_field(pid, "VmRSS");
}

double h_rss_per(long before, long during, int n, const char *lean, const char *what)
{
	if (before <= 0 || during <= 0 || n <= 0)
		return -1;
	tap_diag("memory (%s): RSS %ld KiB before, %ld KiB with %d %s: %.2f KiB each "
		 "(sessions and upstream links included)", lean, before, during, n, what,
		 (double)(during - before) / n);
	return (double)(during - before) / n;
}

void h_check_lean_memory(double (*held)(const char *route, const char *lean), const char *route,
			 const char *what)
{
	double lean = held(route, "yes"), suspended;

	if ((getenv("PB_SANITIZERS") && strcmp(getenv("PB_SANITIZERS"), "yes") == 0) ||
	    (getenv("PB_BRIDGE_WRAPPER") && *getenv("PB_BRIDGE_WRAPPER"))) {
		tap_diag("memory: the bounds are not checked in a sanitizer build or under a wrapper");
		return;
	}
	suspended = held(route, "no");
	tap_ok(lean > 0 && lean < 10.0, "memory: under 10 KiB per %s (libmicrohttpd's pool "
	       "alone is 20)", what);
	tap_ok(suspended > 3 * lean, "memory: --lean-long-polls no keeps them in libmicrohttpd "
	       "(%.1f KiB each)", suspended);
}

/* A TCP socket bound to 127.0.0.1:0 (CLOEXEC); sets *port. -1 on error. */
static int bind_loopback(int *port)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl)) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

int h_free_port(void)
{
	int port, fd = bind_loopback(&port);

	if (fd < 0)
		tap_bail("cannot bind a loopback port: %s", strerror(errno));
	close(fd);
	return port;
}

int h_blackhole_listen(int *port)
{
	int fd = bind_loopback(port);

	if (fd < 0)
		return -1;
	/* listening but never accepting: connects complete, handshakes never do */
	if (listen(fd, 16)) {
		close(fd);
		return -1;
	}
	return fd;
}

int h_listen(int *port)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)*port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl)) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

pid_t h_fork_server(int lfd, void (*serve)(int lfd, void *arg), void *arg)
{
	pid_t parent = getpid(), pid;

	fflush(stdout);		/* or the child's exit would print it again */
	pid = fork();
	if (pid < 0)
		tap_bail("fork failed: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGPIPE, SIG_IGN);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)	/* the parent died before prctl */
			_exit(0);
		serve(lfd, arg);
		_exit(0);
	}
	close(lfd);
	return pid;
}

/* 1 if something accepts TCP connections on 127.0.0.1:port. */
static int port_accepts(int port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

/* ---- processes ------------------------------------------------------- */

/* h_stop's return value for a waitpid status. */
static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* Reap p if it has exited (no waiting). 1 if it has. */
static int reap(struct h_proc *p)
{
	pid_t r;
	int status;

	if (p->exited)
		return 1;
	r = waitpid(p->pid, &status, WNOHANG);
	if (r == p->pid || (r < 0 && errno == ECHILD)) {
		p->exited = 1;
		p->status = r == p->pid ? status : 0;
	}
	return p->exited;
}

/* Print the last lines of p's log as TAP diagnostics. */
static void log_tail(const struct h_proc *p)
{
	char *text = h_read_file(p->log_path), *line, *eol;
	size_t lines = 0, skip;

	if (!text)
		return;
	for (line = text; (eol = strchr(line, '\n')); line = eol + 1)
		lines++;
	skip = lines > H_LOG_TAIL ? lines - H_LOG_TAIL : 0;
	tap_diag("  last lines of %s:", p->log_path);
	for (line = text; (eol = strchr(line, '\n')); line = eol + 1) {
		*eol = '\0';
		if (skip)
			skip--;
		else
			tap_diag("    %s", line);
	}
	if (*line)
		tap_diag("    %s", line);
	free(text);
}

/* Look for a complete log line containing prefix; copy what follows it on
 * that line into rest. 1 if found. */
static int find_ready_line(const char *path, const char *prefix, char *rest, size_t restlen)
{
	char *text = h_read_file(path), *at, *eol, *bol;
	size_t n;
	int found = 0;

	if (!text)
		return 0;
	for (bol = text; (eol = strchr(bol, '\n')); bol = eol + 1) {
		*eol = '\0';
		at = strstr(bol, prefix);
		if (!at)
			continue;
		at += strlen(prefix);
		n = strlen(at);
		if (n && at[n - 1] == '\r')
			n--;
		if (rest && restlen) {
			if (n >= restlen)
				n = restlen - 1;
			memcpy(rest, at, n);
			rest[n] = '\0';
		}
		found = 1;
		break;
	}
	free(text);
	return found;
}

/* The base name of a path, for log file names. */
static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* In the forked child: redirect output to the log and exec argv; reports
 * errno on errfd if the exec fails. Never returns. */
static void child_exec(char *const argv[], const char *log_path, int errfd)
{
	struct sigaction sa;
	sigset_t none;
	int fd, e;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0 && fd != STDIN_FILENO) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		goto fail;
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	execvp(argv[0], argv);
fail:
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

struct h_proc *h_spawn(char *const argv[], const char *ready_prefix, int timeout_ms,
		       char *rest, size_t restlen)
{
	struct h_proc *p;
	int pfd[2], e = 0, fd;
	int64_t deadline;
	ssize_t n;

	if (!h.inited)
		tap_bail("h_spawn before h_init");
	if (h.nprocs >= H_MAX_PROCS) {
		tap_diag("h_spawn: more than %d processes", H_MAX_PROCS);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (snprintf(p->log_path, sizeof(p->log_path), "%s/%02u-%s.log", h.tmpdir, ++h.spawned,
		     base_name(argv[0])) >= (int)sizeof(p->log_path)) {
		free(p);
		return NULL;
	}
	/* create it now, so polling it never races the child's open */
	fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	if (pipe2(pfd, O_CLOEXEC)) {
		free(p);
		return NULL;
	}
	fflush(NULL);	/* nothing buffered may be written twice */
	p->pid = fork();
	if (p->pid < 0) {
		tap_diag("fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		free(p);
		return NULL;
	}
	if (p->pid == 0)
		child_exec(argv, p->log_path, pfd[1]);
	h.procs[h.nprocs] = p;
	h.nprocs = h.nprocs + 1;

	/* the pipe closes on exec; data on it is the exec's errno */
	close(pfd[1]);
	do
		n = read(pfd[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	if (n > 0) {
		tap_diag("cannot run %s: %s", argv[0], strerror(e));
		waitpid(p->pid, &p->status, 0);
		p->exited = 1;
		return NULL;
	}
	if (!ready_prefix)
		return p;

	deadline = h_now_ms() + timeout_ms;
	for (;;) {
		if (find_ready_line(p->log_path, ready_prefix, rest, restlen))
			return p;
		if (reap(p)) {
			tap_diag("%s exited (status %d) before printing \"%s\"", argv[0],
				 exit_code(p->status), ready_prefix);
			break;
		}
		if (h_now_ms() >= deadline) {
			tap_diag("%s did not print \"%s\" within %d ms", argv[0], ready_prefix,
				 timeout_ms);
			h_stop(p, SIGKILL, 1000);
			break;
		}
		h_sleep_ms(H_POLL_MS);
	}
	log_tail(p);
	return NULL;
}

int h_wait_exit(struct h_proc *p, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	if (!p)
		return -1;
	while (!reap(p)) {
		if (h_now_ms() >= deadline)
			return -2;
		h_sleep_ms(H_POLL_MS);
	}
	return exit_code(p->status);
}

int h_stop(struct h_proc *p, int sig, int timeout_ms)
{
	int r;

	if (!p)
		return -1;
	if (reap(p))
		return exit_code(p->status);
	kill(p->pid, sig);
	r = h_wait_exit(p, timeout_ms);
	if (r != -2)
		return r;
	kill(p->pid, SIGKILL);
	if (waitpid(p->pid, &p->status, 0) == p->pid)
		p->exited = 1;
	return -1;
}

int h_alive(struct h_proc *p)
{
	return p && !reap(p);
}

/* ---- servers --------------------------------------------------------- */

/* getenv(name), or the fallback for running a test by hand from the top
 * build dir. */
static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v && *v ? v : fallback;
}

/* Append the NULL-terminated va_list strings to argv from *argc on; -1 if
 * there are too many. */
static int collect_args(char **argv, int *argc, va_list ap)
{
	const char *s;

	while ((s = va_arg(ap, const char *))) {
		if (*argc >= H_MAX_ARGS - 1)
			return -1;
		argv[(*argc)++] = (char *)s;
	}
	argv[*argc] = NULL;
	return 0;
}

/* The port in a ready line's rest ("ADDR:PORT ..."): digits after the
 * "127.0.0.1:" if present, else after the last colon. -1 if none. */
static int parse_ready_port(const char *rest)
{
	const char *s = strstr(rest, "127.0.0.1:");
	char *end;
	long v;

	if (s)
		s += strlen("127.0.0.1:");
	else if ((s = strrchr(rest, ':')))
		s++;
	else
		return -1;
	v = strtol(s, &end, 10);
	if (end == s || v <= 0 || v > 65535)
		return -1;
	return (int)v;
}

int h_bridge_start(struct h_bridge *b, const char *arg, ...)
{
	char *argv[H_MAX_ARGS], rest[256];
	static char wrapbuf[1024];
	const char *store = h_store();
	const char *wrapper = getenv("PB_BRIDGE_WRAPPER");
	va_list ap;
	int argc = 0, r;

	memset(b, 0, sizeof(*b));
	/* PB_BRIDGE_WRAPPER (e.g. "valgrind -q ...") runs the bridge under a
	 * tool; its words are split on spaces. */
	if (wrapper && *wrapper) {
		snprintf(wrapbuf, sizeof(wrapbuf), "%s", wrapper);
		for (char *w = strtok(wrapbuf, " "); w && argc < H_MAX_ARGS / 2;
		     w = strtok(NULL, " "))
			argv[argc++] = w;
	}
	argv[argc++] = (char *)env_or("PB_BIN", "src/pollbridge");
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	if (store && *store) {
		argv[argc++] = "--store";
		argv[argc++] = (char *)store;
	}
	if (arg) {
		argv[argc++] = (char *)arg;
		va_start(ap, arg);
		r = collect_args(argv, &argc, ap);
		va_end(ap);
		if (r) {
			tap_diag("h_bridge_start: too many arguments");
			return -1;
		}
	}
	argv[argc] = NULL;
	b->proc = h_spawn(argv, "listening on ", wrapper && *wrapper ? 4 * H_START_MS : H_START_MS,
			  rest, sizeof(rest));
	if (!b->proc)
		return -1;
	b->port = parse_ready_port(rest);
	if (b->port < 0) {
		tap_diag("pollbridge ready line without a port: \"listening on %s\"", rest);
		h_stop(b->proc, SIGKILL, 1000);
		b->proc = NULL;
		return -1;
	}
	snprintf(b->base, sizeof(b->base), "http://127.0.0.1:%d", b->port);
	return 0;
}

struct h_proc *h_echo_start(int *port, const char *arg, ...)
{
	char *argv[H_MAX_ARGS], rest[256];
	struct h_proc *p;
	va_list ap;
	int argc = 0, r;

	argv[argc++] = (char *)env_or("PB_ECHO_BIN", "src/pollbridge-echo");
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	if (arg) {
		argv[argc++] = (char *)arg;
		va_start(ap, arg);
		r = collect_args(argv, &argc, ap);
		va_end(ap);
		if (r) {
			tap_diag("h_echo_start: too many arguments");
			return NULL;
		}
	}
	argv[argc] = NULL;
	p = h_spawn(argv, "listening on ", H_START_MS, rest, sizeof(rest));
	if (!p)
		return NULL;
	*port = parse_ready_port(rest);
	if (*port < 0) {
		tap_diag("pollbridge-echo ready line without a port: \"listening on %s\"", rest);
		h_stop(p, SIGKILL, 1000);
		return NULL;
	}
	return p;
}

struct h_proc *h_websocketd_start(int *port, const char *script, ...)
{
	char *argv[H_MAX_ARGS], portarg[32], path[PATH_MAX];
	struct h_proc *p;
	int64_t deadline;
	va_list ap;
	int argc, r, attempt;

	snprintf(path, sizeof(path), "%s/%s", env_or("PB_UPSTREAMS", "tests/upstreams"), script);
	if (access(path, X_OK)) {
		tap_diag("websocketd script %s: %s", path, strerror(errno));
		return NULL;
	}
	/* the free port may be taken before websocketd binds it: try again */
	for (attempt = 0; attempt < 3; attempt++) {
		*port = h_free_port();
		snprintf(portarg, sizeof(portarg), "--port=%d", *port);
		argc = 0;
		argv[argc++] = "websocketd";
		argv[argc++] = "--address=127.0.0.1";
		argv[argc++] = portarg;
		argv[argc++] = path;
		va_start(ap, script);
		r = collect_args(argv, &argc, ap);
		va_end(ap);
		if (r) {
			tap_diag("h_websocketd_start: too many arguments");
			return NULL;
		}
		p = h_spawn(argv, NULL, 0, NULL, 0);
		if (!p)
			return NULL;
		deadline = h_now_ms() + H_START_MS;
		while (h_alive(p) && h_now_ms() < deadline) {
			if (port_accepts(*port))
				return p;
			h_sleep_ms(H_POLL_MS);
		}
		if (h_alive(p)) {
			tap_diag("websocketd did not accept on port %d within %d ms", *port,
				 H_START_MS);
			h_stop(p, SIGKILL, 1000);
			log_tail(p);
			return NULL;
		}
		tap_diag("websocketd on port %d exited (status %d)", *port, exit_code(p->status));
		log_tail(p);
	}
	return NULL;
}

/* The npm ws upstream script, and whether its dependency is installed. */
static int ws_script(char *path, size_t len)
{
	char mod[PATH_MAX];

	snprintf(path, len, "%s/node/ws_upstream.js", env_or("PB_UPSTREAMS", "tests/upstreams"));
	snprintf(mod, sizeof(mod), "%s/node/node_modules/ws/package.json",
		 env_or("PB_UPSTREAMS", "tests/upstreams"));
	return access(path, R_OK) == 0 && access(mod, R_OK) == 0;
}

int h_ws_available(void)
{
	char path[PATH_MAX];

	return ws_script(path, sizeof(path)) && system("node --version >/dev/null 2>&1") == 0;
}

struct h_proc *h_ws_start(int *port, const char *mode, ...)
{
	char *argv[H_MAX_ARGS], path[PATH_MAX], rest[32];
	struct h_proc *p;
	va_list ap;
	int argc = 0, r;

	if (!ws_script(path, sizeof(path))) {
		tap_diag("npm ws upstream missing (%s; run contrib/deps.sh test)", path);
		return NULL;
	}
	argv[argc++] = "node";
	argv[argc++] = path;
	argv[argc++] = (char *)mode;
	va_start(ap, mode);
	r = collect_args(argv, &argc, ap);
	va_end(ap);
	if (r) {
		tap_diag("h_ws_start: too many arguments");
		return NULL;
	}
	p = h_spawn(argv, "listening on ", H_START_MS, rest, sizeof(rest));
	if (!p)
		return NULL;
	*port = atoi(rest);
	return p;
}

/* ---- HTTP ------------------------------------------------------------ */

/* What a transfer accumulates. */
struct h_xfer {
	struct h_resp *r;
	size_t cap;
	int oom;
};

/* libcurl write callback: append to the body (always NUL-terminated). */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct h_xfer *x = userp;
	size_t n = size * nmemb, cap;
	char *t;

	if (x->r->len + n + 1 > x->cap) {
		cap = x->cap < 4096 ? 4096 : x->cap;
		while (cap < x->r->len + n + 1)
			cap *= 2;
		t = realloc(x->r->body, cap);
		if (!t) {
			x->oom = 1;
			return 0;
		}
		x->r->body = t;
		x->cap = cap;
	}
	memcpy(x->r->body + x->r->len, data, n);
	x->r->len += n;
	x->r->body[x->r->len] = '\0';
	return n;
}

/* Copy a header value (trimmed) into dst if the line is "name: value". */
static void take_header(const char *line, size_t len, const char *name, char *dst,
			size_t dstlen)
{
	size_t nl = strlen(name);

	if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl))
		return;
	line += nl + 1;
	len -= nl + 1;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' ' ||
		       line[len - 1] == '\t'))
		len--;
	if (len >= dstlen)
		len = dstlen - 1;
	memcpy(dst, line, len);
	dst[len] = '\0';
}

/* libcurl header callback: capture the headers h_resp names. A new status
 * line (after a 100 Continue) starts over. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *userp)
{
	struct h_xfer *x = userp;
	struct h_resp *r = x->r;
	size_t n = size * nmemb;

	if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
		r->content_type[0] = r->location[0] = r->retry_after[0] = '\0';
		r->allow[0] = r->cache_control[0] = r->connection[0] = '\0';
		return n;
	}
	take_header(line, n, "Content-Type", r->content_type, sizeof(r->content_type));
	take_header(line, n, "Location", r->location, sizeof(r->location));
	take_header(line, n, "Retry-After", r->retry_after, sizeof(r->retry_after));
	take_header(line, n, "Allow", r->allow, sizeof(r->allow));
	take_header(line, n, "Cache-Control", r->cache_control, sizeof(r->cache_control));
	take_header(line, n, "Connection", r->connection, sizeof(r->connection));
	return n;
}

/* Add one "Name: value" line to a curl header list; -1 if out of memory. */
static int add_header(struct curl_slist **list, const char *line)
{
	struct curl_slist *t = curl_slist_append(*list, line);

	if (!t)
		return -1;
	*list = t;
	return 0;
}

int h_http(struct h_resp *r, const char *method, const char *url, const char *content_type,
	   const void *body, size_t len, const char *const *headers)
{
	struct h_xfer x = { r, 0, 0 };
	struct curl_slist *hl = NULL;
	const char *const *h_ct;
	char ct[256];
	CURLcode cc = CURLE_OUT_OF_MEMORY;
	CURL *c;
	int sends_body, has_ct = 0, rc = -1;

	memset(r, 0, sizeof(*r));
	r->body = calloc(1, 1);
	c = curl_easy_init();
	if (!r->body || !c)
		goto out;
	x.cap = 1;
	sends_body = body || len || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
		     !strcmp(method, "PATCH");
	/* "Content-Type:" with no value stops curl from adding its own */
	snprintf(ct, sizeof(ct), "Content-Type:%s%s", content_type ? " " : "",
		 content_type ? content_type : "");
	for (h_ct = headers; h_ct && *h_ct; h_ct++)
		if (!strncasecmp(*h_ct, "Content-Type:", 13))
			has_ct = 1;
	if ((content_type || (sends_body && !has_ct)) && add_header(&hl, ct))
		goto out;
	if (add_header(&hl, "Expect:"))	/* no 100-continue round trip for big bodies */
		goto out;
	for (; headers && *headers; headers++)
		if (add_header(&hl, *headers))
			goto out;

	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, H_HTTP_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
	if (sends_body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
	}
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, sends_body ? "POST" : "GET"))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);

	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->seconds);
	if (cc == CURLE_OK && !x.oom) {
		rc = 0;
		if (r->len && (r->body[0] == '{' || r->body[0] == '['))
			r->json = json_loadb(r->body, r->len, 0, NULL);
	}
out:
	if (rc)
		tap_diag("%s %s: %s", method, url,
			 x.oom ? "out of memory" : curl_easy_strerror(cc));
	curl_slist_free_all(hl);
	if (c)
		curl_easy_cleanup(c);
	return rc;
}

long long h_json_int(const struct h_resp *r, const char *key)
{
	json_t *v = json_object_get(r->json, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

void h_resp_free(struct h_resp *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

const char *h_err(const struct h_resp *r)
{
	const char *s = json_string_value(json_object_get(r->json, "error"));

	return s ? s : "";
}

/* ---- raw HTTP --------------------------------------------------------- */

int h_raw_connect_opt(int port, const char *src, int opt, int val)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (opt)
		setsockopt(fd, SOL_SOCKET, opt, &val, sizeof(val));
	if (src) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		if (inet_pton(AF_INET, src, &sin.sin_addr) != 1 ||
		    bind(fd, (struct sockaddr *)&sin, sizeof(sin))) {
			tap_diag("cannot bind a socket to %s: %s", src, strerror(errno));
			close(fd);
			return -1;
		}
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		close(fd);
		return -1;
	}
	return fd;
}

int h_raw_connect(int port, const char *src)
{
	return h_raw_connect_opt(port, src, 0, 0);
}

int h_raw_write(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	ssize_t k;

	while (n) {
		k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Copy the value of header name out of a raw response head (the status
 * line and header lines, each ending in \r\n): the first such header. */
static void raw_header(const char *head, const char *name, char *dst, size_t dstlen)
{
	const char *p, *e;

	dst[0] = '\0';
	for (p = strstr(head, "\r\n"); p && p[2] && p[2] != '\r' && !dst[0]; p = e) {
		p += 2;
		e = strstr(p, "\r\n");
		if (!e)
			break;
		take_header(p, (size_t)(e - p), name, dst, dstlen);
	}
}

/* Fill r from the whole answer in buf: the head (hlen bytes, its blank
 * line cut off) and the len - hlen bytes of body after it. */
static void raw_answer(char *buf, size_t hlen, size_t len, struct h_resp *r)
{
	if (sscanf(buf, "HTTP/1.%*d %ld", &r->status) != 1)
		r->status = 0;
	raw_header(buf, "Content-Type", r->content_type, sizeof(r->content_type));
	raw_header(buf, "Retry-After", r->retry_after, sizeof(r->retry_after));
	raw_header(buf, "Connection", r->connection, sizeof(r->connection));
	r->len = len - hlen;
	r->body = malloc(r->len + 1);
	if (r->body) {
		memcpy(r->body, buf + hlen, r->len);
		r->body[r->len] = '\0';
		if (r->len && r->body[0] == '{')
			r->json = json_loadb(r->body, r->len, 0, NULL);
	}
}

int h_raw_read(int fd, int timeout_ms, struct h_resp *r)
{
	int64_t t0 = h_now_ms(), deadline = t0 + timeout_ms, left;
	size_t len = 0, cap = 0, hlen = 0, want = (size_t)-1;
	char *buf = NULL, *t, *e, cl[32];
	struct pollfd pfd;
	int res = H_RAW_TIMEOUT, eof = 0, k;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	for (;;) {
		if (hlen && len >= want)
			break;
		left = deadline - h_now_ms();
		if (left <= 0)
			break;
		pfd.fd = fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		k = poll(&pfd, 1, (int)left);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (cap - len < 4097) {
			cap = cap ? cap * 2 : 8192;
			t = realloc(buf, cap);
			if (!t)
				break;
			buf = t;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			eof = 1;
			break;
		}
		len += (size_t)n;
		buf[len] = '\0';
		if (!hlen && (e = strstr(buf, "\r\n\r\n"))) {
			hlen = (size_t)(e - buf) + 4;
			e[2] = '\0';	/* the head alone, for raw_header */
			raw_header(buf, "Content-Length", cl, sizeof(cl));
			if (cl[0])
				want = hlen + strtoul(cl, NULL, 10);
		}
	}
	if (hlen && (len >= want || (eof && want == (size_t)-1))) {
		raw_answer(buf, hlen, len > want ? want : len, r);
		res = H_RAW_ANSWER;
	} else if (eof) {
		res = H_RAW_CLOSED;
	}
	r->seconds = (double)(h_now_ms() - t0) / 1000;
	free(buf);
	return res;
}

int h_raw_closed(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

long h_raw_request(int port, const char *src, const char *req, size_t len, struct h_resp *r)
{
	int fd = h_raw_connect(port, src);

	memset(r, 0, sizeof(*r));
	if (fd < 0) {
		tap_diag("raw request: cannot connect from %s", src ? src : "127.0.0.1");
		return 0;
	}
	if (h_raw_write(fd, req, len) == 0)
		h_raw_read(fd, H_RAW_MS, r);
	close(fd);
	return r->status;
}

/* ---- API shortcuts --------------------------------------------------- */

/* b->base + "/v1/sessions/" + id + suffix into buf. */
static void session_url(char *buf, size_t len, const struct h_bridge *b, const char *id,
			const char *suffix)
{
	snprintf(buf, len, "%s/v1/sessions/%s%s", b->base, id, suffix);
}

long h_create(struct h_bridge *b, const char *route, char *id, struct h_resp *r)
{
	struct h_resp local;
	char url[128], *body;
	const char *sid;
	json_t *req;
	long status;

	if (!r)
		r = &local;
	req = json_pack("{s:s}", "route", route);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		memset(r, 0, sizeof(*r));
		status = 0;
		goto out;
	}
	snprintf(url, sizeof(url), "%s/v1/sessions", b->base);
	h_http(r, "POST", url, "application/json", body, strlen(body), NULL);
	free(body);
	status = r->status;
	sid = json_string_value(json_object_get(r->json, "session"));
	if (id)
		snprintf(id, 64, "%s", status == 201 && sid ? sid : "");
out:
	if (r == &local)
		h_resp_free(&local);
	return status;
}

long h_poll(struct h_bridge *b, const char *id, const char *query, struct h_resp *r)
{
	char url[2048];
	int has_query = query && *query;

	if (snprintf(url, sizeof(url), "%s/v1/sessions/%s/messages%s%s", b->base, id,
		     has_query ? "?" : "", has_query ? query : "") >= (int)sizeof(url)) {
		tap_diag("h_poll: URL too long");
		memset(r, 0, sizeof(*r));
		return 0;
	}
	h_http(r, "GET", url, NULL, NULL, 0, NULL);
	return r->status;
}

long h_send_text(struct h_bridge *b, const char *id, const char *text, struct h_resp *r)
{
	struct h_resp local;
	char url[2048];
	long status;

	if (!r)
		r = &local;
	session_url(url, sizeof(url), b, id, "/messages");
	h_http(r, "POST", url, "text/plain", text, strlen(text), NULL);
	status = r->status;
	if (r == &local)
		h_resp_free(&local);
	return status;
}

long h_delete(struct h_bridge *b, const char *id)
{
	struct h_resp r;
	char url[2048];
	long status;

	session_url(url, sizeof(url), b, id, "");
	h_http(&r, "DELETE", url, NULL, NULL, 0, NULL);
	status = r.status;
	h_resp_free(&r);
	return status;
}

size_t h_collect(struct h_bridge *b, const char *id, uint64_t after, size_t n, int timeout_ms,
		 json_t *out)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	uint64_t seen = after;	/* highest seq collected so far */
	size_t got = 0, i;
	char query[64];
	struct h_resp r;
	json_t *msgs, *m;
	json_int_t seq;
	const char *state;
	int fresh, closed;

	snprintf(query, sizeof(query), "after=%llu&wait=1", (unsigned long long)after);
	while (got < n && h_now_ms() < deadline) {
		if (h_poll(b, id, query, &r) != 200) {
			tap_diag("h_collect: poll of %s answered %ld %s", id, r.status, h_err(&r));
			h_resp_free(&r);
			break;
		}
		fresh = 0;
		msgs = json_object_get(r.json, "messages");
		json_array_foreach(msgs, i, m) {
			seq = json_integer_value(json_object_get(m, "seq"));
			if (seq <= 0 || (uint64_t)seq <= seen)
				continue;
			seen = (uint64_t)seq;
			json_array_append(out, m);
			got++;
			fresh = 1;
		}
		state = json_string_value(json_object_get(r.json, "state"));
		closed = state && !strcmp(state, "closed");
		h_resp_free(&r);
		/* a closed session sends no more; the cursor is fixed, so every
		 * poll returns its batch at once: pause if nothing was new */
		if (closed)
			break;
		if (!fresh)
			h_sleep_ms(H_POLL_MS * 2);
	}
	return got;
}

double h_metric(struct h_bridge *b, const char *name)
{
	struct h_resp r = { 0 };
	char url[128];
	double v = -1;
	size_t n = strlen(name);

	snprintf(url, sizeof(url), "%s/metrics", b->base);
	if (h_http(&r, "GET", url, NULL, NULL, 0, NULL) == 0 && r.status == 200)
		for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
			if (strncmp(p, name, n) == 0 && p[n] == ' ')
				v = atof(p + n + 1);
	h_resp_free(&r);
	return v;
}

int h_wait_log(struct h_bridge *b, const char *needle, int n, int ms)
{
	int64_t until = h_now_ms() + ms;
	int got;

	while ((got = h_count_in_file(b->proc->log_path, needle)) < n && h_now_ms() < until)
		h_sleep_ms(20);
	return got;
}

int h_still_serving(struct h_bridge *b, const char *route)
{
	struct h_resp r;
	char url[128], id[64];
	json_t *got;
	const char *data;
	long status;
	int ok = 0;

	snprintf(url, sizeof(url), "%s/healthz", b->base);
	h_http(&r, "GET", url, NULL, NULL, 0, NULL);
	status = r.status;
	h_resp_free(&r);
	if (status != 200) {
		tap_diag("still serving? /healthz answered %ld", status);
		return 0;
	}
	status = h_create(b, route, id, NULL);
	if (status != 201) {
		tap_diag("still serving? create on route %s answered %ld", route, status);
		return 0;
	}
	status = h_send_text(b, id, "still-serving", NULL);
	if (status != 200) {
		tap_diag("still serving? send answered %ld", status);
		goto out;
	}
	got = json_array();
	if (got && h_collect(b, id, 0, 1, 10000, got) == 1) {
		data = json_string_value(json_object_get(json_array_get(got, 0), "data"));
		ok = data && !strcmp(data, "still-serving");
	}
	if (!ok)
		tap_diag("still serving? the message did not come back");
	json_decref(got);
out:
	status = h_delete(b, id);
	if (status != 204) {
		tap_diag("still serving? DELETE answered %ld", status);
		ok = 0;
	}
	return ok;
}
