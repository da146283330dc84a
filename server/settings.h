/*
 * settings.h - hlptd's settings from flags, environment and a config file.
 *
 * Every option exists in three spellings: the flag `--data-dir DIR`, the environment variable
 * `HLPTD_DATA_DIR` and the config file key `data-dir = DIR` (`data_dir` is accepted too). A value
 * given as a flag wins over the environment, which wins over the file, which wins over the default.
 * The config file is named by `--config FILE` or HLPTD_CONFIG; it holds `key = value` lines, `#`
 * comments and blank lines. The options are one table (HLPTD_OPTIONS below); --help prints it.
 */
#ifndef HLPTD_SETTINGS_H
#define HLPTD_SETTINGS_H

#include <stddef.h>
#include <stdio.h>

#include "hlpt/engine.h"

/* X(field, type, default, min, max, metavar, help) - the field name with `_` → `-` is the flag. */
#define HLPTD_OPTIONS(X)                                                                           \
    X(model, STR, NULL, 0, 0, "DIR", "base model directory (Hugging Face layout); required")      \
    X(data_dir, STR, NULL, 0, 0, "DIR", "state directory: hlpt.db, blobs/, hlptd.port, hlptd.pid; required") \
    X(store, STORE, NULL, 0, 0, "URL", "the store in PostgreSQL, a libpq URL postgres://USER:PASSWORD@HOST:PORT/DB (or postgresql://); default SQLite at <data-dir>/hlpt.db") \
    X(node_id, STR, NULL, 0, 0, "ID", "this node's name in a shared store: the jobs it runs carry it; default HOSTNAME:DATA-DIR") \
    X(advertise_url, STR, NULL, 0, 0, "URL", "where other nodes and GET /v1/nodes say this node answers; default http://HOSTNAME:PORT") \
    X(lease_seconds, INT, "15", 1, 3600, "S", "how long a node holds a job it runs past its last heartbeat (every S/3); another node resumes it after that") \
    X(cache_max_bytes, SIZE, "0", 0, 0, "N", "on a shared store, the most the blobs folder (a cache) holds: the least recently used blobs beyond it go, none used in the last 10 minutes; 0 = no limit; suffixes K, M, G") \
    X(listen, ADDR, "127.0.0.1:8080", 0, 0, "HOST:PORT", "address to serve HTTP on; port 0 picks a free one") \
    X(workers, INT, "1", 1, 256, "N", "training jobs running at once (one worker process each)")  \
    X(threads, INT, "0", 0, 1024, "N", "compute threads per worker and for inference; 0 = all cores") \
    X(dtype, DTYPE, "auto", 0, 0, "auto|bf16|f32", "base matrices' dtype; auto = bf16 where the CPU has AVX512-BF16 or AMX, else f32") \
    X(http_threads, INT, "4", 1, 256, "N", "HTTP threads (libmicrohttpd thread pool)")            \
    X(api_key_file, STR, NULL, 0, 0, "FILE", "accept only `Authorization: Bearer KEY` with a KEY from FILE (one per line)") \
    X(config, STR, NULL, 0, 0, "FILE", "read `key = value` settings from FILE")                   \
    X(max_body_bytes, SIZE, "1G", 1, 0, "N", "largest request body held in memory (JSON); suffixes K, M, G") \
    X(max_upload_bytes, SIZE, "64G", 1, 0, "N", "largest upload (POST /v1/files), streamed to disk as it arrives; suffixes K, M, G") \
    X(log_level, LEVEL, "info", 0, 0, "LEVEL", "debug, info, warn or error")

typedef struct {
    char *model;           /* base model directory (owned) */
    char *data_dir;        /* state directory (owned) */
    char *store;           /* PostgreSQL URL, or NULL: SQLite at <data_dir>/hlpt.db (owned) */
    char *node_id;         /* the node's name in the store; default <host name>:<data_dir> (owned) */
    char *advertise_url;   /* where this node answers, or NULL: http://<host name>:<port> (owned) */
    int lease_seconds;     /* a job's lease past the last heartbeat (docs/design.md, "Many nodes") */
    size_t cache_max_bytes; /* a shared store's blobs folder, at most (0: no limit) */
    char *listen;          /* "host:port" as given (owned) */
    char *listen_host;     /* its host part, brackets of an IPv6 address removed (owned) */
    int listen_port;       /* its port, 0 = any free port */
    int workers;           /* concurrent training workers */
    int threads;           /* compute threads, 0 = all cores */
    hlpt_base_dtype dtype; /* the base's matrices: AUTO, F32 or BF16 (include/hlpt/engine.h) */
    int http_threads;      /* libmicrohttpd thread pool size */
    char *api_key_file;    /* NULL = no authentication (owned) */
    char *config;          /* the config file that was read, or NULL (owned) */
    size_t max_body_bytes; /* limit of a request body held in memory, bytes */
    size_t max_upload_bytes; /* limit of an upload streamed to disk, bytes */
    int log_level;         /* hlptd_log_level */
    int help;              /* --help was given: print hlptd_settings_usage and exit 0 */
} hlptd_settings;

/* Fills `c` from argv (borrows; argv[0] is the program), envp (borrows; NULL-terminated
 * "KEY=VALUE" strings, e.g. `environ`; NULL = none) and the config file. On failure `c` holds
 * nothing (no free needed) and why says which option and where it came from, e.g.
 * "option --workers: `x` is not an integer (from HLPTD_WORKERS)".
 * Returns HLPT_OK, HLPT_ERR_INVAL (bad or missing value, unknown option), HLPT_ERR_IO (config
 * file unreadable), HLPT_ERR_NOMEM. Required options are not checked when --help is given. */
int hlptd_settings_load(hlptd_settings *c, int argc, char *const *argv, char *const *envp, char *why,
                      size_t len);
/* Frees the strings of `c`; accepts a zeroed or already freed config. */
void hlptd_settings_free(hlptd_settings *c);

/* The option table as --help text. */
void hlptd_settings_usage(FILE *f);

#endif
