/*
 * cmd_client.c - the hlpt commands that talk to hlptd: files, jobs, adapters, complete, chat.
 * Answers are printed as the daemon's JSON (pretty) unless a command has a friendlier view; errors
 * are printed as the daemon words them.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "commands.h"

static int print_json(cJSON *j) {
    if (!j) return CLI_FAIL;
    char *s = cJSON_Print(j);
    puts(s);
    free(s);
    cJSON_Delete(j);
    return CLI_OK;
}

/* A GET whose answer is not JSON (file content, CSV): the body as it is, or the daemon's error. */
static int print_raw(const char *path) {
    client_resp r;
    if (client_request("GET", path, NULL, &r) != 0 || r.status >= 400) {
        cJSON_Delete(client_json(&r));
        client_resp_free(&r);
        return CLI_FAIL;
    }
    fwrite(r.body, 1, r.len, stdout);
    client_resp_free(&r);
    return CLI_OK;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* Uploads a JSONL file for fine-tuning; returns the file id (owned) or NULL. */
static char *upload(const char *file) {
    client_resp r;
    const char *pairs[] = {"purpose", "fine-tune", NULL};
    if (client_upload("/v1/files", "file", file, pairs, &r) != 0) {
        client_resp_free(&r);
        return NULL;
    }
    cJSON *j = client_json(&r);
    client_resp_free(&r);
    char *id = j && str(j, "id") ? strdup(str(j, "id")) : NULL;
    cJSON_Delete(j);
    return id;
}

/* ---------------------------------------------------------------------------------------------- */

static const char files_usage[] =
    "usage: hlpt files upload FILE | list | show ID | content ID | delete ID   [--url URL]\n";

static int cmd_files(int argc, char **argv) {
    const char *url = NULL;
    cli_opt opts[] = {{"--url", &url, NULL}};
    char **rest;
    int n, st = cli_parse(argc, argv, opts, 1, files_usage, &rest, &n);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    client_set_url(url);
    char path[512];
    if (n == 2 && !strcmp(rest[0], "upload")) {
        char *id = upload(rest[1]);
        if (!id) return CLI_FAIL;
        puts(id);
        free(id);
        return CLI_OK;
    }
    if (n == 1 && !strcmp(rest[0], "list")) return print_json(client_call("GET", "/v1/files", NULL));
    if (n == 2 && (!strcmp(rest[0], "show") || !strcmp(rest[0], "delete") || !strcmp(rest[0], "content"))) {
        snprintf(path, sizeof path, "/v1/files/%s%s", rest[1], !strcmp(rest[0], "content") ? "/content" : "");
        if (!strcmp(rest[0], "content")) return print_raw(path);
        return print_json(client_call(!strcmp(rest[0], "delete") ? "DELETE" : "GET", path, NULL));
    }
    fputs(files_usage, stderr);
    return CLI_USAGE;
}

/* ---------------------------------------------------------------------------------------------- */

static const char jobs_usage[] =
    "usage: hlpt jobs create --data FILE [--valid FILE] [--method hlpt|h2lpt|lora|prefix] [--gate G]\n"
    "                        [--rank R] [--alpha A] [--virtual-tokens P] [--targets q_proj,v_proj,...]\n"
    "                        [--epochs N] [--batch-size B]\n"
    "                        [--lr X] [--max-length T] [--max-steps N] [--seed S] [--suffix NAME] [--follow]\n"
    "       hlpt jobs list | show ID | cancel ID | pause ID | resume ID | events ID | metrics ID | follow ID\n"
    "       (every form takes --url URL)\n";

/* A progress bar on a terminal, a JSON line otherwise; returns 1 once the job is over. */
static int show_progress(const cJSON *job, int tty) {
    const char *status = str(job, "status");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
    int step = (int)num(p, "step", 0), total = (int)num(p, "total_steps", 0);
    double loss = num(p, "train_loss", NAN), vloss = num(p, "valid_loss", NAN), tps = num(p, "tokens_per_s", 0),
           eta = num(p, "eta_s", NAN);
    int over = status && (!strcmp(status, "succeeded") || !strcmp(status, "failed") || !strcmp(status, "cancelled") ||
                          !strcmp(status, "paused"));
    if (tty) {
        int width = 30, done = total ? width * step / total : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%-10s [%s] %d/%d", status ? status : "?", bar, step, total);
        if (!isnan(loss)) fprintf(stderr, "  loss %.4f", loss);
        if (!isnan(vloss)) fprintf(stderr, "  valid %.4f", vloss);
        if (tps > 0) fprintf(stderr, "  %.0f tok/s", tps);
        if (!isnan(eta) && !over) fprintf(stderr, "  ETA %dm%02ds", (int)eta / 60, (int)eta % 60);
        fputs("   ", stderr);
        if (over) fputc('\n', stderr);
        fflush(stderr);
    } else {
        /* Progress is a report, not the result: stdout keeps only the fine-tuned model's name. */
        char *s = cJSON_PrintUnformatted(p ? p : job);
        fprintf(stderr, "{\"status\":\"%s\",\"progress\":%s}\n", status ? status : "", s);
        free(s);
    }
    return over;
}

static int follow(const char *id) {
    char path[512];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", id);
    int tty = isatty(2);
    for (;;) {
        cJSON *j = client_call("GET", path, NULL);
        if (!j) return CLI_FAIL;
        int over = show_progress(j, tty);
        if (over) {
            const char *status = str(j, "status"), *model = str(j, "fine_tuned_model");
            int ok = status && !strcmp(status, "succeeded");
            if (ok && model) printf("%s\n", model);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
            if (!ok && str(e, "message")) fprintf(stderr, "hlpt: job %s: %s\n", status, str(e, "message"));
            cJSON_Delete(j);
            return ok ? CLI_OK : CLI_FAIL;
        }
        cJSON_Delete(j);
        usleep(500 * 1000);
    }
}

static int jobs_create(int argc, char **argv) {
    const char *url = NULL, *data = NULL, *valid = NULL, *method = "h2lpt", *gate = NULL, *rank = NULL,
               *alpha = NULL, *virt = NULL, *epochs = NULL, *batch = NULL, *lr = NULL, *seed = NULL,
               *suffix = NULL, *max_len = NULL, *max_steps = NULL, *targets = NULL;
    int follow_it = 0;
    cli_opt opts[] = {{"--url", &url, NULL},          {"--data", &data, NULL},
                      {"--valid", &valid, NULL},      {"--method", &method, NULL},
                      {"--gate", &gate, NULL},        {"--rank", &rank, NULL},
                      {"--alpha", &alpha, NULL},      {"--virtual-tokens", &virt, NULL},
                      {"--epochs", &epochs, NULL},    {"--batch-size", &batch, NULL},
                      {"--lr", &lr, NULL},            {"--seed", &seed, NULL},
                      {"--suffix", &suffix, NULL},    {"--max-length", &max_len, NULL},
                      {"--max-steps", &max_steps, NULL}, {"--targets", &targets, NULL},
                      {"--follow", NULL, &follow_it}};
    char **rest;
    int n, st = cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), jobs_usage, &rest, &n);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    if (!data || n) {
        fputs(jobs_usage, stderr);
        return CLI_USAGE;
    }
    client_set_url(url);
    long r = 0, pv = 0, ep = 0, bs = 0, ml = 0, ms = 0;
    double a = 0, rate = 0;
    uint64_t sd = 0;
    if ((st = cli_int("--rank", rank, 1, 4096, &r)) || (st = cli_float("--alpha", alpha, 1e-6, 1e6, &a)) ||
        (st = cli_int("--virtual-tokens", virt, 1, 1024, &pv)) || (st = cli_int("--epochs", epochs, 1, 1000, &ep)) ||
        (st = cli_int("--batch-size", batch, 1, 4096, &bs)) || (st = cli_float("--lr", lr, 1e-9, 10, &rate)) ||
        (st = cli_int("--max-length", max_len, 2, 65536, &ml)) || (st = cli_int("--max-steps", max_steps, 0, 100000000, &ms)) ||
        (st = cli_u64("--seed", seed, &sd)))
        return st;
    char *train_id = upload(data), *valid_id = valid && train_id ? upload(valid) : NULL;
    if (!train_id || (valid && !valid_id)) {
        free(train_id);
        free(valid_id);
        return CLI_FAIL;
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "training_file", train_id);
    if (valid_id) cJSON_AddStringToObject(body, "validation_file", valid_id);
    if (suffix) cJSON_AddStringToObject(body, "suffix", suffix);
    if (seed) cJSON_AddNumberToObject(body, "seed", (double)sd);
    cJSON *m = cJSON_AddObjectToObject(body, "method");
    cJSON_AddStringToObject(m, "type", method);
    cJSON *settings = cJSON_AddObjectToObject(m, method);
    if (gate) cJSON_AddStringToObject(settings, "gate", gate);
    if (rank) cJSON_AddNumberToObject(settings, "r", (double)r);
    if (alpha) cJSON_AddNumberToObject(settings, "lora_alpha", a);
    if (virt) cJSON_AddNumberToObject(settings, "num_virtual_tokens", (double)pv);
    if (targets) {
        cJSON *t = cJSON_AddArrayToObject(settings, "target_modules");
        char buf[256];
        snprintf(buf, sizeof buf, "%s", targets);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) cJSON_AddItemToArray(t, cJSON_CreateString(tok));
    }
    cJSON *hp = cJSON_AddObjectToObject(body, "hyperparameters");
    if (epochs) cJSON_AddNumberToObject(hp, "n_epochs", (double)ep);
    if (batch) cJSON_AddNumberToObject(hp, "batch_size", (double)bs);
    if (lr) cJSON_AddNumberToObject(hp, "learning_rate", rate);
    if (max_len) cJSON_AddNumberToObject(hp, "max_length", (double)ml);
    if (max_steps) cJSON_AddNumberToObject(hp, "max_steps", (double)ms);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    cJSON *job = client_call("POST", "/v1/fine_tuning/jobs", text);
    free(text);
    free(train_id);
    free(valid_id);
    if (!job) return CLI_FAIL;
    const char *id = str(job, "id");
    fprintf(stderr, "hlpt: created %s\n", id ? id : "?");
    if (!follow_it || !id) return print_json(job);
    char *jid = strdup(id);
    cJSON_Delete(job);
    st = follow(jid);
    free(jid);
    return st;
}

