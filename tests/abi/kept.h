/*
 * For tests whose handler leaves requests unanswered and hands their handles
 * to the main thread: the handler calls keep_handle(res) last; the main
 * thread sends a request with deferred_request and gets its handle.
 */
#ifndef WARPCORE_ABI_KEPT_H
#define WARPCORE_ABI_KEPT_H

#include "check.h"

static _Atomic(warpcore_response *) kept;
static atomic_int kept_count;

/* The handler's last step: the request stays unanswered, its handle kept. */
static inline void keep_handle(warpcore_response *res) {
    atomic_store(&kept, res);
    atomic_fetch_add(&kept_count, 1);
}

/* Sends `path`'s request on a new connection and waits for its handle. */
static inline warpcore_response *deferred_request(uint16_t port, const char *path, int *fd) {
    int before = atomic_load(&kept_count);
    *fd = connect_local(port);
    CHECK(*fd >= 0);
    char request[128];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    CHECK(send(*fd, request, (size_t)n, MSG_NOSIGNAL) == n);
    CHECK(wait_at_least(&kept_count, before + 1, 10000));
    return atomic_load(&kept);
}

#endif /* WARPCORE_ABI_KEPT_H */
