/* The store: migrations from scratch and from every earlier version (old BLOBs moved out into
 * blobs), CRUD of every table, ids, job state moves, transactions, and the blobs that rows name:
 * inserts need them, and adopt the sealed temporaries they are given (removed again when the row is
 * not stored), deletes remove those no row names any more, the sweep removes orphans; a delete
 * between a blob's sealing and its row's insert cannot lose it.
 *
 * Every test of the store's behaviour runs twice: on SQLite (a file in a temporary directory) and,
 * when HLPT_TEST_PG_URL names a PostgreSQL server (tests/run.sh starts one with tests/pg.sh), on
 * PostgreSQL, each test in a database of its own, created for it and dropped after. The
 * migrations from SQLite's older schemas, which PostgreSQL never had, run on SQLite only; the
 * PostgreSQL schema is compared with SQLite's, table by table. */
#include "store.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/err.h"

static char dir[64], path[128];
static char why[512];
static hlptd_blobs *blobs;
/* The store the test opens: `path` (SQLite), or the URL of the test's PostgreSQL database. */
static char where[1024];
static char pg_db[32]; /* the test's PostgreSQL database, "" on SQLite */

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/hlpt-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/hlpt.db", dir);
    snprintf(where, sizeof where, "%s", path);
    pg_db[0] = 0;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &blobs, why, sizeof why), HLPT_OK);
}

/* The server's URL with another database: the path between the authority and the query. */
static void url_with_db(const char *base, const char *db, char *out, size_t cap) {
    const char *auth = strstr(base, "://");
    ck_assert_ptr_nonnull(auth);
    auth += 3;
    const char *p = auth + strcspn(auth, "/?"), *q = p + strcspn(p, "?");
    snprintf(out, cap, "%.*s/%s%s", (int)(p - base), base, db, q);
}

/* Runs one statement on the server's own database (HLPT_TEST_PG_URL). */
static void pg_admin(const char *text) {
    PGconn *c = PQconnectdb(getenv("HLPT_TEST_PG_URL"));
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, text);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", text, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The same directory for blobs, and a new PostgreSQL database as the store. */
static void setup_pg(void) {
    setup();
    unsigned char r[8];
    ck_assert_int_eq(getrandom(r, sizeof r, 0), (ssize_t)sizeof r);
    snprintf(pg_db, sizeof pg_db, "hlpt_t%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    char q[96];
    snprintf(q, sizeof q, "CREATE DATABASE %s", pg_db);
    pg_admin(q);
    url_with_db(getenv("HLPT_TEST_PG_URL"), pg_db, where, sizeof where);
}

static void teardown(void) {
    hlptd_blobs_close(blobs);
    blobs = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    if (pg_db[0]) {
        snprintf(cmd, sizeof cmd, "DROP DATABASE %s WITH (FORCE)", pg_db);
        pg_admin(cmd);
        pg_db[0] = 0;
    }
}

/* Stores bytes as a blob; sha gets its name. */
static void put(const void *p, size_t n, char sha[HLPT_SHA256_HEX]) {
    ck_assert_int_eq(hlptd_blob_put(blobs, p, n, sha, why, sizeof why), HLPT_OK);
}

/* Writes bytes as a sealed temporary, as an HTTP thread or a worker does; sha gets the blob's
 * name, tmp the temporary's. */
static void seal(const void *p, size_t n, char sha[HLPT_SHA256_HEX], char tmp[HLPTD_BLOB_TMP_MAX]) {
    ck_assert_int_eq(hlptd_blob_put_sealed(blobs, p, n, sha, tmp, HLPTD_BLOB_TMP_MAX, why, sizeof why), HLPT_OK);
}

/* Files under blobs/tmp/. */
static int tmp_count(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/blobs/tmp", dir);
    DIR *dp = opendir(p);
    ck_assert_ptr_nonnull(dp);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.') n++;
    closedir(dp);
    return n;
}

static int blob_exists(const char *sha) {
    uint64_t n;
    return hlptd_blob_size(blobs, sha, &n, why, sizeof why) == HLPT_OK;
}

static int count(void *ctx, const char *sha) {
    (*(int *)ctx)++;
    return 0;
}

static int blob_count(void) {
    int n = 0;
    ck_assert_int_eq(hlptd_blobs_each(blobs, count, &n, why, sizeof why), 0);
    return n;
}

/* The blob's bytes equal p[0..n). */
static void blob_is(const char *sha, const void *p, size_t n) {
    char *buf;
    size_t got;
    ck_assert_int_eq(hlptd_blob_read(blobs, sha, 1 << 24, &buf, &got, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(got, n);
    ck_assert_mem_eq(buf, p, n);
    free(buf);
}

static hlptd_file *add_file(hlptd_store *st, const char *name, const char *content) {
    char sha[HLPT_SHA256_HEX];
    hlptd_file *f;
    put(content, strlen(content), sha);
    ck_assert_int_eq(hlptd_store_file_insert(st, name, "fine-tune", "processed", sha, (int64_t)strlen(content), NULL, 1,
                                            "{\"examples\":1}", &f, why, sizeof why),
                     HLPT_OK);
    return f;
}

/* A PostgreSQL query's rows as text, a line a row and a tab between columns, from an independent
 * connection; NULL is "". Owned. */
static char *pg_rows(const char *url, const char *query) {
    PGconn *c = PQconnectdb(url);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, query);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", query,
                  PQerrorMessage(c));
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(1, cap);
    for (int i = 0; i < PQntuples(r); i++)
        for (int k = 0; k < PQnfields(r); k++) {
            n += (size_t)snprintf(out + n, cap - n, "%s%s", PQgetvalue(r, i, k), k + 1 < PQnfields(r) ? "\t" : "\n");
            ck_assert_uint_lt(n, cap);
        }
    PQclear(r);
    PQfinish(c);
    return out;
}

/* PostgreSQL's schema as text: every column, constraint and index of the store's tables, sorted. */
#define PG_SCHEMA                                                                                        \
    "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable ||"    \
    " ' ' || coalesce(column_default, '') || ' ' || is_identity FROM information_schema.columns"          \
    " WHERE table_schema = current_schema()"                                                              \
    " UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint" \
    " WHERE connamespace = current_schema()::regnamespace"                                               \
    " UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()"         \
    " UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace" \
    " ORDER BY 1"

/* The schema as text: every table's and index's SQL, sorted, from an independent connection. */
static char *schema_of(const char *db_path) {
    if (hlptd_store_is_pg(db_path)) return pg_rows(db_path, PG_SCHEMA);
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

static void sql(const char *db_path, const char *text) {
    if (hlptd_store_is_pg(db_path)) {
        free(pg_rows(db_path, text));
        return;
    }
    sqlite3 *db;
    char *msg = NULL;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, text, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", text, msg);
    sqlite3_close(db);
}

/* A text value of one row from an independent connection ("" for NULL). */
static void sql_text(const char *db_path, const char *query, char *out, size_t cap) {
    if (hlptd_store_is_pg(db_path)) {
        char *rows = pg_rows(db_path, query);
        ck_assert_msg(rows[0], "%s: no row", query);
        rows[strcspn(rows, "\t\n")] = 0;
        snprintf(out, cap, "%s", rows);
        free(rows);
        return;
    }
    sqlite3 *db;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, query, -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(s, 0);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static off_t file_size(const char *p) {
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    return sb.st_size;
}

START_TEST(test_migrations_table) {
    ck_assert_int_ge(hlptd_migrations_count, 5);
    for (int i = 0; i < hlptd_migrations_count; i++) {
        ck_assert_int_eq(hlptd_migrations[i].version, i + 1);
        ck_assert_ptr_nonnull(strstr(hlptd_migrations[i].sql, "CREATE") ? hlptd_migrations[i].sql
                                                                        : strstr(hlptd_migrations[i].sql, "ALTER"));
    }
    ck_assert_str_eq(hlptd_migrations[0].name, "0001_init");
    /* PostgreSQL's follow each other up to SQLite's last: one schema version for both. */
    ck_assert_int_ge(hlptd_pg_migrations_count, 1);
    for (int i = 1; i < hlptd_pg_migrations_count; i++)
        ck_assert_int_eq(hlptd_pg_migrations[i].version, hlptd_pg_migrations[i - 1].version + 1);
    ck_assert_int_eq(hlptd_pg_migrations[hlptd_pg_migrations_count - 1].version, hlptd_migrations_count);
}
END_TEST

START_TEST(test_migrate_from_scratch) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_version(st), hlptd_migrations_count);
    hlptd_store_close(st);
    /* Opening again applies nothing and changes nothing. */
    char *before = schema_of(where);
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_store_close(st);
    char *after = schema_of(where);
    ck_assert_str_eq(before, after);
    if (pg_db[0]) {
        ck_assert_ptr_nonnull(strstr(after, "column files.seq bigint NO"));
        ck_assert_ptr_nonnull(strstr(after, "CREATE INDEX job_events_by_job"));
        ck_assert_ptr_null(strstr(after, "bytea"));
    } else {
        ck_assert_ptr_nonnull(strstr(after, "CREATE TABLE \"files\""));
        ck_assert_ptr_nonnull(strstr(after, "CREATE INDEX job_events_by_job"));
        /* No table holds artefact bytes. */
        ck_assert_ptr_null(strstr(after, "BLOB"));
    }
    free(before);
    free(after);
    ck_assert_int_eq(hlptd_store_open(&st, where, NULL, why, sizeof why), HLPT_ERR_INVAL);
}
END_TEST

/* Rows of every table that held bytes, as hlptd of schema v (1 to 4) wrote them: a file, a job on
 * it, a checkpoint and an adapter. */
static void old_rows(const char *db_path) {
    sql(db_path,
        "INSERT INTO files (id, filename, purpose, bytes, created_at, status, content) VALUES "
        "('file-a', 'a.jsonl', 'fine-tune', 2, 1, 'processed', x'780a');"
        "INSERT INTO jobs (id, status, model, training_file, method, hyperparameters, seed, created_at) VALUES "
        "('ftjob-a', 'succeeded', 'base', 'file-a', '{}', '{}', 1, 1);"
        "INSERT INTO checkpoints (id, job_id, step, state, created_at) VALUES ('ftckpt-a', 'ftjob-a', 5, x'0102030405', 1);"
        "INSERT INTO adapters (id, name, config, weights, job_id, checkpoint_id, created_at, bytes) VALUES "
        "('ad-a', 'ft:a', '{}', x'5745494748545321', 'ftjob-a', 'ftckpt-a', 1, 8);");
}

/* From every version v < head: a database left at v (with rows in it when its tables exist)
 * migrates to head, keeps its rows, has its bytes moved out as blobs and ends with the same schema
 * as a fresh one. */
START_TEST(test_migrate_from_each_version) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_store_close(st);
    char *fresh = schema_of(path);
    teardown();
    for (int v = 0; v < hlptd_migrations_count; v++) {
        setup();
        ck_assert_int_eq(hlptd_store_open_at(&st, where, v, blobs, why, sizeof why), HLPT_OK);
        ck_assert_int_eq(hlptd_store_version(st), v);
        hlptd_store_close(st);
        int rows = v >= 1 && v <= 4; /* the schemas that held bytes */
        if (rows) old_rows(path);
        ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
        ck_assert_int_eq(hlptd_store_version(st), hlptd_migrations_count);
        if (rows) {
            hlptd_file *f;
            ck_assert_int_eq(hlptd_store_file_get(st, "file-a", &f, why, sizeof why), HLPT_OK);
            ck_assert_str_eq(f->filename, "a.jsonl");
            blob_is(f->sha256, "x\n", 2);
            hlptd_file_free(f);
            hlptd_checkpoint *c;
            ck_assert_int_eq(hlptd_store_checkpoint_latest(st, "ftjob-a", &c, why, sizeof why), HLPT_OK);
            ck_assert_int_eq(c->bytes, 5);
            blob_is(c->sha256, "\1\2\3\4\5", 5);
            hlptd_checkpoint_free(c);
            hlptd_adapter_rec *a;
            ck_assert_int_eq(hlptd_store_adapter_get(st, "ft:a", &a, why, sizeof why), HLPT_OK);
            ck_assert_int_eq(a->bytes, 8);
            ck_assert_str_eq(a->checkpoint_id, "ftckpt-a");
            blob_is(a->sha256, "WEIGHTS!", 8);
            hlptd_adapter_rec_free(a);
            ck_assert_int_eq(blob_count(), 3);
        }
        hlptd_store_close(st);
        char *got = schema_of(path);
        ck_assert_str_eq(got, fresh);
        free(got);
        teardown();
    }
    setup();
    free(fresh);
}
END_TEST

