/*
 * notify.c - see notify.h. No libsystemd: the protocol is a single sendto().
 */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hlpt/err.h"

int hlptd_sd_notify(const char *state, char *why, size_t len) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return HLPT_OK;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t pl = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || pl >= sizeof sa.sun_path)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "NOTIFY_SOCKET `%s` is not a socket path", path);
    memcpy(sa.sun_path, path, pl);
    if (path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return hlpt_why(why, len, HLPT_ERR_IO, "sd_notify socket: %s", strerror(errno));
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl);
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, sl);
    int err = n < 0 ? hlpt_why(why, len, HLPT_ERR_IO, "sd_notify %s: %s", path, strerror(errno)) : HLPT_OK;
    close(fd);
    return err;
}