static int cmd_jobs(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "create")) return jobs_create(argc - 1, argv + 1);
    const char *url = NULL, *format = NULL;
    cli_opt opts[] = {{"--url", &url, NULL}, {"--format", &format, NULL}};
    char **rest;
    int n, st = cli_parse(argc, argv, opts, 2, jobs_usage, &rest, &n);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    client_set_url(url);
    char path[512];
    if (n == 1 && !strcmp(rest[0], "list")) return print_json(client_call("GET", "/v1/fine_tuning/jobs", NULL));
    if (n != 2) {
        fputs(jobs_usage, stderr);
        return CLI_USAGE;
    }
    const char *verb = rest[0], *id = rest[1];
    if (!strcmp(verb, "follow")) return follow(id);
    if (!strcmp(verb, "show")) {
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", id);
        return print_json(client_call("GET", path, NULL));
    }
    if (!strcmp(verb, "cancel") || !strcmp(verb, "pause") || !strcmp(verb, "resume")) {
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/%s", id, verb);
        return print_json(client_call("POST", path, NULL));
    }
    if (!strcmp(verb, "events") || !strcmp(verb, "metrics") || !strcmp(verb, "checkpoints")) {
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/%s%s", id, verb,
                 format && !strcmp(format, "csv") ? "?format=csv" : "");
        if (format && !strcmp(format, "csv")) return print_raw(path);
        return print_json(client_call("GET", path, NULL));
    }
    fputs(jobs_usage, stderr);
    return CLI_USAGE;
}

