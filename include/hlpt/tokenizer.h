/*
 * tokenizer.h - Hugging Face `tokenizer.json` loading, encoding and decoding.
 *
 * Two kinds of tokenizer are supported, detected from the JSON (docs/design.md, "Files"):
 *   - HLPT_TOKENIZER_SENTENCEPIECE (LLaMA-2 style): normalizer Sequence[Prepend("▁"), Replace(" "->"▁")]
 *     or the pre_tokenizer Metaspace form, BPE with byte fallback (`<0xNN>` pieces) and `fuse_unk`,
 *     decoder Sequence[Replace("▁"->" "), ByteFallback, Fuse, Strip] (or Metaspace).
 *   - HLPT_TOKENIZER_BYTE_LEVEL (LLaMA-3, Qwen, SmolLM, GPT-2): pre_tokenizer Split(Regex, Isolated) /
 *     Digits / ByteLevel (with or without its GPT-2 regex), BPE with or without `ignore_merges`,
 *     decoder ByteLevel.
 * Components are accepted by name from a fixed list; anything else (another model type, a Regex
 * Replace, Unigram, WordPiece, continuing_subword_prefix, ...) fails to load with
 * HLPT_ERR_UNSUPPORTED naming it. Split regexes are compiled as they are with PCRE2 (UTF + UCP).
 *
 * Differences from HF tokenizers, all outside the supported models' files:
 *   - normalizer NFC is accepted and applied as the identity: text already in NFC (nearly all text)
 *     encodes like HF, decomposed text may not.
 *   - added tokens with `normalized: true` are matched on the raw text, not on the normalized text
 *     (identical whenever their content contains no character the normalizer rewrites, e.g. a space
 *     in the SentencePiece kind); `single_word` treats ASCII letters, digits, '_' and every non-ASCII
 *     non-space character as word characters.
 *   - BPE dropout is ignored (encoding is deterministic); post_processor, truncation and padding are
 *     ignored (no BOS/EOS is ever added: the caller adds BOS).
 *
 * Threads: a loaded tokenizer is immutable; every function below may be called from any number of
 * threads at once on a shared tokenizer (per-call scratch only).
 */
#ifndef HLPT_TOKENIZER_H
#define HLPT_TOKENIZER_H

#include <stddef.h>

typedef struct hlpt_tokenizer hlpt_tokenizer;

typedef enum {
    HLPT_TOKENIZER_SENTENCEPIECE = 1, /* "▁" word marks, byte-fallback pieces <0xNN> */
    HLPT_TOKENIZER_BYTE_LEVEL = 2,    /* GPT-2 byte-to-unicode alphabet ("Ġ" = space) */
} hlpt_tokenizer_kind;

/* Loads `path`: a tokenizer.json file, or a directory holding one. *out returns owned (free with
 * hlpt_tokenizer_free), NULL on failure. Errors: HLPT_ERR_NOENT / HLPT_ERR_IO (file), HLPT_ERR_FORMAT
 * (broken JSON, wrong types, merges naming unknown tokens, a bad regex), HLPT_ERR_UNSUPPORTED (a
 * component outside the list above, named in why), HLPT_ERR_NOMEM. */
int hlpt_tokenizer_load(const char *path, hlpt_tokenizer **out, char *why, size_t len);
/* The same from n bytes of JSON text (borrowed; need not be NUL-terminated). */
int hlpt_tokenizer_parse(const char *json, size_t n, hlpt_tokenizer **out, char *why, size_t len);
/* Accepts NULL. */
void hlpt_tokenizer_free(hlpt_tokenizer *tok);

/* Encodes n bytes of UTF-8 text (borrowed) into token ids. No BOS is added: the caller adds it.
 * parse_special: match the text of added special tokens (e.g. "<s>") as those tokens, as HF does;
 * off (0) for user text, where "<s>" becomes plain pieces. Non-special added tokens always match.
 * *ids returns owned (free()), NULL when *n_ids is 0 or on failure; *n_ids its length.
 * Errors: HLPT_ERR_INVAL (invalid UTF-8; why names the byte offset), HLPT_ERR_NOMEM,
 * HLPT_ERR_INTERNAL (a regex match failed, e.g. hit PCRE2's match limit on a pathological pattern). */
