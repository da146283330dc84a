/*
 * resolver.h - what serves a `model` name (docs/rest.md, Generation; Models and adapters): the base
 * model (its name, or "base"), an adapter (its name or its id; a job's fine_tuned_model is an
 * adapter name), or a checkpoint (its model id "<job's fine-tuned model>:ckpt-step-<N>",
 * hlptd_jobs_model_name). Every store call that naming a model takes is in resolver.c.
 *
 * The inference thread resolves the model of each request it admits, and fetches an adapter's files
 * on a cache miss, through the hooks hlptd_resolver_hook sets (infer.h) and a read connection to the
 * store of its own, opened on first use: a generation never waits for the loop. An adapter's cache
 * key is its id; a checkpoint's, until it is registered, is the checkpoint's id, and it is served
 * straight from the checkpoint's state.
 *
 * A checkpoint becomes an adapter named by its model id the first time a request names it
 * (docs/rest.md). That is a store write, and the loop is the database's one writer: the resolver
 * notes the checkpoint as pending and calls on_pending, and the loop registers what is pending
 * (hlptd_resolver_register_pending) before it runs any request handed to it later. The generation
 * does not wait for that.
 *
 * Threads: the hooks run on the inference thread; hlptd_resolver_register_pending on the thread that
 * owns the store it is given (the loop); the other functions on any thread, with the caller's store.
 */
#ifndef HLPTD_RESOLVER_H
#define HLPTD_RESOLVER_H

#include <stddef.h>

#include "hlpt/model.h"
#include "infer.h"
#include "store.h"

typedef struct hlptd_resolver hlptd_resolver;

typedef struct {
    const char *db_path;      /* the store: its database file or PostgreSQL URL (copied) */
    hlptd_blobs *blobs;       /* the daemon's blobs, which the store's rows name (borrowed for the resolver's life) */
    const char *base_name;    /* the base model's name (copied) */
    const hlpt_config *base;  /* borrowed for the resolver's life: the base checkpoints are read against */
    void (*on_pending)(void *ctx); /* inference thread: a checkpoint awaits registration; may be NULL */
    void *ctx;
} hlptd_resolver_opts;

/* *out owned: hlptd_resolver_free. HLPT_ERR_NOMEM. */
int hlptd_resolver_new(const hlptd_resolver_opts *o, hlptd_resolver **out);
/* Closes the read connection: after the inference thread that used it has stopped. NULL is fine. */
void hlptd_resolver_free(hlptd_resolver *r);

/* Sets o's resolve and fetch hooks, and their ctx, to r's. */
void hlptd_resolver_hook(hlptd_resolver *r, hlptd_infer_opts *o);

/* Registers every checkpoint served since the last call as an adapter named by its model id, in st
 * (borrowed; the loop's store). One already registered is skipped; a failure is logged, and the
 * next request that names the checkpoint notes it again. The thread that owns st. */
void hlptd_resolver_register_pending(hlptd_resolver *r, hlptd_store *st);

/* 1 when `model` names the base model called base_name (its name or "base"). Any thread. */
int hlptd_resolver_is_base(const char *base_name, const char *model);

/* What a model name names, by the rules above, in this order: the base, an adapter (by name or
 * id), a checkpoint not registered as an adapter yet. */
typedef struct {
    int is_base;                /* 1: the base model (nothing else is set) */
    hlptd_adapter_rec *adapter; /* an adapter, owned */
    hlptd_job *job;             /* a checkpoint's job and the checkpoint, owned (both or neither) */
    hlptd_checkpoint *ck;
} hlptd_model_ref;

/* Looks `model` up in st (borrowed) for the base model called base_name. HLPT_ERR_NOENT ("no model
 * `…`") when it names nothing; a store error otherwise. The thread that owns st. */
int hlptd_resolver_lookup(hlptd_store *st, const char *base_name, const char *model, hlptd_model_ref *out, char *why,
                          size_t len);
/* Frees what a lookup returned; the struct may be reused. */
void hlptd_model_ref_clear(hlptd_model_ref *ref);

/* The job and checkpoint that the checkpoint model id `model` names, read from st (borrowed), both
 * returned owned (hlptd_job_free, hlptd_checkpoint_free); HLPT_ERR_NOENT ("no model `…`") when it
 * names none. The thread that owns st. */
int hlptd_resolver_checkpoint(hlptd_store *st, const char *base_name, const char *model, hlptd_job **job,
                              hlptd_checkpoint **ck, char *why, size_t len);

#endif
