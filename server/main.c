/*
 * main.c - hlptd: a foreground daemon, supervised by systemd (Type=notify) or run by hand.
 * Reads the configuration, then hands over to the loop (server/loop.h) with the REST API's route
 * table: the one place that puts the two layers together, and the only place that exits.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "settings.h"
#include "hlpt/blas.h"
#include "hlpt/err.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "worker.h"

extern char **environ;

/* The REST API (api/routes.c), the layer above the daemon: named here only, so that nothing in
 * server/ depends on api/. */
extern const hlptd_route hlptd_api_routes[];
extern const size_t hlptd_api_nroutes;

int main(int argc, char **argv) {
    /* Everything hlptd and its workers create (the database, its blobs, the port and pid files) is the
     * service's alone, whatever umask it was started with; systemd's unit sets the same. */
    umask(077);
    hlpt_blas_init(argv);
    /* A job's worker process: spawned by the daemon itself (server/jobs.c). */
    if (argc >= 2 && !strcmp(argv[1], "--worker")) return hlptd_worker_main(argc, argv);
    hlptd_settings cfg;
    char why[1024];
    if (hlptd_settings_load(&cfg, argc, argv, environ, why, sizeof why)) {
        fprintf(stderr, "hlptd: %s\nTry `hlptd --help`.\n", why);
        return 2;
    }
    if (cfg.help) {
        hlptd_settings_usage(stdout);
        hlptd_settings_free(&cfg);
        return 0;
    }
    hlptd_log_set_level((hlptd_log_level)cfg.log_level);
    /* A client that goes away mid-reply must not kill the daemon; writes then fail with EPIPE. */
    signal(SIGPIPE, SIG_IGN);

    hlptd *d = NULL;
    hlptd_opts o = {.cfg = &cfg, .routes = hlptd_api_routes, .nroutes = hlptd_api_nroutes};
    int err = hlptd_open(&d, &o, why, sizeof why);
    if (!err) err = hlptd_run(d, why, sizeof why);
    if (err) hlptd_error("%s", why);
    hlptd_close(d);
    hlptd_settings_free(&cfg);
    return err ? 1 : 0;
}