/* ---------------------------------------------------------------------------------------------- */

static const char adapters_usage[] =
    "usage: hlpt adapters list | show ID | delete ID | import DIR [--name NAME] | export ID DIR   [--url URL]\n"
    "import takes an adapter directory (adapter_config.json + adapter_model.safetensors: hlpt's own,\n"
    "or HF PEFT LORA / PREFIX_TUNING); export writes one.\n";

static int cmd_adapters(int argc, char **argv) {
    const char *url = NULL, *name = NULL;
    cli_opt opts[] = {{"--url", &url, NULL}, {"--name", &name, NULL}};
    char **rest;
    int n, st = cli_parse(argc, argv, opts, 2, adapters_usage, &rest, &n);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    client_set_url(url);
    char path[4096], file[4096];
    if (n == 1 && !strcmp(rest[0], "list")) return print_json(client_call("GET", "/v1/adapters", NULL));
    if (n == 2 && (!strcmp(rest[0], "show") || !strcmp(rest[0], "delete"))) {
        snprintf(path, sizeof path, "/v1/adapters/%s", rest[1]);
        return print_json(client_call(!strcmp(rest[0], "delete") ? "DELETE" : "GET", path, NULL));
    }
    if (n == 2 && !strcmp(rest[0], "import")) {
        /* Two parts: the config as a field, the weights as a file. */
        snprintf(file, sizeof file, "%s/adapter_config.json", rest[1]);
        FILE *f = fopen(file, "rb");
        if (!f) return cli_fail("%s: cannot read", file);
        char *cfg = calloc(1, 1 << 20);
        size_t k = fread(cfg, 1, (1 << 20) - 1, f);
        fclose(f);
        cfg[k] = 0;
        const char *pairs[] = {"config", cfg, name ? "name" : NULL, name, NULL};
        snprintf(file, sizeof file, "%s/adapter_model.safetensors", rest[1]);
        client_resp r;
        st = client_upload("/v1/adapters", "weights", file, pairs, &r);
        free(cfg);
        cJSON *j = st == 0 ? client_json(&r) : NULL;
        client_resp_free(&r);
        return print_json(j);
    }
    if (n == 3 && !strcmp(rest[0], "export")) {
        const char *names[] = {"adapter_config.json", "adapter_model.safetensors"};
        if (access(rest[2], F_OK) != 0 && mkdir(rest[2], 0755) != 0) return cli_fail("%s: cannot create", rest[2]);
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "/v1/adapters/%s/files/%s", rest[1], names[i]);
            snprintf(file, sizeof file, "%s/%s", rest[2], names[i]);
            client_resp r;
            if (client_download(path, file, &r) != 0 || r.status >= 400) {
                unlink(file);
                return cli_fail("export of %s failed (HTTP %ld)", rest[1], r.status);
            }
            client_resp_free(&r);
        }
        printf("%s\n", rest[2]);
        return CLI_OK;
    }
    fputs(adapters_usage, stderr);
    return CLI_USAGE;
}

