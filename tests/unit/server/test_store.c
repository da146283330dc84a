/* The store: migrations from scratch and from every earlier version, CRUD of every table, ids. */
#include "store.h"

#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/err.h"

static char dir[64], path[128];
static char why[512];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/hlpt-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/hlpt.db", dir);
}

static void teardown(void) {
    char p[160];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) snprintf(p, sizeof p, "%s%s", path, suffix[i]), unlink(p);
    rmdir(dir);
}

/* The schema as text: every table's and index's SQL, sorted, from an independent connection. */
static char *schema_of(const char *db_path) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name", -1, &s, NULL),
                     SQLITE_OK);
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(1, cap);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        size_t k = strlen(t);
        ck_assert_uint_lt(n + k + 2, cap);
        memcpy(out + n, t, k);
        n += k;
        out[n++] = '\n';
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

START_TEST(test_migrations_table) {
    ck_assert_int_ge(hlpt_migrations_count, 2);
    for (int i = 0; i < hlpt_migrations_count; i++) {
        ck_assert_int_eq(hlpt_migrations[i].version, i + 1);
        ck_assert_ptr_nonnull(strstr(hlpt_migrations[i].sql, "CREATE"));
    }
    ck_assert_str_eq(hlpt_migrations[0].name, "0001_init");
}
END_TEST

START_TEST(test_migrate_from_scratch) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_version(st), hlpt_migrations_count);
    hlpt_store_close(st);
    /* Opening again applies nothing and changes nothing. */
    char *before = schema_of(path);
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_store_close(st);
    char *after = schema_of(path);
    ck_assert_str_eq(before, after);
    ck_assert_ptr_nonnull(strstr(after, "CREATE TABLE files"));
    ck_assert_ptr_nonnull(strstr(after, "CREATE INDEX job_events_by_job"));
    free(before);
    free(after);
}
END_TEST

/* From every version v < head: a database left at v (with a file row in it when the files table
 * exists) migrates to head, keeps its rows and ends with the same schema as a fresh one. */
START_TEST(test_migrate_from_each_version) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_store_close(st);
    char *fresh = schema_of(path);
    teardown();
    for (int v = 0; v < hlpt_migrations_count; v++) {
        setup();
        ck_assert_int_eq(hlpt_store_open_at(&st, path, v, why, sizeof why), HLPT_OK);
        ck_assert_int_eq(hlpt_store_version(st), v);
        /* The row is written by today's code into the old schema: only the columns 0001 has. */
        if (v >= 1) ck_assert_int_eq(hlpt_store_file_insert(st, "a.jsonl", "fine-tune", "processed", "x\n", 2, 1, NULL, NULL, why, sizeof why), HLPT_OK);
        hlpt_store_close(st);
        ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
        ck_assert_int_eq(hlpt_store_version(st), hlpt_migrations_count);
        if (v >= 1) {
            hlpt_file **g;
            size_t n;
            int more;
            ck_assert_int_eq(hlpt_store_file_list(st, NULL, 10, &g, &n, &more, why, sizeof why), HLPT_OK);
            ck_assert_uint_eq(n, 1);
            ck_assert_str_eq(g[0]->filename, "a.jsonl");
            hlpt_file_list_free(g, n);
        }
        hlpt_store_close(st);
        char *got = schema_of(path);
        ck_assert_str_eq(got, fresh);
        free(got);
        teardown();
    }
    setup();
    free(fresh);
}
END_TEST

START_TEST(test_newer_database_refused) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_store_close(st);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", hlpt_migrations_count + 1);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_ERR_UNSUPPORTED);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(strstr(why, "newer"));
}
END_TEST

START_TEST(test_ids) {
    char a[HLPT_ID_MAX], b[HLPT_ID_MAX];
    ck_assert_int_eq(hlpt_id_new(a, HLPT_ID_FILE), HLPT_OK);
    ck_assert_int_eq(hlpt_id_new(b, HLPT_ID_FILE), HLPT_OK);
    ck_assert_uint_eq(strlen(a), strlen("file-") + HLPT_ID_RANDOM_CHARS);
    ck_assert_int_eq(strncmp(a, "file-", 5), 0);
    ck_assert_str_ne(a, b);
    for (size_t i = 5; a[i]; i++)
        ck_assert_msg(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", a[i]), "base62: %s", a);
    /* Many ids: no duplicates (24 base62 chars = 143 bits). */
    enum { N = 2000 };
    static char ids[N][HLPT_ID_MAX];
    for (int i = 0; i < N; i++) hlpt_id_new(ids[i], HLPT_ID_ADAPTER);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) ck_assert_str_ne(ids[i], ids[j]);
}
END_TEST