/* A data dir of schema 3 with big BLOBs: they come out as blobs of equal bytes (one blob for bytes
 * two rows hold), a deleted file gets none, the BLOB columns are gone, and the database file
 * shrinks (VACUUM). */
START_TEST(test_migrate_v3_moves_bytes_out) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open_at(&st, where, 3, blobs, why, sizeof why), HLPT_OK);
    hlptd_store_close(st);
    enum { BIG = 1 << 20 };
    unsigned char *big = malloc(BIG);
    for (int i = 0; i < BIG; i++) big[i] = (unsigned char)(i * 7 + (i >> 11));
    sqlite3 *db;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO files (id, filename, purpose, bytes, created_at, status, content)"
                                            " VALUES (?1, 'big.jsonl', 'fine-tune', ?3, 1, 'processed', ?2)", -1, &s, NULL),
                     SQLITE_OK);
    const char *ids[] = {"file-big", "file-twin"};
    for (int i = 0; i < 2; i++) {
        sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, big, BIG, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, BIG);
        ck_assert_int_eq(sqlite3_step(s), SQLITE_DONE);
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    sql(path, "INSERT INTO files (id, filename, purpose, bytes, created_at, status, content, deleted_at) VALUES "
              "('file-gone', 'gone.jsonl', 'fine-tune', 9, 1, 'processed', x'', 5);"
              "INSERT INTO jobs (id, status, model, training_file, method, hyperparameters, seed, created_at) VALUES "
              "('ftjob-a', 'succeeded', 'base', 'file-gone', '{}', '{}', 1, 1);");
    off_t before = file_size(path);
    ck_assert_int_gt(before, 2 * BIG);

    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f, *g;
    ck_assert_int_eq(hlptd_store_file_get(st, "file-big", &f, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_get(st, "file-twin", &g, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(f->sha256, g->sha256);
    blob_is(f->sha256, big, BIG);
    ck_assert_int_eq(blob_count(), 1);
    /* The job still names the deleted file, which has no blob. */
    hlptd_job *j;
    ck_assert_int_eq(hlptd_store_job_get(st, "ftjob-a", &j, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(j->training_file, "file-gone");
    ck_assert_int_eq(j->status, HLPTD_JOB_SUCCEEDED);
    hlptd_job_free(j);
    char sha[80];
    sql_text(path, "SELECT sha256 FROM files WHERE id = 'file-gone'", sha, sizeof sha);
    ck_assert_str_eq(sha, "");
    /* One of the two rows goes: the blob stays for the other; then it goes too. */
    ck_assert_int_eq(hlptd_store_file_delete(st, "file-big", why, sizeof why), HLPT_OK);
    ck_assert(blob_exists(g->sha256));
    ck_assert_int_eq(hlptd_store_file_delete(st, "file-twin", why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(g->sha256));
    hlptd_file_free(f);
    hlptd_file_free(g);
    hlptd_store_close(st);

    char *schema = schema_of(path);
    ck_assert_ptr_null(strstr(schema, "BLOB"));
    free(schema);
    const char *gone[][2] = {{"files", "content"}, {"files", "path"}, {"checkpoints", "state"}, {"adapters", "weights"}};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        char q[160], n[16];
        snprintf(q, sizeof q, "SELECT COUNT(*) FROM pragma_table_info('%s') WHERE name = '%s'", gone[i][0], gone[i][1]);
        sql_text(path, q, n, sizeof n);
        ck_assert_msg(!strcmp(n, "0"), "%s.%s is still there", gone[i][0], gone[i][1]);
    }
    off_t after = file_size(path);
    ck_assert_msg(after < 256 * 1024, "the database is %lld bytes after the migration (%lld before)", (long long)after,
                  (long long)before);
    char ok[64];
    sql_text(path, "PRAGMA integrity_check", ok, sizeof ok);
    ck_assert_str_eq(ok, "ok");
    free(big);
}
END_TEST

START_TEST(test_newer_database_refused) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_store_close(st);
    char text[64];
    snprintf(text, sizeof text, pg_db[0] ? "UPDATE hlpt_schema SET version = %d" : "PRAGMA user_version = %d",
             hlptd_migrations_count + 1);
    sql(where, text);
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_ERR_UNSUPPORTED);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(strstr(why, "newer"));
}
END_TEST

START_TEST(test_ids) {
    char a[HLPTD_ID_MAX], b[HLPTD_ID_MAX];
    ck_assert_int_eq(hlptd_id_new(a, HLPTD_ID_FILE), HLPT_OK);
    ck_assert_int_eq(hlptd_id_new(b, HLPTD_ID_FILE), HLPT_OK);
    ck_assert_uint_eq(strlen(a), strlen("file-") + HLPTD_ID_RANDOM_CHARS);
    ck_assert_int_eq(strncmp(a, "file-", 5), 0);
    ck_assert_str_ne(a, b);
    for (size_t i = 5; a[i]; i++)
        ck_assert_msg(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", a[i]), "base62: %s", a);
    /* Many ids: no duplicates (24 base62 chars = 143 bits). */
    enum { N = 2000 };
    static char ids[N][HLPTD_ID_MAX];
    for (int i = 0; i < N; i++) hlptd_id_new(ids[i], HLPTD_ID_ADAPTER);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) ck_assert_str_ne(ids[i], ids[j]);
}
END_TEST

START_TEST(test_files_crud) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f[5];
    for (int i = 0; i < 5; i++) {
        char name[24], content[32];
        snprintf(name, sizeof name, "f%d.jsonl", i);
        snprintf(content, sizeof content, "{\"text\":\"%d\"}\n", i);
        f[i] = add_file(st, name, content);
        ck_assert_int_eq(strncmp(f[i]->id, "file-", 5), 0);
        ck_assert_int_eq(f[i]->bytes, (int64_t)strlen(content));
        ck_assert_str_eq(f[i]->stats, "{\"examples\":1}");
        ck_assert_ptr_null(f[i]->error);
        blob_is(f[i]->sha256, content, strlen(content));
    }
    /* Newest first, in pages of 2. */
    hlptd_file **v;
    size_t n;
    int more;
    ck_assert_int_eq(hlptd_store_file_list(st, NULL, 2, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(more);
    ck_assert_str_eq(v[0]->id, f[4]->id);
    ck_assert_str_eq(v[1]->id, f[3]->id);
    ck_assert_str_eq(v[1]->sha256, f[3]->sha256);
    hlptd_file_list_free(v, n);
    ck_assert_int_eq(hlptd_store_file_list(st, f[3]->id, 2, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(more);
    ck_assert_str_eq(v[0]->id, f[2]->id);
    hlptd_file_list_free(v, n);
    ck_assert_int_eq(hlptd_store_file_list(st, f[1]->id, 2, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(!more);
    ck_assert_str_eq(v[0]->id, f[0]->id);
    hlptd_file_list_free(v, n);
    ck_assert_int_eq(hlptd_store_file_list(st, "file-nope", 2, &v, &n, &more, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(v);

    /* A row names only a blob that is there, of the size it says. */
    hlptd_file *g;
    char sha[HLPT_SHA256_HEX];
    hlpt_sha256_hex("not stored", 10, sha);
    ck_assert_int_eq(
        hlptd_store_file_insert(st, "x", "fine-tune", "processed", sha, 10, NULL, 1, NULL, &g, why, sizeof why),
        HLPT_ERR_NOENT);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(hlptd_store_file_insert(st, "x", "fine-tune", "processed", f[0]->sha256, 3, NULL, 1, NULL, &g, why,
                                            sizeof why),
                     HLPT_ERR_INVAL);
    ck_assert_int_eq(hlptd_store_file_insert(st, "x", "fine-tune", "processed", "../../x", 3, NULL, 1, NULL, &g, why,
                                            sizeof why),
                     HLPT_ERR_INVAL);

    /* Deleting a file frees its bytes on disk. */
    ck_assert_int_eq(blob_count(), 5);
    ck_assert_int_eq(hlptd_store_file_delete(st, f[2]->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(f[2]->sha256));
    ck_assert_int_eq(blob_count(), 4);
    ck_assert_int_eq(hlptd_store_file_get(st, f[2]->id, &g, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(why, f[2]->id));
    ck_assert_int_eq(hlptd_store_file_delete(st, f[2]->id, why, sizeof why), HLPT_ERR_NOENT);

    /* Two files of the same bytes share one blob, which outlives the first delete. */
    hlptd_file *twin = add_file(st, "twin.jsonl", "{\"text\":\"0\"}\n");
    ck_assert_str_eq(twin->sha256, f[0]->sha256);
    ck_assert_int_eq(blob_count(), 4);
    ck_assert_int_eq(hlptd_store_file_delete(st, f[0]->id, why, sizeof why), HLPT_OK);
    ck_assert(blob_exists(twin->sha256));
    ck_assert_int_eq(hlptd_store_file_delete(st, twin->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(twin->sha256));
    hlptd_file_free(twin);
    for (int i = 0; i < 5; i++) hlptd_file_free(f[i]);
    hlptd_store_close(st);
}
END_TEST

static hlptd_job *make_job(hlptd_store *st, const char *file_id) {
    hlptd_job_fields in = {.status = HLPTD_JOB_QUEUED, .model = "base", .training_file = file_id,
                       .method = "{\"type\":\"hlpt\"}", .hyperparameters = "{\"n_epochs\":3}", .seed = 42, .suffix = "x"};
    hlptd_job *j;
    ck_assert_int_eq(hlptd_store_job_insert(st, &in, &j, why, sizeof why), HLPT_OK);
    return j;
}

static hlptd_job_state state_of(hlptd_store *st, const char *id) {
    hlptd_job *j;
    ck_assert_int_eq(hlptd_store_job_get(st, id, &j, why, sizeof why), HLPT_OK);
    hlptd_job_state s = j->status;
    hlptd_job_free(j);
    return s;
}

START_TEST(test_jobs_crud) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");

    hlptd_job_fields bad = {.status = HLPTD_JOB_QUEUED, .model = "base", .training_file = "file-missing", .method = "{}",
                        .hyperparameters = "{}"};
    hlptd_job *j;
    ck_assert_int_eq(hlptd_store_job_insert(st, &bad, &j, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "training_file"));
    bad.training_file = f->id;
    bad.validation_file = "file-missing";
    ck_assert_int_eq(hlptd_store_job_insert(st, &bad, &j, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "validation_file"));

    hlptd_job *a = make_job(st, f->id), *b = make_job(st, f->id);
    ck_assert_int_eq(strncmp(a->id, "ftjob-", 6), 0);
    ck_assert_int_eq(a->status, HLPTD_JOB_QUEUED);
    ck_assert_str_eq(a->training_file, f->id);
    ck_assert_ptr_null(a->validation_file);
    ck_assert_int_eq(a->seed, 42);
    ck_assert_int_eq(a->started_at, 0);
    ck_assert_int_lt(a->queue_order, b->queue_order);

    hlptd_job *next;
    ck_assert_int_eq(hlptd_store_job_next_queued(st, &next, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(next->id, a->id);
    hlptd_job_free(next);

    ck_assert_int_eq(hlptd_store_job_set_status(st, a->id, HLPTD_JOB_RUNNING, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_progress(st, a->id, 10, 100, 0.25, 1234.5, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_get(st, a->id, &j, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(j->status, HLPTD_JOB_RUNNING);
    ck_assert_int_gt(j->started_at, 0);
    ck_assert_int_eq(j->finished_at, 0);
    ck_assert_int_eq(j->step, 10);
    ck_assert_int_eq(j->total_steps, 100);
    ck_assert_double_eq(j->epoch, 0.25);
    ck_assert_double_eq(j->tokens_per_s, 1234.5);
    hlptd_job_free(j);
    /* The store keeps the state's name, as the REST API shows it. */
    char text[64], q[160];
    snprintf(q, sizeof q, "SELECT status FROM jobs WHERE id = '%s'", a->id);
    sql_text(where, q, text, sizeof text);
    ck_assert_str_eq(text, "running");

    ck_assert_int_eq(hlptd_store_job_next_queued(st, &next, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(next->id, b->id);
    hlptd_job_free(next);

    char **ids;
    size_t n;
    ck_assert_int_eq(hlptd_store_job_ids_with_status(st, HLPTD_JOB_RUNNING, &ids, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ids[0], a->id);
    hlptd_store_ids_free(ids, n);

    ck_assert_int_eq(hlptd_store_job_set_status(st, a->id, HLPTD_JOB_FAILED, "{\"code\":\"x\"}", why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_fine_tuned_model(st, a->id, "base:x", why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_get(st, a->id, &j, why, sizeof why), HLPT_OK);
    ck_assert_int_gt(j->finished_at, 0);
    ck_assert_str_eq(j->error, "{\"code\":\"x\"}");
    ck_assert_str_eq(j->fine_tuned_model, "base:x");
    hlptd_job_free(j);

    /* Nothing moves a job out of a final state; re-asserting the state it is in changes nothing. */
    ck_assert_int_eq(hlptd_store_job_set_status(st, a->id, HLPTD_JOB_QUEUED, NULL, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(why, "failed"));
    ck_assert_ptr_nonnull(strstr(why, "queued"));
    ck_assert_int_eq(state_of(st, a->id), HLPTD_JOB_FAILED);
    ck_assert_int_eq(hlptd_store_job_set_status(st, a->id, HLPTD_JOB_FAILED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_status(st, b->id, HLPTD_JOB_PAUSED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_status(st, b->id, HLPTD_JOB_PAUSED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_status(st, b->id, HLPTD_JOB_RUNNING, NULL, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_int_eq(state_of(st, b->id), HLPTD_JOB_PAUSED);
    ck_assert_int_eq(hlptd_store_job_set_status(st, b->id, HLPTD_JOB_QUEUED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_status(st, b->id, (hlptd_job_state)99, NULL, why, sizeof why), HLPT_ERR_INVAL);

    hlptd_job **v;
    int more;
    ck_assert_int_eq(hlptd_store_job_list(st, NULL, 10, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(!more);
    ck_assert_str_eq(v[0]->id, b->id);
    hlptd_job_list_free(v, n);

    /* A file named by a queued job cannot be deleted. */
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_ERR_STATE);
    ck_assert(blob_exists(f->sha256));
    ck_assert_int_eq(hlptd_store_job_set_status(st, "ftjob-none", HLPTD_JOB_RUNNING, NULL, why, sizeof why),
                     HLPT_ERR_NOENT);

    ck_assert_int_eq(hlptd_store_job_delete(st, a->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_get(st, a->id, &j, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_job_delete(st, b->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_delete(st, b->id, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(f->sha256));
    hlptd_job_free(a);
    hlptd_job_free(b);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

START_TEST(test_events_metrics_checkpoints) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");
    hlptd_job *j = make_job(st, f->id);

    /* events */
    hlptd_job_event *e1, *e2;
    ck_assert_int_eq(hlptd_store_event_add(st, j->id, "info", "created", NULL, &e1, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_event_add(st, j->id, "warn", "slow", "{\"s\":1}", &e2, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(strncmp(e1->id, "ftevent-", 8), 0);
    ck_assert_int_lt(e1->seq, e2->seq);
    ck_assert_str_eq(e2->data, "{\"s\":1}");
    ck_assert_str_eq(e2->job_id, j->id);
    ck_assert_int_eq(hlptd_store_event_add(st, "ftjob-none", "info", "x", NULL, NULL, why, sizeof why), HLPT_ERR_NOENT);
    hlptd_job_event **ev;
    size_t n;
    int more;
    ck_assert_int_eq(hlptd_store_event_list(st, j->id, 0, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(ev[0]->message, "created");
    ck_assert_str_eq(ev[1]->level, "warn");
    hlptd_job_event_list_free(ev, n);
    ck_assert_int_eq(hlptd_store_event_list(st, j->id, e1->seq, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ev[0]->id, e2->id);
    hlptd_job_event_list_free(ev, n);
    /* Pages: newest first, after an event id of the same job. */
    ck_assert_int_eq(hlptd_store_event_page(st, j->id, NULL, 1, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(more);
    ck_assert_str_eq(ev[0]->id, e2->id);
    hlptd_job_event_list_free(ev, n);
    ck_assert_int_eq(hlptd_store_event_page(st, j->id, e2->id, 1, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(!more);
    ck_assert_str_eq(ev[0]->id, e1->id);
    hlptd_job_event_list_free(ev, n);
    ck_assert_int_eq(hlptd_store_event_page(st, j->id, e1->id, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 0);
    hlptd_job_event_list_free(ev, n);
    ck_assert_int_eq(hlptd_store_event_page(st, j->id, "ftevent-none", 10, &ev, &n, &more, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "in job"));

    /* metrics: NAN round-trips as "not measured"; a repeated step replaces. */
    hlptd_metric m = {.step = 1, .train_loss = 2.5, .valid_loss = NAN, .valid_acc = NAN, .lr = 1e-3, .tokens_per_s = 100};
    ck_assert_int_eq(hlptd_store_metric_put(st, j->id, &m, why, sizeof why), HLPT_OK);
    m.step = 2, m.train_loss = 2.0, m.valid_loss = 2.2, m.valid_acc = 0.5;
    ck_assert_int_eq(hlptd_store_metric_put(st, j->id, &m, why, sizeof why), HLPT_OK);
    m.train_loss = 1.9;
    ck_assert_int_eq(hlptd_store_metric_put(st, j->id, &m, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_metric_put(st, "ftjob-none", &m, why, sizeof why), HLPT_ERR_NOENT);
    hlptd_metric *mv;
    ck_assert_int_eq(hlptd_store_metric_list(st, j->id, 0, -1, &mv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_double_eq(mv[0].train_loss, 2.5);
    ck_assert(isnan(mv[0].valid_loss));
    ck_assert_double_eq(mv[1].train_loss, 1.9);
    ck_assert_double_eq(mv[1].valid_acc, 0.5);
    ck_assert_int_gt(mv[1].created_at, 0);
    free(mv);
    ck_assert_int_eq(hlptd_store_metric_list(st, j->id, 1, 10, &mv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(mv[0].step, 2);
    free(mv);

    /* A rewind to step 1 drops the later metrics and progress events. */
    ck_assert_int_eq(hlptd_store_event_add(st, j->id, "info", "step 2", "{\"type\":\"progress\",\"step\":2}", NULL, why,
                                          sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(hlptd_store_event_add(st, j->id, "info", "not json", "x{", NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_rewind(st, j->id, 1, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_metric_list(st, j->id, 0, -1, &mv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    free(mv);
    ck_assert_int_eq(hlptd_store_event_list(st, j->id, 0, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(ev[2]->message, "not json");
    hlptd_job_event_list_free(ev, n);

    /* checkpoints */
    hlptd_checkpoint *c1, *c2, *latest;
    ck_assert_int_eq(hlptd_store_checkpoint_latest(st, j->id, &latest, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(latest);
    unsigned char state[300];
    for (int i = 0; i < 300; i++) state[i] = (unsigned char)i;
    char s1[HLPT_SHA256_HEX], s2[HLPT_SHA256_HEX];
    put(state, 300, s1);
    put(state, 10, s2);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, j->id, 100, "{\"loss\":1}", s1, 300, NULL, &c1, why, sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, j->id, 200, NULL, s2, 10, NULL, &c2, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, "ftjob-none", 1, NULL, s2, 10, NULL, NULL, why, sizeof why),
                     HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, j->id, 1, NULL, s2, 11, NULL, NULL, why, sizeof why),
                     HLPT_ERR_INVAL);
    ck_assert_int_eq(strncmp(c1->id, "ftckpt-", 7), 0);
    ck_assert_int_eq(c1->bytes, 300);
    ck_assert_str_eq(c1->sha256, s1);
    ck_assert_str_eq(c1->job_id, j->id);
    ck_assert_int_eq(hlptd_store_checkpoint_latest(st, j->id, &latest, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(latest->id, c2->id);
    hlptd_checkpoint_free(latest);
    ck_assert_int_eq(hlptd_store_checkpoint_at_step(st, j->id, 100, &latest, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(latest->id, c1->id);
    hlptd_checkpoint_free(latest);
    ck_assert_int_eq(hlptd_store_checkpoint_at_step(st, j->id, 150, &latest, why, sizeof why), HLPT_ERR_NOENT);
    hlptd_checkpoint **cv;
    ck_assert_int_eq(hlptd_store_checkpoint_list(st, j->id, &cv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(cv[0]->step, 100);
    ck_assert_str_eq(cv[0]->metrics, "{\"loss\":1}");
    hlptd_checkpoint_list_free(cv, n);
    ck_assert_int_eq(hlptd_store_checkpoint_page(st, j->id, c2->id, 10, &cv, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(cv[0]->id, c1->id);
    hlptd_checkpoint_list_free(cv, n);
    ck_assert_int_eq(hlptd_store_checkpoint_delete(st, c1->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(s1));
    ck_assert_int_eq(hlptd_store_checkpoint_delete(st, c1->id, why, sizeof why), HLPT_ERR_NOENT);

    /* Deleting the job takes its events, metrics and checkpoints with it, and their blobs. */
    ck_assert_int_eq(hlptd_store_job_delete(st, j->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_event_list(st, j->id, 0, 10, &ev, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 0);
    free(ev);
    ck_assert_int_eq(hlptd_store_metric_list(st, j->id, 0, -1, &mv, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 0);
    free(mv);
    ck_assert_int_eq(hlptd_store_checkpoint_latest(st, j->id, &latest, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(latest);
    ck_assert(!blob_exists(s2));
    ck_assert(blob_exists(f->sha256));

    hlptd_job_event_free(e1);
    hlptd_job_event_free(e2);
    hlptd_checkpoint_free(c1);
    hlptd_checkpoint_free(c2);
    hlptd_job_free(j);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

START_TEST(test_adapters_crud) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");
    hlptd_job *j = make_job(st, f->id);
    char w[HLPT_SHA256_HEX];
    put("SAFETENSORS", 11, w);
    hlptd_adapter_fields in = {.name = "my-adapter", .config = "{\"peft_type\":\"HLPT\"}", .sha256 = w, .bytes = 11,
                               .base_hash = "abc", .job_id = j->id};
    hlptd_adapter_rec *a, *g;
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &in, &a, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(strncmp(a->id, "ad-", 3), 0);
    ck_assert_int_eq(a->bytes, 11);
    ck_assert_str_eq(a->sha256, w);
    ck_assert_str_eq(a->job_id, j->id);
    ck_assert_ptr_null(a->checkpoint_id);
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &in, &g, why, sizeof why), HLPT_ERR_EXISTS);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(why, "my-adapter"));
    ck_assert_int_eq(hlptd_store_adapter_get(st, "my-adapter", &g, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(g->id, a->id);
    hlptd_adapter_rec_free(g);
    ck_assert_int_eq(hlptd_store_adapter_get(st, a->id, &g, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(g->config, "{\"peft_type\":\"HLPT\"}");
    hlptd_adapter_rec_free(g);
    in.name = "orphan";
    in.job_id = "ftjob-none";
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &in, &g, why, sizeof why), HLPT_ERR_NOENT);
    /* The same weights under a second name: one blob for both. */
    in.name = "second";
    in.job_id = NULL;
    hlptd_adapter_rec *b;
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &in, &b, why, sizeof why), HLPT_OK);
    hlptd_adapter_rec **v;
    size_t n;
    int more;
    ck_assert_int_eq(hlptd_store_adapter_list(st, NULL, 1, &v, &n, &more, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(more);
    ck_assert_str_eq(v[0]->name, "second");
    hlptd_adapter_rec_list_free(v, n);
    /* The adapter outlives its job. */
    ck_assert_int_eq(hlptd_store_job_delete(st, j->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_adapter_get(st, a->id, &g, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(g->job_id);
    hlptd_adapter_rec_free(g);
    ck_assert_int_eq(hlptd_store_adapter_delete(st, a->id, why, sizeof why), HLPT_OK);
    ck_assert(blob_exists(w));
    ck_assert_int_eq(hlptd_store_adapter_get(st, a->id, &g, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_adapter_delete(st, a->id, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_adapter_delete(st, b->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(w));
    hlptd_adapter_rec_free(a);
    hlptd_adapter_rec_free(b);
    hlptd_job_free(j);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

/* OpenAI's job fields (migration 0003), and deleting a file that only finished jobs name: the row
 * stays without its blob, hidden from every file function, and the jobs keep naming it. */
START_TEST(test_job_results_and_file_tombstone) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "xy");
    hlptd_job_fields in = {.status = HLPTD_JOB_QUEUED, .model = "base", .training_file = f->id, .method = "{}",
                       .hyperparameters = "{}", .seed = 1, .metadata = "{\"k\":\"v\"}", .integrations = "[]"};
    hlptd_job *j, *g;
    ck_assert_int_eq(hlptd_store_job_insert(st, &in, &j, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(j->metadata, "{\"k\":\"v\"}");
    ck_assert_str_eq(j->integrations, "[]");
    ck_assert_int_eq(j->trained_tokens, -1);
    ck_assert_ptr_null(j->result_file);
    ck_assert_int_eq(hlptd_store_job_set_status(st, j->id, HLPTD_JOB_PAUSED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_int_eq(hlptd_store_job_set_status(st, j->id, HLPTD_JOB_SUCCEEDED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_results(st, j->id, 1234, "file-results", why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(f->sha256));
    hlptd_file *gone;
    ck_assert_int_eq(hlptd_store_file_get(st, f->id, &gone, why, sizeof why), HLPT_ERR_NOENT);
    hlptd_file_free(f);
    ck_assert_int_eq(hlptd_store_file_delete(st, j->training_file, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_job_get(st, j->id, &g, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(g->training_file, j->training_file);
    ck_assert_int_eq(g->trained_tokens, 1234);
    ck_assert_str_eq(g->result_file, "file-results");
    hlptd_job_free(g);
    hlptd_job_free(j);
    /* A file no job names is removed outright. */
    f = add_file(st, "u.jsonl", "x");
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(f->sha256));
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

/* A transaction applies all or nothing: a delete rolled back keeps its row and its blob; a blob
 * whose row goes and which a row inserted in the same transaction names again stays. */
START_TEST(test_transactions_and_blobs) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "one\n");
    ck_assert_int_eq(hlptd_store_commit(st, why, sizeof why), HLPT_ERR_STATE);
    hlptd_store_rollback(st); /* nothing open: nothing happens */

    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    ck_assert(blob_exists(f->sha256));
    hlptd_store_rollback(st);
    hlptd_file *g;
    ck_assert_int_eq(hlptd_store_file_get(st, f->id, &g, why, sizeof why), HLPT_OK);
    hlptd_file_free(g);
    ck_assert(blob_exists(f->sha256));

    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_insert(st, "again.jsonl", "fine-tune", "processed", f->sha256, 4, NULL, 1, NULL, &g, why,
                                            sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(hlptd_store_commit(st, why, sizeof why), HLPT_OK);
    ck_assert(blob_exists(f->sha256));
    ck_assert_int_eq(hlptd_store_file_delete(st, g->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(f->sha256));
    hlptd_file_free(g);

    /* The sweep removes every blob no row names, and only those. */
    hlptd_file *h = add_file(st, "kept.jsonl", "kept\n");
    char orphan[HLPT_SHA256_HEX];
    put("orphan one", 10, orphan);
    put("orphan two", 10, orphan);
    ck_assert_int_eq(blob_count(), 3);
    size_t removed = 0;
    ck_assert_int_eq(hlptd_store_blob_sweep(st, &removed, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(removed, 2);
    ck_assert_int_eq(blob_count(), 1);
    ck_assert(blob_exists(h->sha256));
    hlptd_file_free(h);
    hlptd_file_free(f);

    /* Closing with a transaction open rolls it back. */
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    f = add_file(st, "lost.jsonl", "lost\n");
    hlptd_store_close(st);
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_get(st, f->id, &g, why, sizeof why), HLPT_ERR_NOENT);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

/* ---- PostgreSQL ------------------------------------------------------------------------------ */

/* URLs: a store is PostgreSQL by its scheme; one libpq cannot read, or whose server does not answer,
 * fails the open with the host named and the password nowhere. Needs no server. */
START_TEST(test_pg_urls) {
    ck_assert(hlptd_store_is_pg("postgres://h/d"));
    ck_assert(hlptd_store_is_pg("postgresql:///d?host=/tmp/x"));
    ck_assert(!hlptd_store_is_pg("/var/lib/hlptd/hlpt.db"));
    ck_assert(!hlptd_store_is_pg("postgres:/h/d"));
    char text[256];
    hlptd_store_describe("postgresql://ann:s3cretpw@db.example:6543/prod?sslmode=require", text, sizeof text);
    ck_assert_str_eq(text, "PostgreSQL database prod on db.example port 6543 as user ann");
    hlptd_store_describe(path, text, sizeof text);
    ck_assert_ptr_nonnull(strstr(text, path));

    hlptd_store *st;
    const char *refused = "postgresql://ann:s3cretpw@127.0.0.1:1/prod?connect_timeout=5";
    ck_assert_int_eq(hlptd_store_check(refused, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_open(&st, refused, blobs, why, sizeof why), HLPT_ERR_DB);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(why, "cannot connect") && strstr(why, "127.0.0.1 port 1") && !strstr(why, "s3cretpw"), "%s", why);

    /* A bad percent-escape in the password: libpq quotes the token it could not read. */
    const char *bad = "postgresql://ann:s3c%zzret@db.example/prod";
    ck_assert_int_eq(hlptd_store_check(bad, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_msg(strstr(why, "URL") && !strstr(why, "zzret"), "%s", why);
    ck_assert_int_eq(hlptd_store_open(&st, bad, blobs, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_msg(!strstr(why, "zzret"), "%s", why);
    ck_assert_int_eq(hlptd_store_open(&st, "postgresql://h/d?no_such_option=1", blobs, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_msg(strstr(why, "no_such_option"), "%s", why);
}
END_TEST

/* SQLite's schema as PostgreSQL's is compared: columns in order with their types and NOT NULL,
 * foreign keys with their ON DELETE, unique constraints, CHECKs and indexes. */
#define SQ_SHAPE                                                                                         \
    "SELECT 'column ' || m.name || '.' || printf('%02d', c.cid + 1) || ' ' || c.name || ' ' ||"           \
    " CASE lower(c.type) WHEN 'integer' THEN 'bigint' WHEN 'real' THEN 'double precision' ELSE lower(c.type) END" \
    " || ' ' || (c.\"notnull\" OR c.pk > 0) FROM sqlite_master m, pragma_table_info(m.name) c WHERE m.type = 'table'" \
    " UNION ALL SELECT 'fk ' || m.name || '.' || f.\"from\" || ' ' || f.\"table\" || '.' || f.\"to\" || ' ' || f.on_delete" \
    " FROM sqlite_master m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table'"                    \
    " UNION ALL SELECT 'unique ' || m.name || ' ' || (SELECT group_concat(ii.name) FROM pragma_index_info(il.name) ii)" \
    " FROM sqlite_master m, pragma_index_list(m.name) il WHERE m.type = 'table' AND il.origin = 'u'"      \
    " UNION ALL SELECT 'index ' || il.name || ' ' || m.name || ' ' ||"                                   \
    " (SELECT group_concat(ii.name) FROM pragma_index_info(il.name) ii)"                                 \
    " FROM sqlite_master m, pragma_index_list(m.name) il WHERE m.type = 'table' AND il.origin = 'c'"      \
    " UNION ALL SELECT 'check ' || name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%CHECK (%'" \
    " ORDER BY 1"
#define PG_SHAPE                                                                                         \
    "SELECT 'column ' || table_name || '.' || lpad(ordinal_position::text, 2, '0') || ' ' || column_name ||" \
    " ' ' || data_type || ' ' || CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END"                         \
    " FROM information_schema.columns WHERE table_schema = current_schema() AND table_name <> 'hlpt_schema'" \
    " UNION ALL SELECT 'fk ' || c.conrelid::regclass || '.' || a.attname || ' ' || c.confrelid::regclass || '.' ||" \
    " fa.attname || ' ' || CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' ELSE 'NO ACTION' END" \
    " FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"    \
    " JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]"                    \
    " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"                         \
    " UNION ALL SELECT 'unique ' || c.conrelid::regclass || ' ' || (SELECT string_agg(a.attname, ',' ORDER BY k.i)" \
    " FROM unnest(c.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n)" \
    " FROM pg_constraint c WHERE c.contype = 'u' AND c.connamespace = current_schema()::regnamespace"     \
    " UNION ALL SELECT 'index ' || i.relname || ' ' || x.indrelid::regclass || ' ' ||"                   \
    " (SELECT string_agg(a.attname, ',' ORDER BY k.i) FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, i)" \
    " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n)"                                \
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"                                           \
    " WHERE NOT x.indisunique AND i.relnamespace = current_schema()::regnamespace"                       \
    " UNION ALL SELECT 'check ' || conrelid::regclass FROM pg_constraint"                                \
    " WHERE contype = 'c' AND connamespace = current_schema()::regnamespace"                             \
    " ORDER BY 1"

START_TEST(test_pg_schema_is_sqlites) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_version(st), hlptd_migrations_count);
    hlptd_store_close(st);
    ck_assert_int_eq(hlptd_store_open(&st, path, blobs, why, sizeof why), HLPT_OK);
    hlptd_store_close(st);
    char *pg = pg_rows(where, PG_SHAPE);
    sqlite3 *db;
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_prepare_v2(db, SQ_SHAPE, -1, &q, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
    size_t cap = 1 << 16, n = 0;
    char *sq = calloc(1, cap);
    while (sqlite3_step(q) == SQLITE_ROW) {
        n += (size_t)snprintf(sq + n, cap - n, "%s\n", (const char *)sqlite3_column_text(q, 0));
        ck_assert_uint_lt(n, cap);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    ck_assert_ptr_nonnull(strstr(sq, "fk adapters.checkpoint_id checkpoints.id SET NULL"));
    ck_assert_ptr_nonnull(strstr(sq, "index files_by_sha256 files sha256"));
    ck_assert_str_eq(pg, sq);
    free(pg);
    free(sq);
    /* A version between none and PostgreSQL's first is not there to open. */
    ck_assert_int_eq(hlptd_store_open_at(&st, where, 3, blobs, why, sizeof why), HLPT_ERR_UNSUPPORTED);
}
END_TEST

static void *open_in_thread(void *arg) {
    char w[256];
    hlptd_store *st;
    intptr_t err = hlptd_store_open(&st, where, blobs, w, sizeof w);
    hlptd_store_close(st);
    (void)arg;
    return (void *)err;
}

/* Several hlptd starting at once on a new database: one of them migrates it, each opens it. */
START_TEST(test_pg_concurrent_open) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, open_in_thread, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *err;
        pthread_join(t[i], &err);
        ck_assert_int_eq((intptr_t)err, HLPT_OK);
    }
    char v[16];
    sql_text(where, "SELECT count(*) || ' ' || max(version) FROM hlpt_schema", v, sizeof v);
    char want[16];
    snprintf(want, sizeof want, "1 %d", hlptd_migrations_count);
    ck_assert_str_eq(v, want);
}
END_TEST

/* The server drops the connection (a restart, an administrator): the statement in flight fails,
 * the next one outside a transaction runs on a new connection; a transaction never continues on
 * one. */
START_TEST(test_pg_reconnects) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x"), *g;
    char kill[256];
    snprintf(kill, sizeof kill,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' AND pid <> pg_backend_pid()",
             pg_db);
    sql(where, kill);
    ck_assert_int_eq(hlptd_store_file_get(st, f->id, &g, why, sizeof why), HLPT_ERR_DB);
    ck_assert_int_eq(hlptd_store_file_get(st, f->id, &g, why, sizeof why), HLPT_OK);
    hlptd_file_free(g);

    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    sql(where, kill);
    ck_assert_int_ne(hlptd_store_file_get(st, f->id, &g, why, sizeof why), HLPT_OK);
    ck_assert_int_ne(hlptd_store_commit(st, why, sizeof why), HLPT_OK);
    /* The delete was not applied, and its blob is there. */
    ck_assert_int_eq(hlptd_store_file_get(st, f->id, &g, why, sizeof why), HLPT_OK);
    hlptd_file_free(g);
    ck_assert(blob_exists(f->sha256));
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST


/* The race a delete used to lose: an upload of bytes X is written (sealed) while file A names X;
 * A is deleted, which removes X since no row names it; then the upload's row goes in. The insert
 * puts X into place itself, so B is stored and X is there. */
START_TEST(test_upload_sealed_while_its_bytes_are_deleted) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    const char *x = "{\"text\":\"same\"}\n";
    hlptd_file *a = add_file(st, "a.jsonl", x);
    char sha[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX];
    seal(x, strlen(x), sha, tmp);
    ck_assert_str_eq(sha, a->sha256);
    ck_assert_int_eq(hlptd_store_file_delete(st, a->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(sha));
    hlptd_file *b;
    ck_assert_msg(hlptd_store_file_insert(st, "b.jsonl", "fine-tune", "processed", sha, (int64_t)strlen(x), tmp, 1, NULL,
                                         &b, why, sizeof why) == HLPT_OK,
                  "%s", why);
    ck_assert_str_eq(b->sha256, sha);
    blob_is(sha, x, strlen(x));
    ck_assert_int_eq(tmp_count(), 0);
    /* Sealed while B names X, deleted after: the adopted bytes replace the same bytes in place. */
    seal(x, strlen(x), sha, tmp);
    hlptd_file *c;
    ck_assert_int_eq(hlptd_store_file_insert(st, "c.jsonl", "fine-tune", "processed", sha, (int64_t)strlen(x), tmp, 1,
                                            NULL, &c, why, sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_delete(st, b->id, why, sizeof why), HLPT_OK);
    blob_is(sha, x, strlen(x));
    ck_assert_int_eq(hlptd_store_file_delete(st, c->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(sha));
    ck_assert_int_eq(tmp_count(), 0);
    hlptd_file_free(a);
    hlptd_file_free(b);
    hlptd_file_free(c);
    hlptd_store_close(st);
}
END_TEST

/* A job B that reruns job A exactly writes the same adapter weights W. A's adapter is deleted
 * between B's worker sealing W and B's done line: B's success (adapter, results file, status, in
 * one transaction) still stores, and W is there. A checkpoint line of B's, too. */
START_TEST(test_job_done_while_same_weights_are_deleted) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");
    hlptd_job *ja = make_job(st, f->id), *jb = make_job(st, f->id);
    const char *weights = "SAFETENSORS of a rerun", *state = "checkpoint state";
    char w[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX], cs[HLPT_SHA256_HEX], ctmp[HLPTD_BLOB_TMP_MAX];
    /* A's worker: a checkpoint and the adapter, each sealed and adopted by its insert. */
    seal(state, strlen(state), cs, ctmp);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, ja->id, 1, NULL, cs, (int64_t)strlen(state), ctmp, NULL, why,
                                                  sizeof why),
                     HLPT_OK);
    seal(weights, strlen(weights), w, tmp);
    hlptd_adapter_fields in = {.name = "ft:a", .config = "{}", .sha256 = w, .bytes = (int64_t)strlen(weights),
                               .tmp = tmp, .job_id = ja->id};
    hlptd_adapter_rec *a;
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &in, &a, why, sizeof why), HLPT_OK);
    /* B's worker seals the same checkpoint state and the same weights. */
    seal(state, strlen(state), cs, ctmp);
    seal(weights, strlen(weights), w, tmp);
    /* A goes: its job with its checkpoint, then its adapter. Both blobs are unnamed and removed. */
    ck_assert_int_eq(hlptd_store_job_delete(st, ja->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_adapter_delete(st, a->id, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(w));
    ck_assert(!blob_exists(cs));
    /* B's checkpoint line. */
    ck_assert_msg(hlptd_store_checkpoint_insert(st, jb->id, 1, NULL, cs, (int64_t)strlen(state), ctmp, NULL, why,
                                               sizeof why) == HLPT_OK,
                  "%s", why);
    blob_is(cs, state, strlen(state));
    /* B's done line, as server/jobs.c stores it. */
    char rs[HLPT_SHA256_HEX], rtmp[HLPTD_BLOB_TMP_MAX];
    seal("step,train_loss\n", 16, rs, rtmp);
    in.name = "ft:b";
    in.job_id = jb->id;
    hlptd_file *results;
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_msg(hlptd_store_adapter_insert(st, &in, NULL, why, sizeof why) == HLPT_OK, "%s", why);
    ck_assert_int_eq(hlptd_store_file_insert(st, "results.csv", "fine-tune-results", "processed", rs, 16, rtmp, 0, NULL,
                                            &results, why, sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_results(st, jb->id, 10, results->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_set_status(st, jb->id, HLPTD_JOB_SUCCEEDED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_commit(st, why, sizeof why), HLPT_OK);
    blob_is(w, weights, strlen(weights));
    blob_is(rs, "step,train_loss\n", 16);
    ck_assert_int_eq(tmp_count(), 0);
    hlptd_adapter_rec *b;
    ck_assert_int_eq(hlptd_store_adapter_get(st, "ft:b", &b, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(b->sha256, w);
    hlptd_adapter_rec_free(b);
    hlptd_file_free(results);
    hlptd_adapter_rec_free(a);
    hlptd_job_free(ja);
    hlptd_job_free(jb);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

/* A blob an insert adopted goes again when its row is not stored: the insert fails, the caller's
 * transaction rolls back (a job's success that could not be stored: its weights and its results
 * file), or commits without the row. Bytes another row names stay. */
START_TEST(test_adopted_blobs_go_with_a_failed_insert) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "named");
    hlptd_job *j = make_job(st, f->id);
    char w[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX], rs[HLPT_SHA256_HEX], rtmp[HLPTD_BLOB_TMP_MAX];

    /* A rolled-back success takes the weights and the results file with it. */
    seal("weights", 7, w, tmp);
    seal("results", 7, rs, rtmp);
    hlptd_adapter_fields in = {.name = "ft:x", .config = "{}", .sha256 = w, .bytes = 7, .tmp = tmp, .job_id = j->id};
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &in, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_insert(st, "r.csv", "fine-tune-results", "processed", rs, 7, rtmp, 0, NULL, NULL,
                                            why, sizeof why),
                     HLPT_OK);
    ck_assert(blob_exists(w));
    ck_assert(blob_exists(rs));
    hlptd_store_rollback(st);
    ck_assert(!blob_exists(w));
    ck_assert(!blob_exists(rs));
    ck_assert_int_eq(tmp_count(), 0);

    /* An insert that fails on its own: a name taken, a size that is wrong, no such job. */
    seal("weights", 7, w, tmp);
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &in, NULL, why, sizeof why), HLPT_OK);
    char w2[HLPT_SHA256_HEX], tmp2[HLPTD_BLOB_TMP_MAX];
    seal("other weights", 13, w2, tmp2);
    hlptd_adapter_fields dup = {.name = "ft:x", .config = "{}", .sha256 = w2, .bytes = 13, .tmp = tmp2};
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &dup, NULL, why, sizeof why), HLPT_ERR_EXISTS);
    ck_assert(!blob_exists(w2));
    seal("other weights", 13, w2, tmp2);
    dup.name = "ft:y";
    dup.bytes = 12;
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &dup, NULL, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert(!blob_exists(w2));
    seal("state", 5, rs, rtmp);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, "ftjob-none", 1, NULL, rs, 5, rtmp, NULL, why, sizeof why),
                     HLPT_ERR_NOENT);
    ck_assert(!blob_exists(rs));
    /* The same bytes as a stored row's: the failed insert leaves them to that row. */
    seal("weights", 7, w, tmp);
    dup = (hlptd_adapter_fields){.name = "ft:x", .config = "{}", .sha256 = w, .bytes = 7, .tmp = tmp};
    ck_assert_int_eq(hlptd_store_adapter_insert(st, &dup, NULL, why, sizeof why), HLPT_ERR_EXISTS);
    blob_is(w, "weights", 7);
    /* A temporary that is not there, or not a temporary's name. */
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, j->id, 1, NULL, rs, 5, "999999-1", NULL, why, sizeof why),
                     HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, j->id, 1, NULL, rs, 5, "../hlpt.db", NULL, why, sizeof why),
                     HLPT_ERR_INVAL);
    if (!hlptd_store_is_pg(where)) ck_assert_int_eq(access(path, F_OK), 0);

    /* A caller's transaction that commits without the row. */
    seal("state", 5, rs, rtmp);
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, "ftjob-none", 1, NULL, rs, 5, rtmp, NULL, why, sizeof why),
                     HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_store_event_add(st, j->id, "info", "still", NULL, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_commit(st, why, sizeof why), HLPT_OK);
    ck_assert(!blob_exists(rs));
    /* And one that commits with it. */
    seal("state", 5, rs, rtmp);
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_checkpoint_insert(st, j->id, 1, NULL, rs, 5, rtmp, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_commit(st, why, sizeof why), HLPT_OK);
    blob_is(rs, "state", 5);
    ck_assert_int_eq(tmp_count(), 0);

    /* Closing with a transaction open rolls it back, and its adopted blob goes. */
    seal("lost", 4, w2, tmp2);
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_file_insert(st, "lost", "fine-tune", "processed", w2, 4, tmp2, 1, NULL, NULL, why,
                                            sizeof why),
                     HLPT_OK);
    hlptd_store_close(st);
    ck_assert(!blob_exists(w2));
    ck_assert(blob_exists(w));
    ck_assert(blob_exists(rs));
    ck_assert(blob_exists(f->sha256));
    hlptd_job_free(j);
    hlptd_file_free(f);
}
END_TEST

/* The tests of the store's behaviour, on either backend. */
/* Claims: each queued job goes to one node, in queue order, under a lease whose epoch counts the
 * claims; a node's status writes to a job apply only while it holds the job; start-up release
 * gives back only the node's own jobs. */
START_TEST(test_job_claims) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");
    hlptd_job *a = make_job(st, f->id), *b = make_job(st, f->id), *c;
    char *lost = (char *)"unset";
    ck_assert_ptr_null(a->node);
    ck_assert_int_eq(a->lease_epoch, 0);
    ck_assert_int_eq(a->lease_until, 0);
    ck_assert_int_eq(hlptd_store_job_claim(st, "", 60000, &c, NULL, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-1", 0, &c, NULL, why, sizeof why), HLPT_ERR_INVAL);

    ck_assert_int_eq(hlptd_store_job_claim(st, "node-1", 60000, &c, &lost, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(lost);
    ck_assert_str_eq(c->id, a->id);
    ck_assert_int_eq(c->status, HLPTD_JOB_RUNNING);
    ck_assert_str_eq(c->node, "node-1");
    ck_assert_int_gt(c->started_at, 0);
    ck_assert_int_eq(c->lease_epoch, 1);
    /* The lease runs on the database's clock, in ms: a minute from about now. */
    ck_assert_int_gt(c->lease_until, (int64_t)time(NULL) * 1000 + 50000);
    ck_assert_int_lt(c->lease_until, (int64_t)time(NULL) * 1000 + 70000);
    hlptd_job_free(c);
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-2", 60000, &c, NULL, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(c->id, b->id);
    ck_assert_str_eq(c->node, "node-2");
    hlptd_job_free(c);
    /* Nothing queued, and node-1's lease holds: nothing to claim. */
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-1", 60000, &c, NULL, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(c);

    /* node-2 cannot write over node-1's job, nor node-1 under an old claim; node-1 can. */
    hlptd_hold h1 = {"node-1", 1}, h2 = {"node-2", 1}, stale = {"node-1", 0};
    ck_assert_int_eq(hlptd_store_job_set_status_owned(st, a->id, &h2, HLPTD_JOB_FAILED, NULL, why, sizeof why),
                     HLPT_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(why, "node-1"));
    ck_assert_int_eq(hlptd_store_job_set_status_owned(st, a->id, &stale, HLPTD_JOB_FAILED, NULL, why, sizeof why),
                     HLPT_ERR_STATE);
    ck_assert_int_eq(hlptd_store_job_hold(st, a->id, &h2, 60000, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_int_eq(hlptd_store_job_hold(st, a->id, &h1, 60000, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(state_of(st, a->id), HLPTD_JOB_RUNNING);

    /* A pause asked of any node keeps the lease (the worker still stops); the holder's own move
     * out of running gives it up. */
    ck_assert_int_eq(hlptd_store_job_set_status(st, a->id, HLPTD_JOB_PAUSED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_get(st, a->id, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_gt(c->lease_until, 0);
    hlptd_job_free(c);
    ck_assert_int_eq(hlptd_store_job_set_status(st, a->id, HLPTD_JOB_QUEUED, NULL, why, sizeof why), HLPT_OK);
    /* Queued again but still held: no node may claim it until the holder gives it up. */
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-2", 60000, &c, NULL, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(hlptd_store_job_set_status_owned(st, a->id, &h1, HLPTD_JOB_QUEUED, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_job_get(st, a->id, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c->lease_until, 0);
    ck_assert_int_eq(c->status, HLPTD_JOB_QUEUED);
    hlptd_job_free(c);

    /* Requeued, it goes to whichever node claims next; that node holds it now, under claim 2. */
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-2", 60000, &c, &lost, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(c->id, a->id);
    ck_assert_int_eq(c->lease_epoch, 2);
    ck_assert_ptr_null(lost);
    hlptd_job_free(c);
    hlptd_hold a2 = {"node-2", 2};
    ck_assert_int_eq(hlptd_store_job_set_status_owned(st, a->id, &h1, HLPTD_JOB_SUCCEEDED, NULL, why, sizeof why),
                     HLPT_ERR_STATE);
    ck_assert_int_eq(hlptd_store_job_set_status_owned(st, a->id, &a2, HLPTD_JOB_SUCCEEDED, NULL, why, sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(state_of(st, a->id), HLPTD_JOB_SUCCEEDED);

    /* node-2 restarts: its running job b goes back to the queue, free; node-1's rows are left. */
    char **ids;
    size_t n;
    ck_assert_int_eq(hlptd_store_node_release(st, "node-2", &ids, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ids[0], b->id);
    hlptd_store_ids_free(ids, n);
    ck_assert_int_eq(hlptd_store_job_get(st, b->id, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c->status, HLPTD_JOB_QUEUED);
    ck_assert_int_eq(c->lease_until, 0);
    hlptd_job_free(c);
    ck_assert_int_eq(hlptd_store_node_release(st, "node-2", &ids, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 0);
    hlptd_store_ids_free(ids, n);
    hlptd_job_free(a);
    hlptd_job_free(b);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

static int64_t metric_rows(hlptd_store *st, const char *job) {
    hlptd_metric *m;
    size_t n;
    char w[256];
    ck_assert_int_eq(hlptd_store_metric_list(st, job, -1, 1000, &m, &n, w, sizeof w), HLPT_OK);
    free(m);
    return (int64_t)n;
}

static int64_t event_rows(hlptd_store *st, const char *job) {
    hlptd_job_event **e;
    size_t n;
    int more;
    char w[256];
    ck_assert_int_eq(hlptd_store_event_list(st, job, 0, 1000, &e, &n, &more, w, sizeof w), HLPT_OK);
    hlptd_job_event_list_free(e, n);
    return (int64_t)n;
}

/* A node that stops renewing loses its job to the next claim once the lease has run out; from then
 * on everything the old holder writes changes nothing, and the new one's reports go in. */
START_TEST(test_leases_expire_and_fence) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");
    hlptd_job *a = make_job(st, f->id), *c;
    char *lost = NULL;
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-1", 300, &c, NULL, why, sizeof why), HLPT_OK);
    hlptd_hold h1 = {"node-1", c->lease_epoch};
    hlptd_job_free(c);
    hlptd_metric m = {.step = 1, .train_loss = 2.5, .valid_loss = NAN, .valid_acc = NAN, .lr = 1e-3, .tokens_per_s = 100};
    ck_assert_int_eq(hlptd_store_job_report(st, a->id, &h1, &m, 10, 0.1, "info", "Step 1/10", "{\"step\":1}", why,
                                           sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(metric_rows(st, a->id), 1);
    ck_assert_int_eq(event_rows(st, a->id), 1);
    ck_assert_int_eq(hlptd_store_job_get(st, a->id, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c->step, 1);
    ck_assert_int_eq(c->total_steps, 10);
    hlptd_job_free(c);

    /* Held: nobody else claims it. */
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-2", 60000, &c, &lost, why, sizeof why), HLPT_OK);
    ck_assert_ptr_null(c);
    /* node-1 goes quiet; its lease runs out. */
    usleep(450 * 1000);
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-2", 60000, &c, &lost, why, sizeof why), HLPT_OK);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->id, a->id);
    ck_assert_str_eq(c->node, "node-2");
    ck_assert_int_eq(c->lease_epoch, h1.epoch + 1);
    ck_assert_int_eq(c->status, HLPTD_JOB_RUNNING);
    ck_assert_str_eq(lost, "node-1");
    hlptd_hold h2 = {"node-2", c->lease_epoch};
    hlptd_job_free(c);
    free(lost);

    /* node-1 comes back: every write it tries is refused, and nothing of it lands. */
    m.step = 2;
    ck_assert_int_eq(hlptd_store_job_report(st, a->id, &h1, &m, 10, 0.2, "info", "Step 2/10", NULL, why, sizeof why),
                     HLPT_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(why, "node-2"));
    ck_assert_int_eq(hlptd_store_job_hold(st, a->id, &h1, 300, why, sizeof why), HLPT_ERR_STATE);
    ck_assert_int_eq(hlptd_store_job_set_status_owned(st, a->id, &h1, HLPTD_JOB_QUEUED, NULL, why, sizeof why),
                     HLPT_ERR_STATE);
    ck_assert_int_eq(metric_rows(st, a->id), 1);
    ck_assert_int_eq(event_rows(st, a->id), 1);
    ck_assert_int_eq(hlptd_store_job_get(st, a->id, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c->step, 1);
    ck_assert_int_eq(c->status, HLPTD_JOB_RUNNING);
    hlptd_job_free(c);
    /* node-1's heartbeat no longer renews it; node-2's does. */
    hlptd_node_fields n1 = {.id = "node-1", .url = "http://a:1", .pid = 11, .workers = 1, .running = 1, .state = "up",
                            .lease_ms = 300, .started_at = 1000};
    hlptd_node_fields n2 = {.id = "node-2", .url = "http://b:2", .pid = 22, .workers = 2, .running = 1,
                            .state = "draining", .lease_ms = 60000, .started_at = 2000};
    hlptd_lease **held;
    size_t nheld;
    ck_assert_int_eq(hlptd_store_node_beat(st, &n1, &held, &nheld, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(nheld, 0);
    hlptd_lease_list_free(held, nheld);
    ck_assert_int_eq(hlptd_store_node_beat(st, &n2, &held, &nheld, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(nheld, 1);
    ck_assert_str_eq(held[0]->id, a->id);
    ck_assert_int_eq(held[0]->lease_epoch, h2.epoch);
    ck_assert_int_eq(held[0]->status, HLPTD_JOB_RUNNING);
    hlptd_lease_list_free(held, nheld);

    /* The new holder's report goes in, the repeated step replacing nothing of another's. */
    ck_assert_int_eq(hlptd_store_job_report(st, a->id, &h2, &m, 10, 0.2, "info", "Step 2/10", NULL, why, sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(metric_rows(st, a->id), 2);
    ck_assert_int_eq(event_rows(st, a->id), 2);

    /* Both nodes and the one lease, as GET /v1/nodes shows them. */
    hlptd_node **nodes;
    size_t nn, nl;
    int64_t now_ms;
    ck_assert_int_eq(hlptd_store_node_list(st, &nodes, &nn, &held, &nl, &now_ms, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(nn, 2);
    ck_assert_str_eq(nodes[0]->id, "node-1");
    ck_assert_str_eq(nodes[1]->id, "node-2");
    ck_assert_str_eq(nodes[1]->url, "http://b:2");
    ck_assert_str_eq(nodes[1]->state, "draining");
    ck_assert_int_eq(nodes[1]->pid, 22);
    ck_assert_int_eq(nodes[1]->workers, 2);
    ck_assert_int_eq(nodes[1]->lease_ms, 60000);
    ck_assert_int_eq(nodes[1]->started_at, 2000);
    ck_assert_int_le(nodes[1]->heartbeat_at, now_ms);
    ck_assert_int_gt(nodes[1]->heartbeat_at, now_ms - 10000);
    ck_assert_uint_eq(nl, 1);
    ck_assert_str_eq(held[0]->node, "node-2");
    ck_assert_int_gt(held[0]->lease_until, now_ms + 50000);
    hlptd_node_list_free(nodes, nn);
    hlptd_lease_list_free(held, nl);
    /* Rows of nodes long gone are removed; a day is not long gone. */
    ck_assert_int_eq(hlptd_store_node_prune(st, 86400000, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_node_list(st, &nodes, &nn, &held, &nl, &now_ms, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(nn, 2);
    hlptd_node_list_free(nodes, nn);
    hlptd_lease_list_free(held, nl);
    ck_assert_int_eq(hlptd_store_node_prune(st, -60000, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_node_list(st, &nodes, &nn, &held, &nl, &now_ms, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(nn, 0);
    hlptd_node_list_free(nodes, nn);
    hlptd_lease_list_free(held, nl);
    hlptd_job_free(a);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

/* A progress report is one round trip to PostgreSQL (none to SQLite): metrics and events batched. */
START_TEST(test_report_is_one_round_trip) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");
    hlptd_job *a = make_job(st, f->id), *c;
    ck_assert_int_eq(hlptd_store_job_claim(st, "node-1", 60000, &c, NULL, why, sizeof why), HLPT_OK);
    hlptd_hold h = {"node-1", c->lease_epoch};
    hlptd_job_free(c);
    int shared = hlptd_store_is_pg(where);
    for (int step = 1; step <= 5; step++) {
        hlptd_metric m = {.step = step, .train_loss = 1.0 / step, .valid_loss = step == 5 ? 0.5 : NAN, .valid_acc = NAN,
                          .lr = 1e-3, .tokens_per_s = 10};
        int64_t before = hlptd_store_round_trips(st);
        ck_assert_int_eq(hlptd_store_job_report(st, a->id, &h, &m, 5, step / 5.0, "info", "step", NULL, why,
                                               sizeof why),
                         HLPT_OK);
        ck_assert_int_eq(hlptd_store_round_trips(st) - before, shared ? 1 : 0);
    }
    hlptd_metric *m;
    size_t n;
    ck_assert_int_eq(hlptd_store_metric_list(st, a->id, -1, 100, &m, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_double_eq(m[4].valid_loss, 0.5);
    ck_assert(isnan(m[0].valid_loss));
    ck_assert_double_eq_tol(m[2].train_loss, 1.0 / 3, 1e-15);
    free(m);
    /* A write inside a transaction is one round trip with its savepoint. */
    ck_assert_int_eq(hlptd_store_begin(st, why, sizeof why), HLPT_OK);
    int64_t before = hlptd_store_round_trips(st);
    ck_assert_int_eq(hlptd_store_event_add(st, a->id, "info", "in a transaction", NULL, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_round_trips(st) - before, shared ? 1 : 0);
    ck_assert_int_eq(hlptd_store_commit(st, why, sizeof why), HLPT_OK);
    hlptd_job_free(a);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

#define CLAIM_JOBS 40
#define CLAIMERS 4
static char claimed_by[CLAIM_JOBS][1]; /* set once a job is claimed */
static int claims_of[CLAIMERS];

/* One node: claims until the queue is empty, writing down each job it got. */
static void *claim_in_thread(void *arg) {
    intptr_t me = (intptr_t)arg;
    char w[256], node[32];
    snprintf(node, sizeof node, "node-%d", (int)me);
    hlptd_store *st;
    intptr_t err = hlptd_store_open(&st, where, blobs, w, sizeof w);
    while (!err) {
        hlptd_job *j = NULL;
        if ((err = hlptd_store_job_claim(st, node, 60000, &j, NULL, w, sizeof w)) || !j) break;
        int k = (int)j->queue_order % CLAIM_JOBS;
        /* Two claims of one job would meet here. */
        if (__atomic_exchange_n(&claimed_by[k][0], 'x', __ATOMIC_SEQ_CST)) err = HLPT_ERR_STATE;
        __atomic_add_fetch(&claims_of[me], 1, __ATOMIC_SEQ_CST);
        if (strcmp(j->node, node)) err = HLPT_ERR_STATE;
        hlptd_job_free(j);
    }
    hlptd_store_close(st);
    return (void *)err;
}

/* Several nodes claiming from one queue at once: every job is claimed exactly once. */
START_TEST(test_pg_concurrent_claims) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    hlptd_file *f = add_file(st, "t.jsonl", "x");
    int64_t first = -1;
    for (int i = 0; i < CLAIM_JOBS; i++) {
        hlptd_job *j = make_job(st, f->id);
        if (first < 0) first = j->queue_order;
        ck_assert_int_eq(j->queue_order - first, i); /* consecutive: queue_order % CLAIM_JOBS tells them apart */
        hlptd_job_free(j);
    }
    memset(claimed_by, 0, sizeof claimed_by);
    memset(claims_of, 0, sizeof claims_of);
    pthread_t t[CLAIMERS];
    for (intptr_t i = 0; i < CLAIMERS; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, claim_in_thread, (void *)i), 0);
    for (int i = 0; i < CLAIMERS; i++) {
        void *err;
        pthread_join(t[i], &err);
        ck_assert_int_eq((intptr_t)err, HLPT_OK);
    }
    int total = 0;
    for (int i = 0; i < CLAIMERS; i++) total += claims_of[i];
    ck_assert_int_eq(total, CLAIM_JOBS);
    for (int i = 0; i < CLAIM_JOBS; i++) ck_assert_int_eq(claimed_by[i][0], 'x');
    char **ids;
    size_t n;
    ck_assert_int_eq(hlptd_store_job_ids_with_status(st, HLPTD_JOB_RUNNING, &ids, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, CLAIM_JOBS);
    hlptd_store_ids_free(ids, n);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

#define NOTES_MAX 16
typedef struct {
    char got[NOTES_MAX][128];
    int n;
} notes;

static void note_of(void *ctx, const char *payload) {
    notes *ns = ctx;
    if (ns->n < NOTES_MAX) snprintf(ns->got[ns->n++], sizeof ns->got[0], "%s", payload);
}

/* Waits (up to 5 s) until `want` is among what `st` was notified of. */
static int notified(hlptd_store *st, notes *ns, const char *want) {
    for (int tries = 0; tries < 500; tries++) {
        hlptd_store_notifications(st, 1, note_of, ns);
        for (int i = 0; i < ns->n; i++)
            if (!strcmp(ns->got[i], want)) return 1;
        usleep(10 * 1000);
    }
    return 0;
}

/* Another connection's changes reach a listening store at their commit: a job inserted, its events,
 * a status moved, a lease given up; a progress report sends nothing but its event's. */
START_TEST(test_pg_notifications) {
    hlptd_store *st, *other;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_open(&other, where, blobs, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_store_listen(st, why, sizeof why), HLPT_OK);
    ck_assert_int_ge(hlptd_store_socket(st), 0);
    notes ns = {0};
    char want[128];
    hlptd_file *f = add_file(other, "t.jsonl", "x");
    hlptd_job *a = make_job(other, f->id), *c;
    snprintf(want, sizeof want, "s %s queued", a->id);
    ck_assert(notified(st, &ns, want));
    ck_assert_int_eq(hlptd_store_event_add(other, a->id, "info", "hello", NULL, NULL, why, sizeof why), HLPT_OK);
    snprintf(want, sizeof want, "e %s", a->id);
    ck_assert(notified(st, &ns, want));
    ck_assert_int_eq(hlptd_store_job_claim(other, "node-2", 60000, &c, NULL, why, sizeof why), HLPT_OK);
    hlptd_hold h = {"node-2", c->lease_epoch};
    hlptd_job_free(c);
    snprintf(want, sizeof want, "s %s running", a->id);
    ck_assert(notified(st, &ns, want));
    ns.n = 0;
    hlptd_metric m = {.step = 1, .train_loss = 1, .valid_loss = NAN, .valid_acc = NAN, .lr = NAN, .tokens_per_s = NAN};
    ck_assert_int_eq(hlptd_store_job_report(other, a->id, &h, &m, 2, 0.5, "info", "step", NULL, why, sizeof why),
                     HLPT_OK);
    snprintf(want, sizeof want, "e %s", a->id);
    ck_assert(notified(st, &ns, want));
    ck_assert_int_eq(ns.n, 1);
    /* Paused elsewhere: the holder's node hears it; the holder giving the lease up is heard too. */
    ck_assert_int_eq(hlptd_store_job_set_status(st, a->id, HLPTD_JOB_PAUSED, NULL, why, sizeof why), HLPT_OK);
    ns.n = 0;
    ck_assert_int_eq(hlptd_store_job_set_status_owned(other, a->id, &h, HLPTD_JOB_PAUSED, NULL, why, sizeof why), HLPT_OK);
    snprintf(want, sizeof want, "s %s paused", a->id);
    ck_assert(notified(st, &ns, want));
    hlptd_job_free(a);
    hlptd_file_free(f);
    hlptd_store_close(other);
    hlptd_store_close(st);
}
END_TEST

/* The blobs rows name, in the database as well where the store is shared (PostgreSQL): copied with
 * the row in chunks, fetched into a folder that lacks them, fetched again over a damaged copy,
 * gone with the last row. SQLite keeps none: the folder is the only copy. */
START_TEST(test_blobs_in_the_database) {
    hlptd_store *st;
    ck_assert_int_eq(hlptd_store_open(&st, where, blobs, why, sizeof why), HLPT_OK);
    size_t n = (3u << 20) / 2 + 7; /* two chunks, the second short */
    char *content = malloc(n + 1);
    ck_assert_ptr_nonnull(content);
    for (size_t i = 0; i < n; i++) content[i] = (char)('a' + i * 7 % 26);
    content[n] = 0;
    hlptd_file *f = add_file(st, "big.jsonl", content);
    char bad[HLPT_SHA256_HEX];
    memset(bad, 'a', HLPT_SHA256_HEX - 1);
    bad[HLPT_SHA256_HEX - 1] = 0;
    ck_assert_int_eq(hlptd_store_blob_local(st, "nope", 0, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlptd_store_blob_local(st, f->sha256, 0, why, sizeof why), HLPT_OK); /* here already */
    if (!pg_db[0]) {
        char v[64];
        sql_text(path, "SELECT count(*) FROM blobs", v, sizeof v);
        ck_assert_str_eq(v, "0");
        ck_assert_int_eq(hlptd_blob_remove(blobs, f->sha256, why, sizeof why), HLPT_OK);
        ck_assert_int_eq(hlptd_store_blob_local(st, f->sha256, 0, why, sizeof why), HLPT_ERR_NOENT);
        ck_assert_int_eq(hlptd_store_blob_local(st, f->sha256, 1, why, sizeof why), HLPT_ERR_FORMAT);
    } else {
        char q[256], *rows;
        snprintf(q, sizeof q, "SELECT b.bytes, b.chunks, count(c.n) FROM blobs b JOIN blob_chunks c USING (sha256)"
                              " WHERE sha256 = '%s' GROUP BY b.bytes, b.chunks", f->sha256);
        rows = pg_rows(where, q);
        char want[64];
        snprintf(want, sizeof want, "%zu\t2\t2\n", n);
        ck_assert_str_eq(rows, want);
        free(rows);
        /* Missing here: fetched. */
        ck_assert_int_eq(hlptd_blob_remove(blobs, f->sha256, why, sizeof why), HLPT_OK);
        ck_assert_int_eq(hlptd_store_blob_local(st, f->sha256, 0, why, sizeof why), HLPT_OK);
        blob_is(f->sha256, content, n);
        ck_assert_int_eq(tmp_count(), 0);
        /* Damaged here: fetched again. */
        char p[256];
        ck_assert_int_eq(hlptd_blob_path(blobs, f->sha256, p, sizeof p), HLPT_OK);
        FILE *fp = fopen(p, "r+b");
        ck_assert_ptr_nonnull(fp);
        fputs("damage", fp);
        fclose(fp);
        char *buf;
        size_t got;
        ck_assert_int_eq(hlptd_blob_read(blobs, f->sha256, 1 << 24, &buf, &got, why, sizeof why), HLPT_ERR_FORMAT);
        ck_assert_int_eq(hlptd_store_blob_local(st, f->sha256, 1, why, sizeof why), HLPT_OK);
        blob_is(f->sha256, content, n);
        /* Neither here nor there. */
        ck_assert_int_eq(hlptd_store_blob_local(st, bad, 0, why, sizeof why), HLPT_ERR_NOENT);
        /* The database's copy damaged: refused, nothing left behind. */
        ck_assert_int_eq(hlptd_blob_remove(blobs, f->sha256, why, sizeof why), HLPT_OK);
        snprintf(q, sizeof q, "UPDATE blob_chunks SET data = 'AAAA' || data WHERE sha256 = '%s' AND n = 1", f->sha256);
        free(pg_rows(where, q));
        ck_assert_int_eq(hlptd_store_blob_local(st, f->sha256, 0, why, sizeof why), HLPT_ERR_FORMAT);
        ck_assert_ptr_nonnull(strstr(why, "damaged"));
        ck_assert_int_eq(blob_exists(f->sha256), 0);
        ck_assert_int_eq(tmp_count(), 0);
        put(content, n, bad); /* back in place, as the file's row says */
        ck_assert_str_eq(bad, f->sha256);
    }
    /* Gone with its row. */
    ck_assert_int_eq(hlptd_store_file_delete(st, f->id, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(blob_exists(f->sha256), 0);
    if (pg_db[0]) {
        char *rows = pg_rows(where, "SELECT count(*) FROM blobs");
        ck_assert_str_eq(rows, "0\n");
        free(rows);
        rows = pg_rows(where, "SELECT count(*) FROM blob_chunks");
        ck_assert_str_eq(rows, "0\n");
        free(rows);
    }
    free(content);
    hlptd_file_free(f);
    hlptd_store_close(st);
}
END_TEST

static void add_store_tests(TCase *tc) {
    tcase_add_test(tc, test_migrate_from_scratch);
    tcase_add_test(tc, test_newer_database_refused);
    tcase_add_test(tc, test_files_crud);
    tcase_add_test(tc, test_jobs_crud);
    tcase_add_test(tc, test_job_claims);
    tcase_add_test(tc, test_leases_expire_and_fence);
    tcase_add_test(tc, test_report_is_one_round_trip);
    tcase_add_test(tc, test_blobs_in_the_database);
    tcase_add_test(tc, test_events_metrics_checkpoints);
    tcase_add_test(tc, test_adapters_crud);
    tcase_add_test(tc, test_job_results_and_file_tombstone);
    tcase_add_test(tc, test_transactions_and_blobs);
    tcase_add_test(tc, test_upload_sealed_while_its_bytes_are_deleted);
    tcase_add_test(tc, test_job_done_while_same_weights_are_deleted);
    tcase_add_test(tc, test_adopted_blobs_go_with_a_failed_insert);
}

static Suite *suite(void) {
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("sqlite");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_migrations_table);
    tcase_add_test(tc, test_migrate_from_each_version);
    tcase_add_test(tc, test_migrate_v3_moves_bytes_out);
    tcase_add_test(tc, test_ids);
    tcase_add_test(tc, test_pg_urls);
    add_store_tests(tc);
    suite_add_tcase(s, tc);
    const char *url = getenv("HLPT_TEST_PG_URL");
    if (url && *url) {
        tc = tcase_create("postgres");
        tcase_add_checked_fixture(tc, setup_pg, teardown);
        tcase_set_timeout(tc, 30);
        add_store_tests(tc);
        tcase_add_test(tc, test_pg_schema_is_sqlites);
        tcase_add_test(tc, test_pg_concurrent_open);
        tcase_add_test(tc, test_pg_concurrent_claims);
        tcase_add_test(tc, test_pg_notifications);
        tcase_add_test(tc, test_pg_reconnects);
        suite_add_tcase(s, tc);
    } else {
        printf("store: HLPT_TEST_PG_URL is not set; the PostgreSQL backend's tests do not run\n");
    }
    return s;
}

HLPT_CHECK_MAIN()
