/*
 * dataset.c - see dataset.h. A line is checked for UTF-8, parsed with cJSON, classified by its
 * keys, checked field by field, and rendered into prompt + completion with a small growable string.
 * Chat templates are a table of the text around each role's turn.
 */
#include "hlpt/dataset.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"

static const char *const format_names[] = {
    "unknown",
#define X(name, str) str,
    HLPT_DATASET_FORMATS(X)
#undef X
};

const char *hlpt_dataset_format_name(hlpt_dataset_format f) {
    if ((unsigned)f >= sizeof format_names / sizeof format_names[0]) return "unknown";
    return format_names[f];
}

/* ---- the Alpaca templates (Taori et al. 2023, as in the HLPT authors' code) ------------------- */

static const char alpaca_no_input[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n%s\n\n### Response:\n";
static const char alpaca_with_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n"
    "### Response:\n";

/* ---- chat templates ----------------------------------------------------------------------------
 * A turn renders as begin + content + end. The final assistant turn is the completion: its begin
 * closes the prompt, and its content + final_end is the completion. Templates that have no system
 * turn fold the system message into the first user turn (sys_fold_begin + system + sys_fold_end
 * before the user's content), as Llama-2-chat does. BOS/EOS are token ids added by the tokenizer
 * stage, so "<s>"/"</s>" never appear as text here; for llama2 this means earlier turns are not
 * separated by "</s><s>" as in Meta's template (one EOS ends the completion). */
typedef struct {
    const char *name;
    const char *sys_begin, *sys_end;           /* NULL = fold into the first user turn */
    const char *sys_fold_begin, *sys_fold_end;
    const char *user_begin, *user_end;
    const char *asst_begin, *asst_end;
    const char *final_end;                     /* after the completion's content */
} chat_tpl;

static const chat_tpl templates[] = {
    {"chatml", "<|im_start|>system\n", "<|im_end|>\n", NULL, NULL, "<|im_start|>user\n", "<|im_end|>\n",
     "<|im_start|>assistant\n", "<|im_end|>\n", "<|im_end|>"},
    {"llama2", NULL, NULL, "<<SYS>>\n", "\n<</SYS>>\n\n", "[INST] ", " [/INST]", " ", " ", ""},
};


static const chat_tpl *find_template(const char *name) {
    if (!name) return &templates[0];
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++)
        if (strcmp(templates[i].name, name) == 0) return &templates[i];
    return NULL;
}

int hlpt_chat_template_known(const char *name) { return name && find_template(name) != NULL; }

/* ---- UTF-8 -------------------------------------------------------------------------------------- */

int hlpt_utf8_valid(const char *str, size_t n, size_t *bad) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp, min;
        if (c == 0) goto fail;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) k = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) k = 3, cp = c & 0x07, min = 0x10000;
        else goto fail;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) goto fail;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto fail;
        i += k + 1;
    }
    return 1;
fail:
    if (bad) *bad = i;
    return 0;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* ---- a growable string -------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + k + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = cap;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

