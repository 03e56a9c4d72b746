/*
 * reload.c: SIGHUP reloads (see reload.h). Owns the retired route tables,
 * each with its session count, and the count of the live table. Nothing
 * here runs off the loop thread: the signal arrives through a uv_signal_t.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "reload.h"

/* A replaced route table, kept while sessions use it. */
struct pb_retired {
	struct pb_route *routes;
	size_t nroutes;
	size_t *users;
	struct pb_retired *next;
};

struct pb_reload {
	struct pb_config *cfg;          /* the live configuration */
	size_t *users;                  /* sessions on the live table */
	int argc;
	char **argv;
	const char *fallback_route;
	struct pb_front *front;
	struct pb_store *store;
	struct pb_upstream_ctx *up;
	struct pb_retired *retired;
};

/* Point every route of cfg at the counter users. */
static void reload_count_routes(struct pb_config *cfg, size_t *users)
{
	for (size_t i = 0; i < cfg->nroutes; i++)
		cfg->routes[i].users = users;
}

struct pb_reload *pb_reload_new(struct pb_config *cfg, int argc, char **argv,
				const char *fallback_route)
{
	struct pb_reload *rl = calloc(1, sizeof(*rl));

	if (!rl)
		return NULL;
	rl->users = calloc(1, sizeof(*rl->users));
	if (!rl->users) {
		free(rl);
		return NULL;
	}
	rl->cfg = cfg;
	rl->argc = argc;
	rl->argv = argv;
	rl->fallback_route = fallback_route;
	reload_count_routes(cfg, rl->users);
	return rl;
}

void pb_reload_attach(struct pb_reload *rl, struct pb_front *front, struct pb_store *store,
		      struct pb_upstream_ctx *up)
{
	rl->front = front;
	rl->store = store;
	rl->up = up;
}

/* The --config file named on the command line, or NULL. */
static const char *reload_file(const struct pb_reload *rl)
{
	const char *file = NULL;

	for (int i = 1; i < rl->argc; i++) {
		if (strcmp(rl->argv[i], "--config") == 0 && i + 1 < rl->argc)
			file = rl->argv[++i];
		else if (strncmp(rl->argv[i], "--config=", 9) == 0)
			file = rl->argv[i] + 9;
	}
	return file;
}

