/*
 * dataset.h - training examples from JSONL files (docs/rest.md, "Files"), before tokenization.
 *
 * One line holds one example in one of four formats; a file uses one format throughout:
 *
 *   prompt_completion  {"prompt": "...", "completion": "..."}
 *   alpaca             {"instruction": "...", "input": "..." (optional), "output": "..."}
 *                      rendered with the Alpaca paper's template (with or without "### Input:")
 *   messages           {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
 *                      rendered with a named chat template (hlpt_chat_template_*); the last message
 *                      must be the assistant's, and it is the completion; earlier turns are prompt
 *   text               {"text": "..."}: all completion, empty prompt
 *
 * Every example becomes prompt text + completion text; the completion is what training computes
 * the loss on by default (docs/rest.md, `train_on_inputs`). Beginning/end-of-sequence tokens are not
 * written as text: the tokenizer stage adds them as token ids, so user text can never forge them.
 *
 * Errors name the line (1-based) and the field: "line 17: field `completion` missing",
 * "line 3: invalid JSON at byte 12" (byte is 1-based within the line), "line 5: field `prompt` must
 * be a string", "line 9: format alpaca differs from prompt_completion of line 1",
 * "line 7: invalid UTF-8 at byte 4". Blank lines are skipped; "\r\n" line ends are accepted.
 *
 * Pure functions of their inputs: any thread.
 */
#ifndef HLPT_DATASET_H
#define HLPT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define HLPT_DATASET_FORMATS(X)                                                                    \
    X(PROMPT_COMPLETION, "prompt_completion")                                                      \
    X(ALPACA, "alpaca")                                                                            \
    X(MESSAGES, "messages")                                                                        \
    X(TEXT, "text")

typedef enum {
    HLPT_DATASET_UNKNOWN = 0,
#define X(name, str) HLPT_DATASET_##name,
    HLPT_DATASET_FORMATS(X)
#undef X
} hlpt_dataset_format;

/* "alpaca", ...; "unknown" for HLPT_DATASET_UNKNOWN. Never NULL. */
const char *hlpt_dataset_format_name(hlpt_dataset_format f);

/* Chat templates for the messages format, by name: "chatml" (the default) and "llama2". */
/* 1 when `name` is a known template. */
int hlpt_chat_template_known(const char *name);

/* One message of OpenAI's chat API (borrowed; index i for messages) as the templates render it:
 * *role "system" | "user" | "assistant" (static) and its text (returned owned). Takes every text
 * shape OpenAI accepts: role developer (as system), content as a string or an array of text parts,
 * an assistant's tool_calls (content may be null) and tool messages, the tool ones rendered as
 * Qwen2.5's template writes them (<tool_call>, <tool_response>). HLPT_ERR_FORMAT with why naming
 * the field ("`messages[2].content[0].type` ..."); HLPT_ERR_NOMEM. Any thread. */
struct cJSON;
int hlpt_chat_message(const struct cJSON *m, int i, const char **role, char **text, char *why, size_t len);

/* One chat message (both borrowed): role "system" | "user" | "assistant". */
typedef struct {
    const char *role;
    const char *content;
} hlpt_chat_msg;

/* The prompt a model continues to answer a conversation (serving's chat completions): every
 * message rendered exactly as in a training line of the messages format, then the assistant's
 * turn opened. So for a training line whose messages are msgs + one assistant reply, the line's
 * prompt equals this prompt. A system message may only come first. *out returned owned (free());
 * NULL on failure. Errors: HLPT_ERR_FORMAT ("`messages[2].role` must be one of ..."),
 * HLPT_ERR_INVAL (unknown template), HLPT_ERR_NOMEM. */
int hlpt_chat_prompt(const hlpt_chat_msg *msgs, int n, const char *chat_template, char **out, char *why, size_t len);

typedef struct {
    hlpt_dataset_format format;
    char *prompt;     /* owned, NUL-terminated UTF-8; "" for text */
    char *completion; /* owned, NUL-terminated UTF-8, not empty */
} hlpt_example;