int hlpt_tokenizer_encode(const hlpt_tokenizer *tok, const char *text, size_t n, int parse_special,
                          int **ids, int *n_ids, char *why, size_t len);

/* Decodes n_ids ids (borrowed) into UTF-8 text as HF `decode(ids, skip_special_tokens=skip_special)`
 * does: the decoder chain of the JSON (ByteLevel, or Replace/ByteFallback/Fuse/Strip/Metaspace),
 * invalid UTF-8 replaced by U+FFFD the way HF does it. *text returns owned (free()), NUL-terminated,
 * *n its length in bytes (without the NUL). Errors: HLPT_ERR_RANGE (an id < 0 or >= vocab size, or a
 * hole in the vocab; why names it), HLPT_ERR_NOMEM. */
int hlpt_tokenizer_decode(const hlpt_tokenizer *tok, const int *ids, int n_ids, int skip_special,
                          char **text, size_t *n, char *why, size_t len);

/* How many leading bytes of text (borrowed) do not end in an incomplete UTF-8 sequence or U+FFFD
 * characters (what decode makes of a byte sequence that is not complete yet): n when the text is
 * clean. A building block of hlpt_tokenizer_decode_stream; on its own it is not enough, because
 * HF's ByteFallback decodes a run of byte pieces as one unit, so a character already decoded from
 * byte pieces turns into U+FFFDs again while the next character's bytes arrive. */
size_t hlpt_tokenizer_stream_safe_len(const char *text, size_t n);

/* Incremental detokenization for streaming generation (the prefix/read window used by vLLM and
 * text-generation-inference). Caller storage, one per sequence, zero-initialised; prefix <= read <=
 * the number of ids seen. Starting at {0, 0} over the generated ids only, the first piece's leading
 * space is dropped as decode() drops it; to keep it (text continuing a prompt), pass prompt + generated
 * ids and start at {n_prompt - 1, n_prompt} (or a few ids further back). */
typedef struct {
    int prefix;              /* first id of the decoding window */
    int read;                /* ids[prefix .. read) are already emitted */
} hlpt_tokenizer_stream;

/* Call after each new id with all ids so far (borrowed, n_ids >= st->read). *text returns owned
 * (free()), NUL-terminated, *n bytes: the new final text, often empty (held back while a character's
 * bytes are incomplete). last: the sequence ended, emit whatever is held (U+FFFD for an incomplete
 * character). The concatenation of all outputs equals hlpt_tokenizer_decode of the ids (less the
 * leading part noted above) whenever the ids decode to valid UTF-8 pieces. Errors as
 * hlpt_tokenizer_decode, plus HLPT_ERR_INVAL for a stream state that does not fit n_ids. */
int hlpt_tokenizer_decode_stream(const hlpt_tokenizer *tok, hlpt_tokenizer_stream *st, const int *ids, int n_ids,
                                 int skip_special, int last, char **text, size_t *n, char *why, size_t len);

/* Highest id + 1, added tokens included. */
int hlpt_tokenizer_vocab_size(const hlpt_tokenizer *tok);
/* The id of a piece (NUL-terminated, borrowed): an added token's content or a vocab string, as HF
 * token_to_id; -1 if absent. */
int hlpt_tokenizer_token_id(const hlpt_tokenizer *tok, const char *piece);
/* The vocab string of an id (added token content for added tokens), valid until the tokenizer is
 * freed; NULL if out of range or a hole in the vocab. */
const char *hlpt_tokenizer_piece(const hlpt_tokenizer *tok, int id);
/* 1 if id is an added token marked special, else 0 (also for ids out of range). */
int hlpt_tokenizer_is_special(const hlpt_tokenizer *tok, int id);
/* The detected kind. */
hlpt_tokenizer_kind hlpt_tokenizer_get_kind(const hlpt_tokenizer *tok);
/* The conventional BOS id: the token "<s>" or "<|begin_of_text|>" (in that order), -1 if neither
 * exists. Prefer config.json's bos_token_id when a model directory is at hand. */
int hlpt_tokenizer_default_bos(const hlpt_tokenizer *tok);

#endif