/* 1 if two optional strings differ. */
static int reload_differ(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

/* Swap two string slots. */
static void reload_swap(char **a, char **b)
{
	char *t = *a;

	*a = *b;
	*b = t;
}

/* Take up changed --tls-cert / --tls-key files: the front serves the new
 * pair to new connections. Turning TLS on or off needs a restart, and a
 * pair the front refuses keeps the running one; both keep o's values. */
static void reload_tls(const struct pb_reload *rl, struct pb_config *n)
{
	struct pb_config *o = rl->cfg;
	char err[256];

	if (!reload_differ(n->tls_cert, o->tls_cert) && !reload_differ(n->tls_key, o->tls_key) &&
	    !reload_differ(n->tls_cert_pem, o->tls_cert_pem) &&
	    !reload_differ(n->tls_key_pem, o->tls_key_pem))
		return;
	if (!n->tls_cert_pem != !o->tls_cert_pem || !rl->front) {
		pb_log_warn("reload: turning --tls-cert and --tls-key %s needs a restart",
			    o->tls_cert_pem ? "off" : "on");
	} else if (pb_front_set_tls(rl->front, n->tls_cert_pem, n->tls_key_pem, err,
				    sizeof(err))) {
		pb_log_warn("reload failed for --tls-cert %s / --tls-key %s: %s; HTTPS keeps %s "
			    "(the other options are applied)", n->tls_cert, n->tls_key, err,
			    o->tls_cert);
	} else {
		pb_log_info("reload: new HTTPS connections use --tls-cert %s", n->tls_cert);
		return;
	}
	reload_swap(&n->tls_cert, &o->tls_cert);
	reload_swap(&n->tls_key, &o->tls_key);
	reload_swap(&n->tls_cert_pem, &o->tls_cert_pem);
	reload_swap(&n->tls_key_pem, &o->tls_key_pem);
}

/* Give n the live value of every option that cannot change while the
 * daemon runs, logging each one that the new configuration changes. The
 * live strings move into n (the live struct keeps their addresses: the
 * store borrows the instance id). */
static void reload_keep_fixed(const struct pb_reload *rl, struct pb_config *n)
{
	struct pb_config *o = rl->cfg;

	if (reload_differ(n->listen_host, o->listen_host) || n->listen_port != o->listen_port)
		pb_log_warn("reload: --listen needs a restart");
	reload_swap(&n->listen_host, &o->listen_host);
	n->listen_port = o->listen_port;
	if (reload_differ(n->admin_host, o->admin_host) || n->admin_port != o->admin_port)
		pb_log_warn("reload: --admin-listen needs a restart");
	reload_swap(&n->admin_host, &o->admin_host);
	n->admin_port = o->admin_port;
	if (reload_differ(n->store, o->store))
		pb_log_warn("reload: --store needs a restart");
	reload_swap(&n->store, &o->store);
	if (n->store_wait_replicas != o->store_wait_replicas)
		pb_log_warn("reload: --store-wait-replicas needs a restart");
	n->store_wait_replicas = o->store_wait_replicas;
	if (n->instance_id && reload_differ(n->instance_id, o->instance_id))
		pb_log_warn("reload: --instance-id needs a restart");
	reload_swap(&n->instance_id, &o->instance_id);
	if (n->max_connections != o->max_connections)
		pb_log_warn("reload: --max-connections needs a restart");
	n->max_connections = o->max_connections;
	if (n->lean_long_polls != o->lean_long_polls)
		pb_log_warn("reload: --lean-long-polls needs a restart");
	n->lean_long_polls = o->lean_long_polls;
	if (n->connection_timeout != o->connection_timeout)
		pb_log_warn("reload: --connection-timeout needs a restart");
	n->connection_timeout = o->connection_timeout;
	/* libmicrohttpd sized each connection's memory pool from it. */
	if (n->max_header_bytes != o->max_header_bytes)
		pb_log_warn("reload: --max-header-bytes needs a restart");
	n->max_header_bytes = o->max_header_bytes;
	if (reload_differ(n->upstream_ca, o->upstream_ca))
		pb_log_warn("reload: --upstream-ca needs a restart");
	reload_swap(&n->upstream_ca, &o->upstream_ca);
	if (n->log_syslog != o->log_syslog)
		pb_log_warn("reload: --log-syslog needs a restart");
	n->log_syslog = o->log_syslog;
	reload_tls(rl, n);
	/* Redis derives its keys' lifetimes from it when it starts. */
	if (n->idle_timeout != o->idle_timeout && rl->store && rl->store->shared) {
		pb_log_warn("reload: --idle-timeout needs a restart with a shared store");
		n->idle_timeout = o->idle_timeout;
	}
	if (reload_differ(n->access_log, o->access_log)) {
		if (!n->access_log) {
			pb_log_warn("reload: turning --access-log off needs a restart");
		} else if (pb_log_open_access(n->access_log)) {
			pb_log_warn("reload: --access-log %s cannot be opened; keeping %s",
				    n->access_log, o->access_log ? o->access_log : "none");
		} else {
			pb_log_info("reload: access log now %s", n->access_log);
			return;
		}
		reload_swap(&n->access_log, &o->access_log);
	}
}

/* Log what changed in the route table. */
static void reload_log_routes(const struct pb_config *o, const struct pb_config *n)
{
	for (size_t i = 0; i < n->nroutes; i++) {
		const struct pb_route *was = pb_config_route(o, n->routes[i].name);

		if (!was)
			pb_log_info("reload: route %s -> %s added", n->routes[i].name,
				    n->routes[i].url);
		else if (strcmp(was->url, n->routes[i].url) || was->redial != n->routes[i].redial ||
			 was->insecure != n->routes[i].insecure ||
			 was->deflate != n->routes[i].deflate ||
			 reload_differ(was->origin, n->routes[i].origin))
			pb_log_info("reload: route %s -> %s changed (live sessions keep %s)",
				    n->routes[i].name, n->routes[i].url, was->url);
	}
	for (size_t i = 0; i < o->nroutes; i++)
		if (!pb_config_route(n, o->routes[i].name))
			pb_log_info("reload: route %s removed (live sessions keep it)",
				    o->routes[i].name);
}

/* Update what the modules derived from the configuration at start. */
static void reload_apply(struct pb_reload *rl)
{
	const struct pb_config *c = rl->cfg;

	pb_log_set_level(c->log_level);
	if (rl->store) {
		rl->store->limits.queue_max = c->queue_max;
		rl->store->limits.queue_max_bytes = c->queue_max_bytes;
		rl->store->limits.idle_secs = c->idle_timeout;
		rl->store->limits.tombstone_secs = c->idle_timeout;
	}
	if (rl->up)
		pb_upstream_ctx_set_ping(rl->up, c->ping_interval);
	if (rl->front)
		pb_front_reconfigured(rl->front);
}

int pb_reload_run(struct pb_reload *rl)
{
	const char *file = reload_file(rl);
	struct pb_config n;
	struct pb_retired *r;
	enum pb_config_action action;
	size_t *users;
	char err[512];
	int rc;

	if (pb_config_init(&n))
		return PB_ENOMEM;
	rc = pb_config_parse_args(&n, rl->argc, rl->argv, &action, err, sizeof(err));
	if (!rc && n.nroutes == 0 && rl->fallback_route) {
		char *av[] = { rl->argv[0], "--route", (char *)rl->fallback_route };

		rc = pb_config_parse_args(&n, 3, av, &action, err, sizeof(err));
	}
	if (!rc)
		rc = pb_config_load_files(&n, err, sizeof(err));
	users = rc ? NULL : calloc(1, sizeof(*users));
	r = rc ? NULL : calloc(1, sizeof(*r));
	if (rc || !users || !r) {
		pb_log_warn("reload failed: %s; keeping the running configuration",
			    rc ? err : "out of memory");
		pb_config_free(&n);
		free(users);
		free(r);
		return rc ? rc : PB_ENOMEM;
	}
	reload_keep_fixed(rl, &n);
	reload_log_routes(rl->cfg, &n);
	reload_count_routes(&n, users);

	/* Retire the live table, then swap the whole configuration in. */
	r->routes = rl->cfg->routes;
	r->nroutes = rl->cfg->nroutes;
	r->users = rl->users;
	r->next = rl->retired;
	rl->retired = r;
	rl->cfg->routes = NULL;
	rl->cfg->nroutes = 0;
	pb_config_free(rl->cfg);
	*rl->cfg = n;
	rl->users = users;
	reload_apply(rl);
	pb_reload_collect(rl);
	pb_log_info("reloaded configuration from %s (%zu routes)",
		    file ? file : "the command line", rl->cfg->nroutes);
	return 0;
}

/* Free one retired table. */
static void reload_free_retired(struct pb_retired *r)
{
	for (size_t i = 0; i < r->nroutes; i++)
		pb_route_free(&r->routes[i]);
	free(r->routes);
	free(r->users);
	free(r);
}

void pb_reload_collect(struct pb_reload *rl)
{
	struct pb_retired **pp = &rl->retired;

	while (*pp) {
		struct pb_retired *r = *pp;

		if (*r->users == 0) {
			*pp = r->next;
			pb_log_debug("reload: freed a replaced route table (%zu routes)", r->nroutes);
			reload_free_retired(r);
		} else {
			pp = &r->next;
		}
	}
}

size_t pb_reload_retired(const struct pb_reload *rl)
{
	size_t n = 0;

	for (const struct pb_retired *r = rl->retired; r; r = r->next)
		n++;
	return n;
}

void pb_reload_free(struct pb_reload *rl)
{
	if (!rl)
		return;
	while (rl->retired) {
		struct pb_retired *r = rl->retired;

		rl->retired = r->next;
		reload_free_retired(r);
	}
	/* The live table's routes are the caller's: forget the counter. */
	reload_count_routes(rl->cfg, NULL);
	free(rl->users);
	free(rl);
}