/* Takes the string out of b; "" for an empty one. NULL on out of memory. */
static char *sb_take(sbuf *b) {
    if (!b->oom && !b->p) sb_add(b, "");
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

/* ---- one line ------------------------------------------------------------------------------------ */

typedef struct {
    size_t lineno;
    char *why;
    size_t len;
} ctx;

static int bad(const ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const ctx *c, const char *fmt, ...) {
    if (c->why && c->len) {
        int k = snprintf(c->why, c->len, "line %zu: ", c->lineno);
        if (k > 0 && (size_t)k < c->len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->why + k, c->len - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return HLPT_ERR_FORMAT;
}

/* The string field `name` of obj: required or optional (*out NULL when absent or null), non-empty
 * when nonempty is set. */
static int get_str(const ctx *c, const cJSON *obj, const char *name, int required, int nonempty, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || (!required && cJSON_IsNull(v))) return required ? bad(c, "field `%s` missing", name) : HLPT_OK;
    if (!cJSON_IsString(v)) return bad(c, "field `%s` must be a string", name);
    if (nonempty && !*v->valuestring) return bad(c, "field `%s` is empty", name);
    *out = v->valuestring;
    return HLPT_OK;
}

static hlpt_dataset_format classify(const cJSON *o) {
    if (cJSON_GetObjectItemCaseSensitive(o, "messages")) return HLPT_DATASET_MESSAGES;
    if (cJSON_GetObjectItemCaseSensitive(o, "instruction") || cJSON_GetObjectItemCaseSensitive(o, "output"))
        return HLPT_DATASET_ALPACA;
    if (cJSON_GetObjectItemCaseSensitive(o, "prompt") || cJSON_GetObjectItemCaseSensitive(o, "completion"))
        return HLPT_DATASET_PROMPT_COMPLETION;
    if (cJSON_GetObjectItemCaseSensitive(o, "text")) return HLPT_DATASET_TEXT;
    return HLPT_DATASET_UNKNOWN;
}

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };
static const char *const role_names[] = {"system", "user", "assistant"};

/* ---- OpenAI's message shapes ---------------------------------------------------------------------
 * Requests and training lines may use every text shape OpenAI's chat API takes; they are brought
 * to (role, text) before a template renders them, so both render alike:
 *   - `developer` is the system role under its newer name;
 *   - content is a string, an array of text parts ({type: "text", text}) joined, or null for an
 *     assistant turn that only calls tools;
 *   - an assistant's tool_calls follow its text, one block each,
 *     <tool_call>\n{"name": …, "arguments": …}\n</tool_call> (arguments parsed when they are JSON);
 *   - a `tool` message is a user turn holding <tool_response>\n…\n</tool_response>.
 * The tool blocks are the ones Qwen2.5's chat template writes; the llama2 and chatml templates
 * have no tool role of their own. */

static int chat_fail(char *why, size_t len, int i, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int chat_fail(char *why, size_t len, int i, const char *fmt, ...) {
    if (why && len) {
        int k = snprintf(why, len, "`messages[%d]", i);
        if (k > 0 && (size_t)k < len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(why + k, len - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return HLPT_ERR_FORMAT;
}

/* The text of a content value: a string, or text parts joined. */
static int content_text(const cJSON *ct, int i, sbuf *out, char *why, size_t len) {
    if (cJSON_IsString(ct)) {
        sb_add(out, ct->valuestring);
        return HLPT_OK;
    }
    if (!cJSON_IsArray(ct)) return chat_fail(why, len, i, ".content` must be a string or an array of text parts");
    int k = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, ct) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type"), *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type))
            return chat_fail(why, len, i, ".content[%d]` must be an object {type, text}", k);
        if (strcmp(type->valuestring, "text") && strcmp(type->valuestring, "input_text") &&
            strcmp(type->valuestring, "output_text"))
            return chat_fail(why, len, i, ".content[%d].type` `%.32s` is not supported: text parts only", k,
                             type->valuestring);
        if (!cJSON_IsString(text)) return chat_fail(why, len, i, ".content[%d].text` must be a string", k);
        sb_add(out, text->valuestring);
        k++;
    }
    return HLPT_OK;
}

/* Appends an assistant's tool calls as <tool_call> blocks. */
static int tool_calls_text(const cJSON *calls, int i, sbuf *out, char *why, size_t len) {
    if (!cJSON_IsArray(calls)) return chat_fail(why, len, i, ".tool_calls` must be an array");
    int k = 0;
    const cJSON *call;
    cJSON_ArrayForEach(call, calls) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name"), *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsObject(call) || !cJSON_IsObject(fn) || !cJSON_IsString(name))
            return chat_fail(why, len, i, ".tool_calls[%d].function.name` must be a string", k);
        if (args && !cJSON_IsString(args) && !cJSON_IsObject(args))
            return chat_fail(why, len, i, ".tool_calls[%d].function.arguments` must be a JSON string", k);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", name->valuestring);
        cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
        if (parsed) cJSON_AddItemToObject(o, "arguments", parsed);
        else if (args) cJSON_AddItemToObject(o, "arguments", cJSON_Duplicate(args, 1));
        else cJSON_AddItemToObject(o, "arguments", cJSON_CreateObject());
        char *j = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (out->n) sb_add(out, "\n");
        sb_add(out, "<tool_call>\n");
        sb_add(out, j ? j : "{}");
        sb_add(out, "\n</tool_call>");
        free(j);
        k++;
    }
    return HLPT_OK;
}

int hlpt_chat_message(const cJSON *m, int i, const char **role, char **text, char *why, size_t len) {
    *role = NULL;
    *text = NULL;
    if (!cJSON_IsObject(m)) return chat_fail(why, len, i, "` must be an object");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *ct = cJSON_GetObjectItemCaseSensitive(m, "content"),
                *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (!r) return chat_fail(why, len, i, ".role` missing");
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    int k = -1;
    for (int j = 0; j < 5 && cJSON_IsString(r); j++)
        if (!strcmp(r->valuestring, roles[j])) k = j;
    if (k < 0) return chat_fail(why, len, i, ".role` must be one of system, developer, user, assistant, tool");
    if (calls && cJSON_IsNull(calls)) calls = NULL;
    if (calls && k != 3) return chat_fail(why, len, i, ".tool_calls` belong to assistant messages");
    if (!ct && !calls) return chat_fail(why, len, i, ".content` missing");
    sbuf out = {0};
    int err = HLPT_OK;
    if (k == 4) sb_add(&out, "<tool_response>\n");
    if (ct && !(cJSON_IsNull(ct) && calls)) err = content_text(ct, i, &out, why, len);
    if (!err && k == 4) sb_add(&out, "\n</tool_response>");
    if (!err && calls) err = tool_calls_text(calls, i, &out, why, len);
    if (!err) {
        *text = sb_take(&out);
        out.p = NULL; /* taken, or freed by sb_take */
        if (!*text) err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    if (err) {
        free(out.p);
        return err;
    }
    static const char *const as[] = {"system", "system", "user", "assistant", "user"};
    *role = as[k];
    return HLPT_OK;
}

/* One turn that is not the completion: system (or remembered for folding), user, or an earlier
 * assistant reply. Shared by training lines and serving prompts so that both render alike. */
static void emit_turn(const chat_tpl *t, int role, const char *text, const char **system, int *first_user, sbuf *prompt) {
    if (role == ROLE_SYSTEM) {
        if (t->sys_begin) sb_add(prompt, t->sys_begin), sb_add(prompt, text), sb_add(prompt, t->sys_end);
        else *system = text;
    } else if (role == ROLE_USER) {
        sb_add(prompt, t->user_begin);
        if (*first_user && *system)
            sb_add(prompt, t->sys_fold_begin), sb_add(prompt, *system), sb_add(prompt, t->sys_fold_end);
        *first_user = 0;
        sb_add(prompt, text);
        sb_add(prompt, t->user_end);
    } else {
        sb_add(prompt, t->asst_begin);
        sb_add(prompt, text);
        sb_add(prompt, t->asst_end);
    }
}

static int render_messages(const ctx *c, const cJSON *o, const chat_tpl *t, sbuf *prompt, sbuf *completion) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    int n = cJSON_GetArraySize(msgs);
    if (!cJSON_IsArray(msgs) || n == 0) return bad(c, "field `messages` must be a non-empty array");
    /* The texts live until the prompt is rendered: a folded system message is emitted later. */
    char **texts = calloc((size_t)n, sizeof *texts);
    if (!texts) return hlpt_why(c->why, c->len, HLPT_ERR_NOMEM, "out of memory");
    const char *system = NULL;
    int i = 0, first_user = 1, err = HLPT_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const char *role;
        char msg[256];
        if (hlpt_chat_message(m, i, &role, &texts[i], msg, sizeof msg)) {
            err = bad(c, "field %s", msg);
            break;
        }
        int r = !strcmp(role, "system") ? ROLE_SYSTEM : !strcmp(role, "user") ? ROLE_USER : ROLE_ASSISTANT;
        const char *text = texts[i];
        int last = i == n - 1;
        if (r == ROLE_SYSTEM && i != 0) {
            err = bad(c, "field `messages[%d]`: a system message must come first", i);
            break;
        }
        if (last && r != ROLE_ASSISTANT) {
            err = bad(c, "field `messages`: the last message must be the assistant's (it is what is trained on)");
            break;
        }
        if (last && !*text) {
            err = bad(c, "field `messages[%d].content` is empty", i);
            break;
        }
        if (last) {
            sb_add(prompt, t->asst_begin);
            sb_add(completion, text);
            sb_add(completion, t->final_end);
        } else {
            emit_turn(t, r, text, &system, &first_user, prompt);
        }
        i++;
    }
    for (int k = 0; k < n; k++) free(texts[k]);
    free(texts);
    return err;
}

int hlpt_chat_prompt(const hlpt_chat_msg *msgs, int n, const char *chat_template, char **out, char *why, size_t len) {
    *out = NULL;
    const chat_tpl *t = find_template(chat_template);
    if (!t) return hlpt_why(why, len, HLPT_ERR_INVAL, "unknown chat template `%s` (known: chatml, llama2)", chat_template);
    if (n <= 0) return hlpt_why(why, len, HLPT_ERR_FORMAT, "`messages` must be a non-empty array");
    const char *system = NULL;
    int first_user = 1;
    sbuf prompt = {0};
    for (int i = 0; i < n; i++) {
        int role = -1;
        for (int k = 0; k < 3 && msgs[i].role; k++)
            if (strcmp(msgs[i].role, role_names[k]) == 0) role = k;
        if (role < 0) {
            free(prompt.p);
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "`messages[%d].role` must be one of system, user, assistant", i);
        }
        if (!msgs[i].content) {
            free(prompt.p);
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "`messages[%d].content` missing", i);
        }
        if (role == ROLE_SYSTEM && i != 0) {
            free(prompt.p);
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "`messages[%d]`: a system message must come first", i);
        }
        emit_turn(t, role, msgs[i].content, &system, &first_user, &prompt);
    }
    sb_add(&prompt, t->asst_begin);
    *out = sb_take(&prompt);
    return *out ? HLPT_OK : hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
}

