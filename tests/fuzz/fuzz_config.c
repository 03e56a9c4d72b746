/*
 * fuzz_config.c: libFuzzer target for the command-line parsers of
 * src/config.c: pb_route_parse (the --route NAME=URL [OPTS] value) and
 * pb_config_parse_args (which also reaches --listen, --store redis:// URLs,
 * --cors-origin and the numeric options). The input is split at NUL bytes
 * into arguments; each argument is parsed as a route spec on its own, then
 * all of them as a command line after argv[0]. Everything is freed, so
 * LeakSanitizer sees any allocation a failure path forgets. The value of
 * --config is replaced by a path that does not exist, so the run never
 * depends on (or blocks reading) the files of the machine: the
 * configuration-file parser behind --config gets a target of its own.
 */
#include <string.h>

#include "codec.h"
#include "config.h"
#include "error.h"
#include "fuzz.h"

/* Most arguments passed on; the rest of the input is ignored. */
#define MAX_ARGS 64

/* Size of the reason buffers; allocated exactly, so overruns are caught. */
#define ERR_LEN 256

/* What every --config value becomes. */
#define NO_FILE "/nonexistent/pollbridge-fuzz.conf"

/* Check a one-line reason in err after a refusal. */
static void check_reason(const char *err)
{
	size_t i, n = strnlen(err, ERR_LEN);

	FUZZ_CHECK(n > 0 && n < ERR_LEN);
	for (i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
}

/* Check a route that a parser accepted. */
static void check_route(const struct pb_route *r)
{
	size_t n;

	FUZZ_CHECK(r->name && r->url && r->host && r->path);
	n = strlen(r->name);
	FUZZ_CHECK(n >= 1 && n <= PB_MAX_ROUTE_LEN);
	FUZZ_CHECK(r->host[0] != '\0' && r->path[0] == '/');
	FUZZ_CHECK(r->port >= 1 && r->port <= 65535);
	FUZZ_CHECK(r->tls == 0 || r->tls == 1);
	FUZZ_CHECK(!strncmp(r->url, r->tls ? "wss://" : "ws://", r->tls ? 6 : 5));
}

/* Parse one argument as a route spec. */
static void route_one(const char *spec, char *err)
{
	struct pb_route r;
	int rc;

	err[0] = '\0';
	rc = pb_route_parse(spec, &r, err, ERR_LEN);
	if (rc) {
		FUZZ_CHECK(rc == PB_EBADREQ || rc == PB_ENOMEM);
		check_reason(err);
		FUZZ_CHECK(!r.name && !r.url && !r.host && !r.path && !r.origin);
		return;
	}
	check_route(&r);
	pb_route_free(&r);
}

/* Point every --config in argv[1..argc) at NO_FILE. */
static void no_config_file(int argc, char **argv)
{
	static char opt[] = "--config=" NO_FILE, path[] = NO_FILE;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--config=", 9) == 0)
			argv[i] = opt;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			argv[++i] = path;
	}
}

/* Parse argv[0..argc) as the daemon's command line. */
static void command_line(int argc, char **argv, char *err)
{
	enum pb_config_action action;
	struct pb_config cfg;
	size_t i;
	int rc;

	FUZZ_CHECK(pb_config_init(&cfg) == 0);
	err[0] = '\0';
	rc = pb_config_parse_args(&cfg, argc, argv, &action, err, ERR_LEN);
	if (rc) {
		FUZZ_CHECK(rc == PB_EBADREQ || rc == PB_ENOMEM);
		check_reason(err);
	} else {
		FUZZ_CHECK(action == PB_CONFIG_RUN || action == PB_CONFIG_HELP ||
			   action == PB_CONFIG_VERSION);
		FUZZ_CHECK(cfg.listen_host && cfg.store);
		FUZZ_CHECK(cfg.listen_port >= 0 && cfg.listen_port <= 65535);
		FUZZ_CHECK(cfg.ncors_origins <= PB_MAX_CORS_ORIGINS);
		for (i = 0; i < cfg.nroutes; i++) {
			check_route(&cfg.routes[i]);
			/* Names are unique: the lookup finds this very route. */
			FUZZ_CHECK(pb_config_route(&cfg, cfg.routes[i].name) == &cfg.routes[i]);
		}
	}
	pb_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char argv0[] = "pollbridge";
	char *buf = malloc(size + 1), *err = malloc(ERR_LEN), *argv[MAX_ARGS + 2];
	int argc = 0;
	size_t i, start = 0;

	FUZZ_CHECK(buf != NULL && err != NULL);
	if (size)
		memcpy(buf, data, size);
	buf[size] = '\0';
	argv[argc++] = argv0;
	/* Arguments end at NUL bytes; an input with none is one argument. */
	for (i = 0; i <= size && argc <= MAX_ARGS; i++) {
		if (i < size && buf[i])
			continue;
		if (i < size || start < size)
			argv[argc++] = buf + start;
		start = i + 1;
	}
	argv[argc] = NULL;
	for (i = 1; i < (size_t)argc; i++)
		route_one(argv[i], err);
	no_config_file(argc, argv);
	command_line(argc, argv, err);
	free(err);
	free(buf);
	return 0;
}
