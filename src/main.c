/*
 * main.c: the pollbridge daemon: parse the command line, wire the modules
 * together on one libuv loop, print the ready line, and drain on
 * SIGTERM/SIGINT (answer waiting polls, close upstreams with 1001, exit 0
 * within the drain timeout).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "config.h"
#include "front.h"
#include "heap_trim.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "notify.h"
#include "reload.h"
#include "session.h"
#include "store_memory.h"
#include "store_redis.h"
#include "upstream.h"

/* The demo route used when none is configured (the bundled echo server's
 * default address), so the quick start needs no options. */
#define PB_DEMO_ROUTE "echo=ws://127.0.0.1:9001/"

struct pb_daemon {
	uv_loop_t loop;
	struct pb_config cfg;
	struct pb_upstream_ctx *up;
	struct pb_core *core;
	struct pb_store *store;
	struct pb_front *front;
	struct pb_front *admin;         /* --admin-listen, or NULL */
	uv_signal_t sigterm, sigint, sighup;
	uv_signal_t sigusr1;            /* reopen the access log */
	uv_timer_t status_timer;        /* systemd STATUS=, retired route tables */
	struct pb_heap_trim heap_trim;  /* free heap back to the kernel after bursts */
	struct pb_reload *reload;       /* SIGHUP */
	int ready;                      /* the ready line was printed */
	uv_timer_t drain_timer;
	uint64_t drain_deadline;
	int draining;
};

/* 1 if argv holds flag. */
static int has_flag(int argc, char **argv, const char *flag)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], flag) == 0)
			return 1;
	return 0;
}

/* How long an instance's hold on a session lasts without renewal: the
 * time within which the sessions of a dead instance are adopted. */
#define PB_LEASE_MS 5000

/* The instance id when none is configured: hostname-pid. */
static int set_default_instance_id(struct pb_config *cfg)
{
	char host[64], id[96];

	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "pollbridge");
	host[sizeof(host) - 1] = '\0';
	snprintf(id, sizeof(id), "%s-%ld", host, (long)getpid());
	cfg->instance_id = strdup(id);
	return cfg->instance_id ? 0 : -1;
}

/* Let as many descriptors be opened as the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A timer that only wakes the loop. */
static void wake_only(uv_timer_t *t)
{
	(void)t;
}

/* Give a store that connects in the background (Redis) up to 2 s before
 * the ready line, so a supervisor that waits for it finds a working
 * instance; if the store is still down the daemon starts anyway and
 * answers 503 (and /healthz 503) until it is up. */
static void wait_for_store(struct pb_daemon *d)
{
	uv_timer_t t;
	uint64_t until;

	uv_update_time(&d->loop);       /* a slow start (valgrind) left it stale */
	until = uv_now(&d->loop) + 2000;
	uv_timer_init(&d->loop, &t);
	uv_timer_start(&t, wake_only, 50, 50);
	while (!d->store->ops->healthy(d->store) && uv_now(&d->loop) < until)
		uv_run(&d->loop, UV_RUN_ONCE);
	if (!d->store->ops->healthy(d->store))
		pb_log_warn("store %s is not reachable yet; answering 503 until it is",
			    d->cfg.store);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&d->loop, UV_RUN_NOWAIT);
}

/* Check, every few milliseconds, whether draining is complete. */
static void drain_tick(uv_timer_t *t)
{
	struct pb_daemon *d = t->data;
	int done = pb_front_active(d->front) == 0 && pb_upstream_ctx_live(d->up) == 0 &&
		   pb_core_drained(d->core);

	if (done || uv_now(&d->loop) >= d->drain_deadline) {
		if (!done)
			pb_log_warn("drain timeout: %zu requests and %zu upstreams still open",
				    pb_front_active(d->front), pb_upstream_ctx_live(d->up));
		uv_timer_stop(t);
		uv_stop(&d->loop);
	}
}

/* The systemd STATUS= text: what this instance holds now. */
static void daemon_status(struct pb_daemon *d, char *out, size_t outlen)
{
	snprintf(out, outlen, "%zu sessions, %lld polls waiting, %lld streams",
		 pb_core_session_count(d->core),
		 (long long)pb_metrics_gauge_value(PB_G_POLLS_WAITING),
		 (long long)pb_metrics_gauge_value(PB_G_STREAMS_OPEN));
}

/* Every 5 s: tell systemd the status, free route tables no session uses. */
static void status_tick(uv_timer_t *t)
{
	struct pb_daemon *d = t->data;
	char status[160];

	daemon_status(d, status, sizeof(status));
	pb_notify_sendf("STATUS=%s", status);
	pb_reload_collect(d->reload);
}

/* SIGHUP: re-read --config and apply it in place (src/reload.c); an
 * invalid file keeps the running configuration. */