static int render(const ctx *c, const cJSON *o, hlpt_dataset_format f, const chat_tpl *t, sbuf *prompt,
                  sbuf *completion) {
    const char *a, *b, *in;
    int err;
    switch (f) {
    case HLPT_DATASET_PROMPT_COMPLETION:
        if ((err = get_str(c, o, "prompt", 1, 0, &a)) || (err = get_str(c, o, "completion", 1, 1, &b))) return err;
        sb_add(prompt, a);
        sb_add(completion, b);
        return HLPT_OK;
    case HLPT_DATASET_ALPACA: {
        if ((err = get_str(c, o, "instruction", 1, 1, &a)) || (err = get_str(c, o, "input", 0, 0, &in)) ||
            (err = get_str(c, o, "output", 1, 1, &b)))
            return err;
        /* The template is applied by splitting it at its %s markers, so the user's text is copied
         * verbatim (a '%' in it means nothing). */
        const char *tpl = in && *in ? alpaca_with_input : alpaca_no_input;
        const char *args[2] = {a, in};
        int k = 0;
        for (const char *p = tpl; *p;) {
            const char *q = strstr(p, "%s");
            if (!q) {
                sb_add(prompt, p);
                break;
            }
            char piece[256];
            size_t m = (size_t)(q - p);
            HLPT_ASSERT(m < sizeof piece);
            memcpy(piece, p, m);
            piece[m] = 0;
            sb_add(prompt, piece);
            sb_add(prompt, args[k++]);
            p = q + 2;
        }
        sb_add(completion, b);
        return HLPT_OK;
    }
    case HLPT_DATASET_MESSAGES:
        return render_messages(c, o, t, prompt, completion);
    case HLPT_DATASET_TEXT:
        if ((err = get_str(c, o, "text", 1, 1, &b))) return err;
        sb_add(completion, b);
        return HLPT_OK;
    default:
        return bad(c, "no known example format (expected keys prompt/completion, instruction/output, messages "
                      "or text)");
    }
}