START_TEST(test_files_crud) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_file *f[5];
    for (int i = 0; i < 5; i++) {
        char name[16], content[32];
        snprintf(name, sizeof name, "f%d.jsonl", i);
        snprintf(content, sizeof content, "{\"text\":\"%d\"}\n", i);
        ck_assert_int_eq(hlpt_store_file_insert(st, name, "fine-tune", "processed", content, strlen(content), 1,
                                                "{\"examples\":1}", &f[i], why, sizeof why),
                         HLPT_OK);
        ck_assert_int_eq(strncmp(f[i]->id, "file-", 5), 0);
        ck_assert_int_eq(f[i]->bytes, (int64_t)strlen(content));
        ck_assert_str_eq(f[i]->stats, "{\"examples\":1}");
        ck_assert_ptr_null(f[i]->error);
    }
    /* Newest first, in pages of 2. */
    hlpt_file **v;
    size_t n;
    int more;
    ck_assert_int_eq(hlpt_store_file_list(st, NULL, 2, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(more);
    ck_assert_str_eq(v[0]->id, f[4]->id);
    ck_assert_str_eq(v[1]->id, f[3]->id);
    hlpt_file_list_free(v, n);
    ck_assert_int_eq(hlpt_store_file_list(st, f[3]->id, 2, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(more);
    ck_assert_str_eq(v[0]->id, f[2]->id);
    hlpt_file_list_free(v, n);
    ck_assert_int_eq(hlpt_store_file_list(st, f[1]->id, 2, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(!more);
    ck_assert_str_eq(v[0]->id, f[0]->id);
    hlpt_file_list_free(v, n);
    ck_assert_int_eq(hlpt_store_file_list(st, "file-nope", 2, &v, &n, &more, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(v);

    void *buf;
    ck_assert_int_eq(hlpt_store_file_content(st, f[2]->id, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, strlen("{\"text\":\"2\"}\n"));
    ck_assert_str_eq(buf, "{\"text\":\"2\"}\n");
    free(buf);

    ck_assert_int_eq(hlpt_store_file_delete(st, f[2]->id, why, sizeof why), HLPT_OK);
    hlpt_file *g;
    ck_assert_int_eq(hlpt_store_file_get(st, f[2]->id, &g, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(why, f[2]->id));
    ck_assert_int_eq(hlpt_store_file_delete(st, f[2]->id, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlpt_store_file_content(st, f[2]->id, &buf, &n, why, sizeof why), HLPT_ERR_NOENT);
    for (int i = 0; i < 5; i++) hlpt_file_free(f[i]);
    hlpt_store_close(st);
}
END_TEST

static hlpt_job *make_job(hlpt_store *st, const char *file_id) {
    hlpt_job_new in = {.status = "queued", .model = "base", .training_file = file_id, .method = "{\"type\":\"hlpt\"}",
                       .hyperparameters = "{\"n_epochs\":3}", .seed = 42, .suffix = "x"};
    hlpt_job *j;
    ck_assert_int_eq(hlpt_store_job_insert(st, &in, &j, why, sizeof why), HLPT_OK);
    return j;
}

START_TEST(test_jobs_crud) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_file *f;
    ck_assert_int_eq(hlpt_store_file_insert(st, "t.jsonl", "fine-tune", "processed", "x", 1, 1, NULL, &f, why, sizeof why), HLPT_OK);

    hlpt_job_new bad = {.status = "queued", .model = "base", .training_file = "file-missing", .method = "{}", .hyperparameters = "{}"};
    hlpt_job *j;
    ck_assert_int_eq(hlpt_store_job_insert(st, &bad, &j, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "training_file"));
    bad.training_file = f->id;
    bad.validation_file = "file-missing";
    ck_assert_int_eq(hlpt_store_job_insert(st, &bad, &j, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "validation_file"));

    hlpt_job *a = make_job(st, f->id), *b = make_job(st, f->id);
    ck_assert_int_eq(strncmp(a->id, "ftjob-", 6), 0);
    ck_assert_str_eq(a->status, "queued");
    ck_assert_str_eq(a->training_file, f->id);
    ck_assert_ptr_null(a->validation_file);
    ck_assert_int_eq(a->seed, 42);
    ck_assert_int_eq(a->started_at, 0);
    ck_assert_int_lt(a->queue_order, b->queue_order);

    hlpt_job *next;
    ck_assert_int_eq(hlpt_store_job_next_queued(st, &next, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(next->id, a->id);
    hlpt_job_free(next);

    ck_assert_int_eq(hlpt_store_job_set_status(st, a->id, "running", NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_job_set_progress(st, a->id, 10, 100, 0.25, 1234.5, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_job_get(st, a->id, &j, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(j->status, "running");
    ck_assert_int_gt(j->started_at, 0);
    ck_assert_int_eq(j->finished_at, 0);
    ck_assert_int_eq(j->step, 10);
    ck_assert_int_eq(j->total_steps, 100);
    ck_assert_double_eq(j->epoch, 0.25);
    ck_assert_double_eq(j->tokens_per_s, 1234.5);
    hlpt_job_free(j);

    ck_assert_int_eq(hlpt_store_job_next_queued(st, &next, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(next->id, b->id);
    hlpt_job_free(next);

    char **ids;
    size_t n;
    ck_assert_int_eq(hlpt_store_job_ids_with_status(st, "running", &ids, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ids[0], a->id);
    hlpt_store_ids_free(ids, n);

    ck_assert_int_eq(hlpt_store_job_set_status(st, a->id, "failed", "{\"code\":\"x\"}", why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_job_set_fine_tuned_model(st, a->id, "base:x", why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_job_get(st, a->id, &j, why, sizeof why), HLPT_OK);
    ck_assert_int_gt(j->finished_at, 0);
    ck_assert_str_eq(j->error, "{\"code\":\"x\"}");
    ck_assert_str_eq(j->fine_tuned_model, "base:x");
    hlpt_job_free(j);

    hlpt_job **v;
    int more;
    ck_assert_int_eq(hlpt_store_job_list(st, NULL, 10, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(!more);
    ck_assert_str_eq(v[0]->id, b->id);
    hlpt_job_list_free(v, n);

    /* A file named by a queued job cannot be deleted. */
    ck_assert_int_eq(hlpt_store_file_delete(st, f->id, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_int_eq(hlpt_store_job_set_status(st, "ftjob-none", "running", NULL, why, sizeof why), HLPT_ERR_NOENT);

    ck_assert_int_eq(hlpt_store_job_delete(st, a->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_job_get(st, a->id, &j, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlpt_store_job_delete(st, b->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    hlpt_job_free(a);
    hlpt_job_free(b);
    hlpt_file_free(f);
    hlpt_store_close(st);
}
END_TEST

START_TEST(test_events_metrics_checkpoints) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_file *f;
    ck_assert_int_eq(hlpt_store_file_insert(st, "t.jsonl", "fine-tune", "processed", "x", 1, 1, NULL, &f, why, sizeof why), HLPT_OK);
    hlpt_job *j = make_job(st, f->id);

    /* events */
    hlpt_event *e1, *e2;
    ck_assert_int_eq(hlpt_store_event_add(st, j->id, "info", "created", NULL, &e1, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_event_add(st, j->id, "warn", "slow", "{\"s\":1}", &e2, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(strncmp(e1->id, "ftevent-", 8), 0);
    ck_assert_int_lt(e1->seq, e2->seq);
    ck_assert_str_eq(e2->data, "{\"s\":1}");
    ck_assert_int_eq(hlpt_store_event_add(st, "ftjob-none", "info", "x", NULL, NULL, why, sizeof why), HLPT_ERR_NOENT);
    hlpt_event **ev;
    size_t n;
    int more;
    ck_assert_int_eq(hlpt_store_event_list(st, j->id, 0, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(ev[0]->message, "created");
    ck_assert_str_eq(ev[1]->level, "warn");
    hlpt_event_list_free(ev, n);
    ck_assert_int_eq(hlpt_store_event_list(st, j->id, e1->seq, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ev[0]->id, e2->id);
    hlpt_event_list_free(ev, n);
    /* Pages: newest first, after an event id of the same job. */
    ck_assert_int_eq(hlpt_store_event_page(st, j->id, NULL, 1, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(more);
    ck_assert_str_eq(ev[0]->id, e2->id);
    hlpt_event_list_free(ev, n);
    ck_assert_int_eq(hlpt_store_event_page(st, j->id, e2->id, 1, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(!more);
    ck_assert_str_eq(ev[0]->id, e1->id);
    hlpt_event_list_free(ev, n);
    ck_assert_int_eq(hlpt_store_event_page(st, j->id, e1->id, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 0);
    hlpt_event_list_free(ev, n);
    ck_assert_int_eq(hlpt_store_event_page(st, j->id, "ftevent-none", 10, &ev, &n, &more, why, sizeof why), HLPT_ERR_NOENT);

    /* metrics: NAN round-trips as "not measured"; a repeated step replaces. */
    hlpt_metric m = {.step = 1, .train_loss = 2.5, .valid_loss = NAN, .valid_acc = NAN, .lr = 1e-3, .tokens_per_s = 100};
    ck_assert_int_eq(hlpt_store_metric_put(st, j->id, &m, why, sizeof why), HLPT_OK);
    m.step = 2, m.train_loss = 2.0, m.valid_loss = 2.2, m.valid_acc = 0.5;
    ck_assert_int_eq(hlpt_store_metric_put(st, j->id, &m, why, sizeof why), HLPT_OK);
    m.train_loss = 1.9;
    ck_assert_int_eq(hlpt_store_metric_put(st, j->id, &m, why, sizeof why), HLPT_OK);
    hlpt_metric *mv;
    ck_assert_int_eq(hlpt_store_metric_list(st, j->id, 0, -1, &mv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_double_eq(mv[0].train_loss, 2.5);
    ck_assert(isnan(mv[0].valid_loss));
    ck_assert_double_eq(mv[1].train_loss, 1.9);
    ck_assert_double_eq(mv[1].valid_acc, 0.5);
    free(mv);
    ck_assert_int_eq(hlpt_store_metric_list(st, j->id, 1, 10, &mv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(mv[0].step, 2);
    free(mv);

    /* checkpoints */
    hlpt_checkpoint *c1, *c2, *latest;
    ck_assert_int_eq(hlpt_store_checkpoint_latest(st, j->id, &latest, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(latest);
    unsigned char state[300];
    for (int i = 0; i < 300; i++) state[i] = (unsigned char)i;
    ck_assert_int_eq(hlpt_store_checkpoint_insert(st, j->id, 100, "{\"loss\":1}", state, 300, &c1, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_checkpoint_insert(st, j->id, 200, NULL, state, 10, &c2, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(strncmp(c1->id, "ftckpt-", 7), 0);
    ck_assert_int_eq(c1->bytes, 300);
    ck_assert_int_eq(hlpt_store_checkpoint_latest(st, j->id, &latest, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(latest->id, c2->id);
    hlpt_checkpoint_free(latest);
    hlpt_checkpoint **cv;
    ck_assert_int_eq(hlpt_store_checkpoint_list(st, j->id, &cv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(cv[0]->step, 100);
    ck_assert_str_eq(cv[0]->metrics, "{\"loss\":1}");
    hlpt_checkpoint_list_free(cv, n);
    void *buf;
    ck_assert_int_eq(hlpt_store_checkpoint_state(st, c1->id, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 300);
    ck_assert_mem_eq(buf, state, 300);
    free(buf);
    ck_assert_int_eq(hlpt_store_checkpoint_delete(st, c1->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_checkpoint_state(st, c1->id, &buf, &n, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlpt_store_checkpoint_delete(st, c1->id, why, sizeof why), HLPT_ERR_NOENT);

    /* Deleting the job takes its events, metrics and checkpoints with it. */
    ck_assert_int_eq(hlpt_store_job_delete(st, j->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_event_list(st, j->id, 0, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 0);
    free(ev);
    ck_assert_int_eq(hlpt_store_metric_list(st, j->id, 0, -1, &mv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 0);
    free(mv);
    ck_assert_int_eq(hlpt_store_checkpoint_state(st, c2->id, &buf, &n, why, sizeof why), HLPT_ERR_NOENT);

    hlpt_event_free(e1);
    hlpt_event_free(e2);
    hlpt_checkpoint_free(c1);
    hlpt_checkpoint_free(c2);
    hlpt_job_free(j);
    hlpt_file_free(f);
    hlpt_store_close(st);
}
END_TEST

START_TEST(test_adapters_crud) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_file *f;
    ck_assert_int_eq(hlpt_store_file_insert(st, "t.jsonl", "fine-tune", "processed", "x", 1, 1, NULL, &f, why, sizeof why), HLPT_OK);
    hlpt_job *j = make_job(st, f->id);
    hlpt_adapter_rec_new in = {.name = "my-adapter", .config = "{\"peft_type\":\"HLPT\"}", .weights = "SAFETENSORS",
                           .weights_bytes = 11, .base_hash = "abc", .job_id = j->id};
    hlpt_adapter_rec *a, *g;
    ck_assert_int_eq(hlpt_store_adapter_insert(st, &in, &a, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(strncmp(a->id, "ad-", 3), 0);
    ck_assert_int_eq(a->bytes, 11);
    ck_assert_str_eq(a->job_id, j->id);
    ck_assert_ptr_null(a->checkpoint_id);
    ck_assert_int_eq(hlpt_store_adapter_insert(st, &in, &g, why, sizeof why), HLPT_ERR_EXISTS);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(why, "my-adapter"));
    ck_assert_int_eq(hlpt_store_adapter_get(st, "my-adapter", &g, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(g->id, a->id);
    hlpt_adapter_rec_free(g);
    ck_assert_int_eq(hlpt_store_adapter_get(st, a->id, &g, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(g->config, "{\"peft_type\":\"HLPT\"}");
    hlpt_adapter_rec_free(g);
    void *buf;
    size_t n;
    ck_assert_int_eq(hlpt_store_adapter_weights(st, a->id, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 11);
    ck_assert_mem_eq(buf, "SAFETENSORS", 11);
    free(buf);
    in.name = "second";
    in.job_id = NULL;
    hlpt_adapter_rec *b;
    ck_assert_int_eq(hlpt_store_adapter_insert(st, &in, &b, why, sizeof why), HLPT_OK);
    hlpt_adapter_rec **v;
    int more;
    ck_assert_int_eq(hlpt_store_adapter_list(st, NULL, 1, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(more);
    ck_assert_str_eq(v[0]->name, "second");
    hlpt_adapter_rec_list_free(v, n);
    /* The adapter outlives its job. */
    ck_assert_int_eq(hlpt_store_job_delete(st, j->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_adapter_get(st, a->id, &g, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(g->job_id);
    hlpt_adapter_rec_free(g);
    ck_assert_int_eq(hlpt_store_adapter_delete(st, a->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_adapter_get(st, a->id, &g, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlpt_store_adapter_delete(st, a->id, why, sizeof why), HLPT_ERR_NOENT);
    hlpt_adapter_rec_free(a);
    hlpt_adapter_rec_free(b);
    hlpt_job_free(j);
    hlpt_file_free(f);
    hlpt_store_close(st);
}
END_TEST

/* OpenAI's job fields (migration 0003), and deleting a file that only finished jobs name: the row
 * stays without its bytes, hidden from every file function, and the jobs keep naming it. */
START_TEST(test_job_results_and_file_tombstone) {
    hlpt_store *st;
    ck_assert_int_eq(hlpt_store_open(&st, path, why, sizeof why), HLPT_OK);
    hlpt_file *f;
    ck_assert_int_eq(hlpt_store_file_insert(st, "t.jsonl", "fine-tune", "processed", "xy", 2, 1, NULL, &f, why, sizeof why), HLPT_OK);
    hlpt_job_new in = {.status = "queued", .model = "base", .training_file = f->id, .method = "{}",
                       .hyperparameters = "{}", .seed = 1, .metadata = "{\"k\":\"v\"}", .integrations = "[]"};
    hlpt_job *j, *g;
    ck_assert_int_eq(hlpt_store_job_insert(st, &in, &j, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(j->metadata, "{\"k\":\"v\"}");
    ck_assert_str_eq(j->integrations, "[]");
    ck_assert_int_eq(j->trained_tokens, -1);
    ck_assert_ptr_null(j->result_file);
    ck_assert_int_eq(hlpt_store_job_set_status(st, j->id, "paused", NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_file_delete(st, f->id, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_int_eq(hlpt_store_job_set_status(st, j->id, "succeeded", NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_job_set_results(st, j->id, 1234, "file-results", why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    hlpt_file *gone;
    ck_assert_int_eq(hlpt_store_file_get(st, f->id, &gone, why, sizeof why), HLPT_ERR_NOENT);
    hlpt_file_free(f);
    void *buf;
    size_t n;
    ck_assert_int_eq(hlpt_store_file_content(st, j->training_file, &buf, &n, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlpt_store_file_delete(st, j->training_file, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlpt_store_job_get(st, j->id, &g, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(g->training_file, j->training_file);
    ck_assert_int_eq(g->trained_tokens, 1234);
    ck_assert_str_eq(g->result_file, "file-results");
    hlpt_job_free(g);
    hlpt_job_free(j);
    /* A file no job names is removed outright. */
    ck_assert_int_eq(hlpt_store_file_insert(st, "u.jsonl", "fine-tune", "processed", "x", 1, 1, NULL, &f, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    hlpt_file_free(f);
    hlpt_store_close(st);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_migrations_table);
    tcase_add_test(tc, test_migrate_from_scratch);
    tcase_add_test(tc, test_migrate_from_each_version);
    tcase_add_test(tc, test_newer_database_refused);
    tcase_add_test(tc, test_ids);
    tcase_add_test(tc, test_files_crud);
    tcase_add_test(tc, test_jobs_crud);
    tcase_add_test(tc, test_events_metrics_checkpoints);
    tcase_add_test(tc, test_adapters_crud);
    tcase_add_test(tc, test_job_results_and_file_tombstone);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