/* ---------------------------------------------------------------------------------------------- */

static const char complete_usage[] =
    "usage: hlpt complete [--adapter NAME] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]\n"
    "                     [--stream] [--url URL] PROMPT\n";

static int print_chunk(const char *data, void *ctx) {
    int chat = *(int *)ctx;
    if (!strcmp(data, "[DONE]")) return 1;
    cJSON *j = cJSON_Parse(data);
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const char *t = chat ? str(cJSON_GetObjectItemCaseSensitive(c, "delta"), "content") : str(c, "text");
    if (t) {
        fputs(t, stdout);
        fflush(stdout);
    }
    cJSON_Delete(j);
    return 0;
}

static cJSON *gen_body(const char *model, const char *max_tokens, const char *temp, const char *top_p,
                       const char *seed, int stream) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "model", model ? model : "base");
    if (max_tokens) cJSON_AddNumberToObject(b, "max_tokens", atof(max_tokens));
    cJSON_AddNumberToObject(b, "temperature", temp ? atof(temp) : 0);
    if (top_p) cJSON_AddNumberToObject(b, "top_p", atof(top_p));
    if (seed) cJSON_AddNumberToObject(b, "seed", atof(seed));
    if (stream) cJSON_AddBoolToObject(b, "stream", 1);
    return b;
}

