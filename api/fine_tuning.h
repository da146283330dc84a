/*
 * fine_tuning.h - the fine-tuning REST API (api/jobs.c) and its loss plot (api/plot.c).
 */
#ifndef HLPTD_API_FINE_TUNING_H
#define HLPTD_API_FINE_TUNING_H

#include <stddef.h>

#include "app.h"

/* An SVG plot of train and validation loss against step (returns owned, *len bytes). */
int hlptd_api_loss_svg(const char *title, const hlptd_metric *rows, size_t n, char **svg, size_t *len);

#endif
