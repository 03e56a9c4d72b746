/*
 * config.h: the daemon's configuration: the command line of docs/API.md, its
 * defaults, and the routes (name -> upstream WebSocket URL and options).
 *
 * Parsing never prints or exits: it returns an error with a one-line
 * reason, and main decides what to do with it.
 */
#ifndef PB_CONFIG_H
#define PB_CONFIG_H

#include <stddef.h>

#include "log.h"

/* Defaults, documented in README.md and --help. */
#define PB_DEFAULT_LISTEN "127.0.0.1:8080"
#define PB_DEFAULT_WAIT_MAX 30
#define PB_DEFAULT_IDLE_TIMEOUT 60
#define PB_DEFAULT_CONNECT_TIMEOUT 10
#define PB_DEFAULT_MAX_MESSAGE_BYTES (1024 * 1024)
#define PB_DEFAULT_MAX_BATCH 100
#define PB_DEFAULT_MAX_BATCH_BYTES (1024 * 1024)
#define PB_DEFAULT_MAX_SESSIONS 10000
#define PB_DEFAULT_QUEUE_MAX 1000
/* Per session and direction: --queue-max-bytes 0 means this many times
 * --max-message-bytes (4 MiB with the defaults). */
#define PB_DEFAULT_QUEUE_MAX_BYTES_FACTOR 4
#define PB_DEFAULT_TOTAL_QUEUE_MAX_BYTES (256ULL << 20)
#define PB_DEFAULT_DRAIN_TIMEOUT 5
#define PB_DEFAULT_SSE_HEARTBEAT 15
#define PB_DEFAULT_PING_INTERVAL 20
#define PB_DEFAULT_HEADER_TIMEOUT 10
#define PB_DEFAULT_MIN_BODY_RATE 1024
#define PB_MAX_CORS_ORIGINS 32
#define PB_MAX_FORWARD_HEADERS 16
/* Largest certificate, key or CA bundle file read. */
#define PB_MAX_PEM_FILE (1024 * 1024)

/* One configured upstream. */
struct pb_route {
	char *name;
	char *url;              /* as configured */
	int tls;                /* wss:// */
	char *host;             /* without brackets for IPv6 */
	int port;
	char *path;             /* starts with '/', may carry a query */
	int redial;
	int insecure;
	char *origin;           /* NULL: forward the client's Origin */
	char *engineio;         /* engineio=PATH: the Engine.IO door, or NULL */
	char *sockjs;           /* sockjs=PREFIX: the SockJS door, or NULL */
	int deflate;            /* offer permessage-deflate to the upstream */
	/* Sessions using any route of this route's configuration (shared by
	 * the whole table; NULL: not counted). A reload keeps a replaced
	 * table alive until it drops to 0 (src/reload.c). */
	size_t *users;
};

struct pb_config {
	char *listen_host;      /* numeric IPv4 or IPv6 address */
	int listen_port;        /* 0: pick a free port */
	char *admin_host;       /* --admin-listen: /metrics, /livez, /readyz; NULL: none */
	int admin_port;
	struct pb_route *routes;
	size_t nroutes;
	char *store;            /* "memory" */
	unsigned store_wait_replicas;   /* Redis: WAIT for this many replicas */
	char *instance_id;
	unsigned wait_max;
	unsigned idle_timeout;
	unsigned connect_timeout;
	unsigned drain_timeout;
	size_t max_message_bytes;
	size_t max_batch;
	size_t max_batch_bytes;
	size_t max_sessions;
	size_t max_sessions_per_client; /* 0: no limit */
	size_t max_connections;         /* 0: from the descriptor limit */
	unsigned connection_timeout;    /* idle or slow client connection, s */
	unsigned header_timeout;        /* request line and headers complete, s */
	size_t min_body_rate;           /* body bytes per second after the grace */
	size_t max_header_bytes;        /* request line and headers */
	size_t max_body_bytes;          /* 0: 2 x max_message_bytes + 64 KiB */
	size_t queue_max;
	size_t queue_max_bytes;         /* per session and direction (0 in the
					   options: 4 x max_message_bytes) */
	size_t total_queue_max_bytes;   /* message bytes the instance holds */
	unsigned sse_heartbeat;
	unsigned ping_interval;         /* 0: no upstream keepalive pings */
	char *cors_origins[PB_MAX_CORS_ORIGINS];       /* "*" allows any */
	size_t ncors_origins;
	int jsonp;
	int lean_long_polls;    /* waiting /v1 polls leave libmicrohttpd (front.c) */
	char *sockjs_url;         /* sockjs-client URL the SockJS iframe page loads;
				   NULL: no iframe page (404) */
	size_t compress_min_bytes;      /* gzip answers from this size; 0: never */
	/* Request headers of a create that go on the upstream handshake
	 * (default Cookie, Authorization, User-Agent); X-Forwarded-For and
	 * Origin are always handled on their own. */
	char *forward_headers[PB_MAX_FORWARD_HEADERS];
	size_t nforward_headers;
	int forward_headers_set;        /* a --forward-header replaced the defaults */
	char *tls_cert;         /* --tls-cert path; NULL: plain HTTP */
	char *tls_key;          /* --tls-key path */
	char *tls_cert_pem;     /* their contents, once pb_config_load_files() ran */
	char *tls_key_pem;
	char *upstream_ca;      /* CA bundle for wss:// upstreams; NULL: the system's */
	enum pb_log_level log_level;
	int log_syslog;
	char *access_log;               /* path, or NULL */
	int access_log_combined;        /* --access-log-format combined */
	int check_config;
};

/* What the command line asks for. */
enum pb_config_action {
	PB_CONFIG_RUN,
	PB_CONFIG_HELP,
	PB_CONFIG_VERSION,
};

/* Fill cfg with the defaults (cfg must be released with pb_config_free). */
int pb_config_init(struct pb_config *cfg);

/* Apply the command line (argv[0] is skipped). 0 and *action set, or
 * PB_EBADREQ/PB_ENOMEM with a one-line reason in err. */
int pb_config_parse_args(struct pb_config *cfg, int argc, char *const argv[],
			 enum pb_config_action *action, char *err, size_t errlen);

/* After parsing: check what needs every option and read the files the
 * options name. --tls-cert and --tls-key come together or not at all and
 * their PEM contents are kept in tls_cert_pem/tls_key_pem; --upstream-ca
 * must be readable and hold a PEM certificate. 0, or PB_EBADREQ/PB_ENOMEM
 * with a one-line reason naming the flag and the file. May be called again
 * (the contents are read afresh). */
int pb_config_load_files(struct pb_config *cfg, char *err, size_t errlen);

/* Parse "NAME=ws[s]://HOST[:PORT][/PATH] [option...]" into r (which the
 * caller releases with pb_route_free). 0 or PB_EBADREQ with a reason. */
int pb_route_parse(const char *spec, struct pb_route *r, char *err, size_t errlen);

/* Release what a route owns. */
void pb_route_free(struct pb_route *r);

/* 1 if a request from origin may get CORS headers. */
int pb_config_cors_allowed(const struct pb_config *cfg, const char *origin);

/* The route called name, or NULL. */
const struct pb_route *pb_config_route(const struct pb_config *cfg, const char *name);

/* Release everything cfg owns. */
void pb_config_free(struct pb_config *cfg);

/* The --help text. */
const char *pb_config_usage(void);

#endif