int hlpt_dataset_parse_line(const char *line, size_t n, size_t lineno, const char *chat_template, hlpt_example *ex,
                            char *why, size_t len) {
    memset(ex, 0, sizeof *ex);
    ctx c = {lineno, why, len};
    const chat_tpl *t = find_template(chat_template);
    if (!t) return hlpt_why(why, len, HLPT_ERR_INVAL, "unknown chat template `%s` (known: chatml, llama2)", chat_template);
    if (n && line[n - 1] == '\r') n--;
    size_t k = 0;
    while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
    if (k == n) return HLPT_ERR_NOENT;
    size_t badpos;
    if (!hlpt_utf8_valid(line, n, &badpos)) {
        return line[badpos] ? bad(&c, "invalid UTF-8 at byte %zu", badpos + 1)
                            : bad(&c, "NUL byte at byte %zu", badpos + 1);
    }
    char *copy = malloc(n + 1);
    if (!copy) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    memcpy(copy, line, n);
    copy[n] = 0;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(copy, &end, 1);
    sbuf prompt = {0}, completion = {0};
    int err = HLPT_OK;
    if (!o) {
        err = bad(&c, "invalid JSON at byte %zu", (size_t)((end ? end : copy) - copy) + 1);
        goto out;
    }
    if (!cJSON_IsObject(o)) {
        err = bad(&c, "expected a JSON object");
        goto out;
    }
    hlpt_dataset_format f = classify(o);
    if ((err = render(&c, o, f, t, &prompt, &completion))) goto out;
    ex->format = f;
    ex->prompt = sb_take(&prompt);
    ex->completion = sb_take(&completion);
    prompt.p = completion.p = NULL;
    if (!ex->prompt || !ex->completion) {
        hlpt_example_free(ex);
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
out:
    free(prompt.p);
    free(completion.p);
    cJSON_Delete(o);
    free(copy);
    return err;
}

void hlpt_example_free(hlpt_example *ex) {
    if (!ex) return;
    free(ex->prompt);
    free(ex->completion);
    memset(ex, 0, sizeof *ex);
}

/* ---- a file, piece by piece -----------------------------------------------------------------------
 * Lines are cut at '\n' as they come; a line wholly inside a piece is checked where it lies, one that
 * spans pieces is gathered in `line` first. The first error is kept with its message and returned
 * again by every later call. */

struct hlpt_dataset_validator {
    hlpt_dataset_opts opts;
    hlpt_dataset_stats st;
    size_t lineno;     /* lines seen so far */
    size_t first_line; /* the line that set the format */
    uint64_t bytes;    /* fed so far */
    char *line;        /* the start of a line that spans pieces */
    size_t nline, cap;
    int err;           /* final once set */
    char msg[512];     /* its why */
};

int hlpt_dataset_validator_new(const hlpt_dataset_opts *opts, hlpt_dataset_validator **out) {
    hlpt_dataset_validator *v = calloc(1, sizeof *v);
    *out = v;
    if (!v) return HLPT_ERR_NOMEM;
    if (opts) v->opts = *opts;
    v->st.tokens = v->st.max_example_tokens = v->opts.count_tokens ? 0 : -1;
    return HLPT_OK;
}

void hlpt_dataset_validator_free(hlpt_dataset_validator *v) {
    if (!v) return;
    free(v->line);
    free(v);
}

static int vfail(hlpt_dataset_validator *v, int err) {
    v->err = err;
    return err;
}

/* One line (without its '\n'). */
static int check_line(hlpt_dataset_validator *v, const char *p, size_t n) {
    hlpt_dataset_stats *st = &v->st;
    size_t lineno = ++v->lineno;
    st->lines = lineno;
    if (n > HLPT_DATASET_LINE_MAX) {
        hlpt_why(v->msg, sizeof v->msg, HLPT_ERR_FORMAT, "line %zu: longer than %zu bytes", lineno, HLPT_DATASET_LINE_MAX);
        return vfail(v, HLPT_ERR_FORMAT);
    }
    hlpt_example ex;
    int err = hlpt_dataset_parse_line(p, n, lineno, v->opts.chat_template, &ex, v->msg, sizeof v->msg);
    if (err == HLPT_ERR_NOENT) return HLPT_OK;
    if (err) return vfail(v, err);
    if (st->format == HLPT_DATASET_UNKNOWN) {
        st->format = ex.format;
        v->first_line = lineno;
    } else if (ex.format != st->format) {
        hlpt_dataset_format f = ex.format;
        hlpt_example_free(&ex);
        hlpt_why(v->msg, sizeof v->msg, HLPT_ERR_FORMAT, "line %zu: format %s differs from %s of line %zu", lineno,
                 hlpt_dataset_format_name(f), hlpt_dataset_format_name(st->format), v->first_line);
        return vfail(v, HLPT_ERR_FORMAT);
    }
    size_t pc = utf8_chars(ex.prompt), cc = utf8_chars(ex.completion);
    st->examples++;
    st->prompt_chars += pc;
    st->completion_chars += cc;
    if (pc + cc > st->max_example_chars) st->max_example_chars = pc + cc;
    if (v->opts.count_tokens) {
        size_t tp = 0, tc = 0;
        if ((err = v->opts.count_tokens(v->opts.count_ctx, ex.prompt, strlen(ex.prompt), &tp)) ||
            (err = v->opts.count_tokens(v->opts.count_ctx, ex.completion, strlen(ex.completion), &tc))) {
            hlpt_example_free(&ex);
            hlpt_why(v->msg, sizeof v->msg, err, "line %zu: tokenizer failed: %s", lineno, hlpt_strerror(err));
            return vfail(v, err);
        }
        st->tokens += (int64_t)(tp + tc);
        if ((int64_t)(tp + tc) > st->max_example_tokens) st->max_example_tokens = (int64_t)(tp + tc);
    }
    hlpt_example_free(&ex);
    return HLPT_OK;
}

/* Adds p[0..n) to the line being gathered. A line past the limit fails now: whatever follows, it is
 * too long, so the error does not depend on where the pieces were cut. */
static int gather(hlpt_dataset_validator *v, const char *p, size_t n) {
    if (v->nline + n > HLPT_DATASET_LINE_MAX) {
        hlpt_why(v->msg, sizeof v->msg, HLPT_ERR_FORMAT, "line %zu: longer than %zu bytes", v->lineno + 1,
                 HLPT_DATASET_LINE_MAX);
        return vfail(v, HLPT_ERR_FORMAT);
    }
    if (v->nline + n > v->cap) {
        size_t cap = v->cap ? v->cap : 4096;
        while (cap < v->nline + n) cap *= 2;
        char *nl = realloc(v->line, cap);
        if (!nl) {
            hlpt_why(v->msg, sizeof v->msg, HLPT_ERR_NOMEM, "out of memory");
            return vfail(v, HLPT_ERR_NOMEM);
        }
        v->line = nl, v->cap = cap;
    }
    memcpy(v->line + v->nline, p, n);
    v->nline += n;
    return HLPT_OK;
}

int hlpt_dataset_validator_feed(hlpt_dataset_validator *v, const char *buf, size_t n, char *why, size_t len) {
    v->bytes += n;
    for (size_t pos = 0; pos < n && !v->err;) {
        const char *nl = memchr(buf + pos, '\n', n - pos);
        if (!nl) {
            gather(v, buf + pos, n - pos);
            break;
        }
        size_t end = (size_t)(nl - buf);
        if (!v->nline) {
            check_line(v, buf + pos, end - pos);
        } else if (!gather(v, buf + pos, end - pos)) {
            size_t k = v->nline;
            v->nline = 0;
            check_line(v, v->line, k);
        }
        pos = end + 1;
    }
    return v->err ? hlpt_why(why, len, v->err, "%s", v->msg) : HLPT_OK;
}

int hlpt_dataset_validator_finish(hlpt_dataset_validator *v, hlpt_dataset_stats *stats, char *why, size_t len) {
    if (stats) {
        *stats = (hlpt_dataset_stats){.tokens = -1, .max_example_tokens = -1};
        if (v->opts.count_tokens) stats->tokens = stats->max_example_tokens = 0;
    }
    if (!v->err && v->nline) {
        size_t k = v->nline;
        v->nline = 0;
        check_line(v, v->line, k);
    }
    if (!v->err && v->bytes == 0) {
        hlpt_why(v->msg, sizeof v->msg, HLPT_ERR_FORMAT, "file is empty");
        vfail(v, HLPT_ERR_FORMAT);
    }
    if (!v->err && v->st.examples == 0) {
        hlpt_why(v->msg, sizeof v->msg, HLPT_ERR_FORMAT, "file has no examples (only blank lines)");
        vfail(v, HLPT_ERR_FORMAT);
    }
    if (v->err) return hlpt_why(why, len, v->err, "%s", v->msg);
    if (stats) *stats = v->st;
    return HLPT_OK;
}

/* ---- a whole file -------------------------------------------------------------------------------- */

int hlpt_dataset_validate_ex(const char *buf, size_t n, const hlpt_dataset_opts *opts, hlpt_dataset_stats *stats,
                             char *why, size_t len) {
    hlpt_dataset_validator *v;
    if (hlpt_dataset_validator_new(opts, &v)) {
        if (stats) *stats = (hlpt_dataset_stats){.tokens = -1, .max_example_tokens = -1};
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    int err = hlpt_dataset_validator_feed(v, buf, n, why, len);
    if (!err) err = hlpt_dataset_validator_finish(v, stats, why, len);
    else if (stats) hlpt_dataset_validator_finish(v, stats, NULL, 0);
    hlpt_dataset_validator_free(v);
    return err;
}

int hlpt_dataset_validate(const char *buf, size_t n, hlpt_dataset_stats *stats, char *why, size_t len) {
    return hlpt_dataset_validate_ex(buf, n, NULL, stats, why, len);
}