/* Parses one line (borrows line[0..n); need not be NUL-terminated; no newline) numbered lineno
 * (for messages) into *ex (fields owned; free with hlpt_example_free). template: a chat template
 * name, NULL = default. A blank line is HLPT_ERR_NOENT with ex zeroed (callers skip it).
 * Returns HLPT_OK, HLPT_ERR_FORMAT (bad line; why says what), HLPT_ERR_INVAL (unknown template),
 * HLPT_ERR_NOMEM. On failure ex is zeroed. */
int hlpt_dataset_parse_line(const char *line, size_t n, size_t lineno, const char *chat_template, hlpt_example *ex,
                            char *why, size_t len);
void hlpt_example_free(hlpt_example *ex);

/* Counts the tokens of one text, for statistics (the caller passes its tokenizer through ctx).
 * Returns HLPT_OK or an error that fails the validation. */
typedef int (*hlpt_dataset_count_fn)(void *ctx, const char *text, size_t n, size_t *tokens);

typedef struct {
    const char *chat_template;         /* NULL = default */
    hlpt_dataset_count_fn count_tokens; /* NULL = no token statistics */
    void *count_ctx;                   /* passed to count_tokens */
} hlpt_dataset_opts;

typedef struct {
    hlpt_dataset_format format;
    size_t examples;          /* non-blank lines */
    size_t lines;             /* all lines, blank included */
    size_t prompt_chars;      /* Unicode code points over all prompts */
    size_t completion_chars;  /* ... over all completions */
    size_t max_example_chars; /* longest prompt + completion */
    int64_t tokens;           /* prompt + completion tokens over all examples; -1 = not counted */
    int64_t max_example_tokens; /* -1 = not counted */
} hlpt_dataset_stats;

/* The longest line a file may have, bytes; a longer one is an error naming it ("line 4: longer than
 * 16777216 bytes"). It bounds the memory a validation holds. */
#define HLPT_DATASET_LINE_MAX ((size_t)16 << 20)

/* Validates a whole JSONL file buf[0..n) (borrows): every line parses, one format throughout, at
 * least one example. Fills *stats (may be NULL). Errors as hlpt_dataset_parse_line, plus "file is
 * empty", "file has no examples" and a line longer than HLPT_DATASET_LINE_MAX (HLPT_ERR_FORMAT). */
int hlpt_dataset_validate(const char *buf, size_t n, hlpt_dataset_stats *stats, char *why, size_t len);
/* The same with a chat template and an optional token counter (opts borrowed; NULL = defaults). */
int hlpt_dataset_validate_ex(const char *buf, size_t n, const hlpt_dataset_opts *opts, hlpt_dataset_stats *stats,
                             char *why, size_t len);

/* The same validation fed a file piece by piece as it arrives (an upload), lines split across
 * pieces included: whatever the pieces, the outcome, the error message (its line number) and the
 * statistics are those of hlpt_dataset_validate_ex on the whole file, which is this fed in one
 * piece. Memory: the longest line that spans pieces, at most HLPT_DATASET_LINE_MAX. */
typedef struct hlpt_dataset_validator hlpt_dataset_validator;
/* opts is copied (NULL = defaults); its chat_template and count_ctx are borrowed until
 * hlpt_dataset_validator_free. *out owned. Errors: HLPT_ERR_NOMEM. */
int hlpt_dataset_validator_new(const hlpt_dataset_opts *opts, hlpt_dataset_validator **out);
void hlpt_dataset_validator_free(hlpt_dataset_validator *v);
/* The next piece buf[0..n) (borrowed). Returns the first error as soon as a line fails (later lines
 * are not looked at), and that same error (and why) from every call after it. */
int hlpt_dataset_validator_feed(hlpt_dataset_validator *v, const char *buf, size_t n, char *why, size_t len);
/* The file has ended: validates its last line (one without a newline) and gives the verdict, with
 * *stats (may be NULL) as hlpt_dataset_validate_ex fills it. */
int hlpt_dataset_validator_finish(hlpt_dataset_validator *v, hlpt_dataset_stats *stats, char *why, size_t len);

/* Checks that s[0..n) is valid UTF-8 (no overlongs, no surrogates, no NUL). Returns 1 when valid;
 * otherwise 0 with *bad the 0-based offset of the first offending byte. */
int hlpt_utf8_valid(const char *s, size_t n, size_t *bad);

#endif