static void on_sighup(uv_signal_t *h, int signum)
{
	struct pb_daemon *d = h->data;
	char status[160];

	(void)signum;
	if (d->draining)
		return;
	if (d->ready)
		pb_notify_reloading();
	pb_reload_run(d->reload);
	daemon_status(d, status, sizeof(status));
	if (d->ready)
		pb_notify_ready(status);
}

/* SIGUSR1: reopen the access log at its path (logrotate renamed it). */
static void on_sigusr1(uv_signal_t *h, int signum)
{
	struct pb_daemon *d = h->data;

	(void)signum;
	if (!d->cfg.access_log)
		return;
	if (pb_log_open_access(d->cfg.access_log))
		pb_log_warn("SIGUSR1: cannot reopen --access-log %s: %s; writing to the old file",
			    d->cfg.access_log, strerror(errno));
	else
		pb_log_info("SIGUSR1: reopened the access log %s", d->cfg.access_log);
}

/* SIGTERM/SIGINT: stop accepting, close every session with 1001, wait. */
static void on_signal(uv_signal_t *h, int signum)
{
	struct pb_daemon *d = h->data;

	if (d->draining)
		return;
	d->draining = 1;
	pb_notify_stopping();
	pb_log_info("%s: draining %zu sessions", signum == SIGTERM ? "SIGTERM" : "SIGINT",
		    pb_core_session_count(d->core));
	pb_front_drain(d->front);
	if (d->admin)
		pb_front_drain(d->admin);       /* /readyz 503 from now on */
	pb_core_drain(d->core);
	d->drain_deadline = uv_now(&d->loop) + (uint64_t)d->cfg.drain_timeout * 1000;
	uv_timer_start(&d->drain_timer, drain_tick, 0, 20);
}

/* Tear everything down in dependency order and let the loop finish. */
static void shutdown_daemon(struct pb_daemon *d)
{
	/* The front and the core are freed through loop callbacks, so the
	 * store's failed operations can still call into them here. */
	pb_front_free(d->front);
	pb_front_free(d->admin);
	pb_core_free(d->core);
	pb_store_destroy(d->store);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	uv_close((uv_handle_t *)&d->sigusr1, NULL);
	uv_close((uv_handle_t *)&d->status_timer, NULL);
	pb_heap_trim_stop(&d->heap_trim);
	uv_close((uv_handle_t *)&d->drain_timer, NULL);
	/* Let closing links finish their close handshakes (bounded), then
	 * destroy libwebsockets, which runs the loop to the end. */
	for (int i = 0; i < 50 && pb_upstream_ctx_live(d->up); i++)
		uv_run(&d->loop, UV_RUN_NOWAIT);
	pb_upstream_ctx_free(d->up);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&d->loop))
		pb_log_warn("event loop closed with handles still open");
	pb_msg_cache_free();
}