static int cmd_complete(int argc, char **argv) {
    const char *url = NULL, *adapter = NULL, *max_tokens = NULL, *temp = NULL, *top_p = NULL, *seed = NULL;
    int stream = 0;
    cli_opt opts[] = {{"--url", &url, NULL},       {"--adapter", &adapter, NULL}, {"--max-tokens", &max_tokens, NULL},
                      {"--temperature", &temp, NULL}, {"--top-p", &top_p, NULL}, {"--seed", &seed, NULL},
                      {"--stream", NULL, &stream}};
    char **rest;
    int n, st = cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), complete_usage, &rest, &n);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    if (n != 1) {
        fputs(complete_usage, stderr);
        return CLI_USAGE;
    }
    client_set_url(url);
    cJSON *b = gen_body(adapter, max_tokens, temp, top_p, seed, stream);
    cJSON_AddStringToObject(b, "prompt", rest[0]);
    char *text = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    if (stream) {
        client_resp r;
        int chat = 0;
        st = client_stream("/v1/completions", text, print_chunk, &chat, &r);
        free(text);
        if (st || r.status >= 400) {
            cJSON_Delete(client_json(&r));
            client_resp_free(&r);
            return CLI_FAIL;
        }
        client_resp_free(&r);
        putchar('\n');
        return CLI_OK;
    }
    cJSON *j = client_call("POST", "/v1/completions", text);
    free(text);
    if (!j) return CLI_FAIL;
    const char *t = str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "text");
    printf("%s\n", t ? t : "");
    cJSON_Delete(j);
    return CLI_OK;
}

static const char chat_usage[] =
    "usage: hlpt chat [--adapter NAME] [--max-tokens N] [--temperature T] [--url URL]\n"
    "An interactive chat on standard input; an empty line or end of input ends it.\n";

static int cmd_chat(int argc, char **argv) {
    const char *url = NULL, *adapter = NULL, *max_tokens = NULL, *temp = NULL;
    cli_opt opts[] = {{"--url", &url, NULL}, {"--adapter", &adapter, NULL}, {"--max-tokens", &max_tokens, NULL},
                      {"--temperature", &temp, NULL}};
    char **rest;
    int n, st = cli_parse(argc, argv, opts, 4, chat_usage, &rest, &n);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    client_set_url(url);
    cJSON *messages = cJSON_CreateArray();
    char line[8192];
    int tty = isatty(0);
    for (;;) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\n")] = 0;
        if (!*line) break;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", line);
        cJSON_AddItemToArray(messages, m);
        cJSON *b = gen_body(adapter, max_tokens, temp, NULL, NULL, 0);
        cJSON_AddItemReferenceToObject(b, "messages", messages);
        char *text = cJSON_PrintUnformatted(b);
        cJSON_Delete(b);
        cJSON *j = client_call("POST", "/v1/chat/completions", text);
        free(text);
        if (!j) {
            st = CLI_FAIL;
            break;
        }
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "message");
        const char *reply = str(msg, "content");
        printf("%s\n", reply ? reply : "");
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "role", "assistant");
        cJSON_AddStringToObject(a, "content", reply ? reply : "");
        cJSON_AddItemToArray(messages, a);
        cJSON_Delete(j);
    }
    cJSON_Delete(messages);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(int, char **);
} client_cmds[] = {
    {"files", cmd_files}, {"jobs", cmd_jobs}, {"adapters", cmd_adapters}, {"complete", cmd_complete}, {"chat", cmd_chat},
};

int cmd_client(int argc, char **argv) {
    for (size_t i = 0; i < sizeof client_cmds / sizeof *client_cmds; i++)
        if (!strcmp(argv[0], client_cmds[i].name)) return client_cmds[i].run(argc, argv);
    return CLI_USAGE;
}
