/*
 * notify.h - the sd_notify(3) protocol, spoken directly: one datagram to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or an abstract name when it starts with '@'). Without NOTIFY_SOCKET (not
 * started by systemd with Type=notify) it does nothing.
 */
#ifndef HLPTD_NOTIFY_H
#define HLPTD_NOTIFY_H

#include <stddef.h>

/* Sends `state` (borrows; e.g. "READY=1", "STOPPING=1", "STATUS=loading model"). Returns HLPT_OK
 * (also when there is no socket) or HLPT_ERR_IO with why. Any thread. */
int hlptd_sd_notify(const char *state, char *why, size_t len);

#endif
