/*
 * serving.h - the pieces of the generation handlers (api/generate.c), the metrics module
 * (api/metrics.c) and the nodes list (api/nodes.c) that do not need a running daemon: request
 * validation, prompt tokenization, the Prometheus exposition and the nodes' JSON, so that they are
 * tested on their own.
 */
#ifndef HLPTD_API_SERVING_H
#define HLPTD_API_SERVING_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "hlpt/generate.h"
#include "hlpt/model.h"

#define API_GEN_MAX_N 8        /* `n`: choices per prompt */
#define API_GEN_MAX_PROMPTS 16 /* completions: prompts in one request */
#define API_GEN_MAX_CHOICES 64 /* prompts × n */

/* A validated body of POST /v1/completions (chat 0) or /v1/chat/completions (chat 1). */
typedef struct {
    int chat;
    char model[256];             /* as the client named it */
    int n;                       /* 1..API_GEN_MAX_N; choice i samples with seed params.seed + i */
    int stream;
    int include_usage;           /* stream_options.include_usage: a last chunk with usage */
    int logprobs;                /* report logprobs (completions: `logprobs` given; chat: true) */
    int top_logprobs;            /* 0..20 alternatives per token */
    const char *max_tokens_key;  /* "max_tokens" or "max_completion_tokens" (static), for errors */
    hlpt_gen_params params;      /* params.stop[i] points at stop[i] */
    char *stop[HLPT_MAX_STOP];   /* owned */
    char *prompt;                /* the first prompt's text (prompts[0]), or NULL when it is token ids */
    int n_prompts;               /* 1 (chat) .. API_GEN_MAX_PROMPTS; n_prompts × n <= API_GEN_MAX_CHOICES */
    char *prompts[API_GEN_MAX_PROMPTS];     /* owned texts (chat: rendered with the training template) */
    int *prompt_ids[API_GEN_MAX_PROMPTS];   /* owned: a prompt given as token ids, used as given */
    int n_prompt_ids[API_GEN_MAX_PROMPTS];
} hlptd_api_gen_request;

/* Validates body (borrowed) field by field, as OpenAI's API defines it, into *q (owned parts:
 * hlptd_api_gen_request_free, also after a failure). Defaults: max_tokens 16 (completions) / 256 (chat),
 * temperature 1, top_p 1, top_k 0 (off), n 1, seed random. On failure returns HLPT_ERR_INVAL
 * (a wrong type or range) or HLPT_ERR_UNSUPPORTED (`echo`, `best_of` > 1, penalties, ...) with
 * *param the offending field (static or borrowed from body; NULL when the body is no object) and
 * a message in why. */
int hlptd_api_gen_request_parse(const cJSON *body, int chat, hlptd_api_gen_request *q, const char **param, char *why,
                          size_t len);
void hlptd_api_gen_request_free(hlptd_api_gen_request *q);

/* What a /v1/responses request carries beyond a chat request (owned strings). */
typedef struct {
    char *instructions;          /* or NULL */
    char *metadata;              /* JSON object text, or NULL */
    int max_output_tokens;       /* given (1) or the default (0) */
} hlptd_api_responses_extra;

/* Validates a body of POST /v1/responses (text only, as OpenAI's Responses API defines it) into the
 * chat request it amounts to: `instructions` become a developer message first, `input` (a string,
 * or message items with string or input_text content) the conversation, max_output_tokens the
 * token limit; a stream reports usage at its end. Errors as hlptd_api_gen_request_parse's, *param naming
 * the Responses field (`input`, `max_output_tokens`, ...). q and x are owned (free both also after
 * a failure). */
int hlptd_api_responses_request_parse(const cJSON *body, hlptd_api_gen_request *q, hlptd_api_responses_extra *x, const char **param,
                                char *why, size_t len);
void hlptd_api_responses_extra_free(hlptd_api_responses_extra *x);

/* The prompt's token ids as training feeds them: BOS (config bos_id, when any) then the text
 * encoded without parsing special tokens. Checks that prompt + max_tokens fit the model's context
 * (HLPT_ERR_INVAL, *param "prompt"/"messages" when the prompt alone does not fit, else
 * q->max_tokens_key). *ids returned owned. Any thread (the model is immutable). */
int hlptd_api_gen_tokenize(const hlpt_model *m, const hlptd_api_gen_request *q, int **ids, int *n, const char **param,
                     char *why, size_t len);
/* The same for prompt i of a batch. A prompt given as token ids is taken as it is (no BOS added);
 * an id outside the vocabulary is HLPT_ERR_INVAL naming `prompt`. */
int hlptd_api_gen_tokenize_at(const hlpt_model *m, const hlptd_api_gen_request *q, int i, int **ids, int *n, const char **param,
                        char *why, size_t len);

/* One running job's live figures, for /metrics. */
typedef struct {
    char id[64];
    hlptd_job_live live;
} hlptd_api_job_figures;

/* This node's figures for /metrics, each sample labelled with its id (docs/design.md, "Many
 * nodes"). Counts are since the daemon started. */
typedef struct {
    const char *id;              /* --node-id (borrowed) */
    const char *url;             /* where it answers (borrowed) */
    int leases_held;             /* jobs running here, each under a lease */
    hlptd_jobs_counts jobs;      /* claims, takeovers, heartbeats, leases lost (server/jobs.h) */
    int64_t store_round_trips;   /* of the loop's store connection; 0 on SQLite */
    long blob_fetches;           /* blobs fetched from the database into the blobs folder */
    long blob_fetched_bytes;     /* bytes */
    double blob_fetch_seconds;   /* s spent fetching them */
} hlptd_api_node_figures;

/* The exposition text of /metrics (format 0.0.4) from the serving counters (c, server/stats.h) and
 * the given live figures: the inference thread's, those of the n_jobs running jobs, and the node's
 * (all borrowed). Returns owned (free()), *len bytes; NULL when out of memory. Any thread. */
char *hlptd_api_metrics_render(const hlptd_stats_counts *c, const hlptd_infer_stats *is, const hlptd_api_job_figures *jobs,
                         int n_jobs, const hlptd_api_node_figures *node, size_t *len);

/* The body of GET /v1/nodes (docs/rest.md, "Nodes") from what hlptd_store_node_list read: nodes
 * and leases (borrowed), now_ms the database's clock, self this node's id (borrowed; may be NULL).
 * A node whose row says up or draining and whose heartbeat is older than its lease is "lost"; a
 * lease goes under its node, or into "orphan_leases" (present only when some lease names a node
 * without a row). Returns owned (cJSON_Delete), NULL when out of memory. Any thread. */
cJSON *hlptd_api_nodes_json(hlptd_node *const *nodes, size_t n, hlptd_lease *const *leases, size_t nleases,
                            int64_t now_ms, const char *self);

#endif
