/*
 * web.h - the dashboard's static files in web/, compiled into hlptd by tools/gen-web.sh as a table,
 * so an installed daemon needs no files beside it. Served by api/web.c.
 */
#ifndef HLPTD_WEB_H
#define HLPTD_WEB_H

#include <stddef.h>

typedef struct {
    const char *name;          /* file name in web/, e.g. "app.js" */
    const unsigned char *data; /* the bytes, followed by a NUL that size does not count */
    size_t size;               /* bytes */
    const char *etag;          /* quoted strong validator: the start of the file's SHA-256 */
} hlptd_web_file;

extern const hlptd_web_file hlptd_web_files[];
extern const int hlptd_web_nfiles;

/* The file called name, or NULL. Borrows name; the result is static. Any thread. */
const hlptd_web_file *hlptd_web_find(const char *name);
/* The Content-Type for a file name, by its extension ("application/octet-stream" when unknown). */
const char *hlptd_web_content_type(const char *name);

#endif