int main(int argc, char **argv)
{
	static struct pb_daemon d;
	struct pb_store_events ev;
	struct pb_store_limits lim = { 0 };
	enum pb_config_action action;
	char err[512];
	int demo_route = 0;

	if (pb_config_init(&d.cfg)) {
		fprintf(stderr, "pollbridge: out of memory\n");
		return 1;
	}
	if (pb_config_parse_args(&d.cfg, argc, argv, &action, err, sizeof(err))) {
		fprintf(stderr, "pollbridge: %s\n", err);
		pb_config_free(&d.cfg);
		/* docs/API.md: --check-config says "not ok" with 1; bad usage is 2. */
		return has_flag(argc, argv, "--check-config") ? 1 : 2;
	}
	if (action == PB_CONFIG_HELP) {
		fputs(pb_config_usage(), stdout);
		pb_config_free(&d.cfg);
		return 0;
	}
	if (action == PB_CONFIG_VERSION) {
		printf("pollbridge %s\n", PACKAGE_VERSION);
		pb_config_free(&d.cfg);
		return 0;
	}
	if (d.cfg.nroutes == 0) {
		char *av[] = { argv[0], "--route", PB_DEMO_ROUTE };

		demo_route = 1;
		pb_config_parse_args(&d.cfg, 3, av, &action, err, sizeof(err));
	}
	/* The TLS files are read here, so --check-config checks them too. */
	if (pb_config_load_files(&d.cfg, err, sizeof(err))) {
		int check = d.cfg.check_config;

		fprintf(stderr, "pollbridge: %s\n", err);
		pb_config_free(&d.cfg);
		return check ? 1 : 2;
	}
	if (d.cfg.check_config) {
		printf("config ok\n");
		pb_config_free(&d.cfg);
		return 0;
	}
	pb_log_set_level(d.cfg.log_level);
	pb_log_use_journal(pb_notify_stderr_is_journal());
	if (d.cfg.access_log && pb_log_open_access(d.cfg.access_log)) {
		fprintf(stderr, "pollbridge: --access-log %s: %s\n", d.cfg.access_log,
			strerror(errno));
		pb_config_free(&d.cfg);
		return 2;
	}
	if (d.cfg.log_syslog)
		pb_log_use_syslog();
	if (!d.cfg.instance_id && set_default_instance_id(&d.cfg)) {
		fprintf(stderr, "pollbridge: out of memory\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	uv_loop_init(&d.loop);
	d.up = pb_upstream_ctx_new(&d.loop, d.cfg.upstream_ca, err, sizeof(err));
	if (!d.up) {
		fprintf(stderr, "pollbridge: %s\n", err);
		return 1;
	}
	pb_upstream_ctx_set_ping(d.up, d.cfg.ping_interval);
	d.reload = pb_reload_new(&d.cfg, argc, argv, PB_DEMO_ROUTE);
	if (!d.reload) {
		fprintf(stderr, "pollbridge: out of memory\n");
		return 1;
	}
	d.core = pb_core_new(&d.loop, &d.cfg, &pb_upstream_link_ops, d.up);
	pb_core_store_events(d.core, &ev);
	lim.queue_max = d.cfg.queue_max;
	lim.queue_max_bytes = d.cfg.queue_max_bytes;
	lim.tombstone_secs = d.cfg.idle_timeout;
	lim.idle_secs = d.cfg.idle_timeout;
	lim.lease_ms = PB_LEASE_MS;
	lim.instance = d.cfg.instance_id;
	if (strcmp(d.cfg.store, "memory") == 0)
		d.store = pb_store_memory_new(&d.loop, &ev, &lim);
	else
		d.store = pb_store_redis_new(&d.loop, d.cfg.store, &ev, &lim, err, sizeof(err));
	if (d.store && strcmp(d.cfg.store, "memory") != 0)
		pb_store_redis_wait_replicas(d.store, d.cfg.store_wait_replicas);
	if (!d.core || !d.store) {
		fprintf(stderr, "pollbridge: %s\n", d.core ? err : "out of memory");
		return 1;
	}
	pb_core_attach_store(d.core, d.store);
	d.front = pb_front_new(&d.loop, &d.cfg, d.core, err, sizeof(err));
	if (!d.front) {
		fprintf(stderr, "pollbridge: %s\n", err);
		return 1;
	}
	if (d.cfg.admin_host) {
		d.admin = pb_front_new_admin(&d.loop, &d.cfg, d.core, err, sizeof(err));
		if (!d.admin) {
			fprintf(stderr, "pollbridge: --admin-listen: %s\n", err);
			return 1;
		}
	}
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	uv_signal_init(&d.loop, &d.sighup);
	uv_signal_init(&d.loop, &d.sigusr1);
	uv_timer_init(&d.loop, &d.drain_timer);
	uv_timer_init(&d.loop, &d.status_timer);
	d.sigterm.data = d.sigint.data = d.sighup.data = d.drain_timer.data = &d;
	d.sigusr1.data = d.status_timer.data = &d;
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sighup, on_sighup, SIGHUP);
	uv_signal_start(&d.sigusr1, on_sigusr1, SIGUSR1);
	pb_reload_attach(d.reload, d.front, d.store, d.up);

	wait_for_store(&d);
	if (demo_route)
		pb_log_warn("no --route configured: serving the demo route %s", PB_DEMO_ROUTE);
	for (size_t i = 0; i < d.cfg.nroutes; i++) {
		pb_log_info("route %s -> %s", d.cfg.routes[i].name, d.cfg.routes[i].url);
		pb_metrics_route_declare(d.cfg.routes[i].name);
	}
	pb_log_info("instance %s, store %s, wait-max %us, idle-timeout %us", d.cfg.instance_id,
		    strncmp(d.cfg.store, "redis", 5) ? d.cfg.store : "redis", d.cfg.wait_max,
		    d.cfg.idle_timeout);
	/* The ready line (docs/API.md): tests and supervisors wait for it. */
	fprintf(stderr, "listening on %s\n", pb_front_address(d.front));
	if (d.admin)
		fprintf(stderr, "admin listening on %s\n", pb_front_address(d.admin));
	fflush(stderr);
	/* systemd (Type=notify): ready once listening and the store was
	 * waited for, as the ready line; then a status line every 5 s. */
	{
		char status[160];

		daemon_status(&d, status, sizeof(status));
		pb_notify_ready(status);
		d.ready = 1;
	}
	uv_timer_start(&d.status_timer, status_tick, 5000, 5000);
	pb_heap_trim_start(&d.heap_trim, &d.loop);

	uv_run(&d.loop, UV_RUN_DEFAULT);
	shutdown_daemon(&d);
	pb_log_info("stopped");
	pb_reload_free(d.reload);       /* every session is gone */
	pb_config_free(&d.cfg);
	return 0;
}
