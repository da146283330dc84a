/*
 * score.c - task scoring (see score.h).
 */
#include "hlpt/score.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int hlpt_score_last_number(const char *text, double *out) {
    int found = 0;
    const char *p = text;
    while (*p) {
        if (isdigit((unsigned char)*p)) {
            /* A number: digits with optional thousands commas and one decimal point. */
            char buf[64];
            size_t k = 0;
            int neg = p > text && p[-1] == '-';
            while (*p && k + 1 < sizeof buf) {
                if (isdigit((unsigned char)*p)) buf[k++] = *p++;
                else if (*p == ',' && isdigit((unsigned char)p[1]) && k > 0) p++;
                else if (*p == '.' && isdigit((unsigned char)p[1]) && !memchr(buf, '.', k)) buf[k++] = *p++;
                else break;
            }
            buf[k] = 0;
            *out = (neg ? -1 : 1) * strtod(buf, NULL);
            found = 1;
        } else {
            p++;
        }
    }
    return found;
}

int hlpt_score_math(const char *answer, const char *reference) {
    double a, r;
    if (!hlpt_score_last_number(reference, &r) || !hlpt_score_last_number(answer, &a)) return 0;
    return fabs(a - r) < 0.001;
}

/* Normalised first line of s into buf. */
static void normalise(const char *s, char *buf, size_t len) {
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    size_t k = 0;
    for (; *s && *s != '\n' && k + 1 < len; s++) buf[k++] = *s == '_' ? ' ' : (char)tolower((unsigned char)*s);
    while (k && (buf[k - 1] == ' ' || buf[k - 1] == '\t' || buf[k - 1] == '\r' || buf[k - 1] == '.')) k--;
    buf[k] = 0;
}

int hlpt_score_exact(const char *answer, const char *reference) {
    char a[1024], r[1024];
    normalise(answer, a, sizeof a);
    normalise(reference, r, sizeof r);
    return *r && !strcmp(a, r);
}
