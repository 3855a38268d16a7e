/*
 * Non-blocking body reads at the C API, under AddressSanitizer:
 * warpcore_body_try_read never waits (WOULD_BLOCK while nothing arrived, on
 * the test's own thread too), warpcore_body_on_readable's callback runs once
 * per WOULD_BLOCK when bytes arrive, and a 256 KiB upload sent in pieces is
 * read whole by a loop that waits only for the callback. Misuse: NULL body,
 * NULL len, NULL callback (removes it: no more calls). The callback never
 * runs after warpcore_body_free returned: 50 races of a free against bytes
 * arriving, the callback's userdata freed as soon as the free returned (a
 * use after free otherwise).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#define UPLOAD (256 * 1024)

static _Atomic(warpcore_response *) kept_handle;
static _Atomic(warpcore_body *) kept_body;
static atomic_int taken;

struct box {
    atomic_int calls;
    atomic_int inside;
};

static void count_ready(void *userdata) {
    struct box *b = userdata;
    atomic_fetch_add(&b->calls, 1);
}

static void touch_slowly(void *userdata) {
    struct box *b = userdata;
    atomic_fetch_add(&b->inside, 1);
    sleep_ms(1); /* widens the window a free must wait through */
    atomic_fetch_add(&b->inside, -1);
    atomic_fetch_add(&b->calls, 1);
}

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    warpcore_body *body = NULL;
    CHECK_RESULT(warpcore_response_body(res, &body), WARPCORE_RESULT_OK);
    atomic_store(&kept_body, body);
    atomic_store(&kept_handle, res);
    atomic_fetch_add(&taken, 1);
}

/* Sends a head promising `length` bytes on a new connection; waits for the body. */
static int start_upload(uint16_t port, long length) {
    int before = atomic_load(&taken);
    int fd = connect_local(port);
    CHECK(fd >= 0);
    char head[128];
    int n = snprintf(head, sizeof head, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %ld\r\n\r\n", length);
    CHECK(send(fd, head, (size_t)n, MSG_NOSIGNAL) == n);
    CHECK(wait_at_least(&taken, before + 1, 10000));
    return fd;
}

struct sender {
    int fd;
    size_t len;
};

static void *send_pieces(void *arg) {
    struct sender *s = arg;
    uint8_t piece[4096];
    for (size_t sent = 0; sent < s->len; sent += sizeof piece) {
        for (size_t i = 0; i < sizeof piece; i++) piece[i] = (uint8_t)((sent + i) * 13);
        if (send(s->fd, piece, sizeof piece, MSG_NOSIGNAL) != (ssize_t)sizeof piece) break;
    }
    return NULL;
}

int main(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_whole_body_max(config, 1024), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("body_nonblocking");
    uint16_t port = warpcore_server_port(server);
    uint8_t buf[8192];
    size_t n = 0;

    CHECK_RESULT(warpcore_body_try_read(NULL, buf, sizeof buf, &n), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_body_on_readable(NULL, count_ready, NULL), WARPCORE_RESULT_NULL_ARGUMENT);

    /* A whole upload, read by a loop that waits only for the callback. */
    int fd = start_upload(port, UPLOAD);
    warpcore_body *body = atomic_load(&kept_body);
    struct box *b = calloc(1, sizeof *b);
    CHECK_RESULT(warpcore_body_try_read(body, buf, sizeof buf, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_body_on_readable(body, count_ready, b), WARPCORE_RESULT_OK);
    /* Nothing sent yet: no wait, on this (non-worker) thread either. */
    CHECK_RESULT(warpcore_body_try_read(body, buf, sizeof buf, &n), WARPCORE_RESULT_WOULD_BLOCK);
    struct sender s = {fd, UPLOAD};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, send_pieces, &s) == 0);
    size_t total = 0;
    int seen = 0, would_blocks = 1;
    for (;;) {
        warpcore_result r = warpcore_body_try_read(body, buf, sizeof buf, &n);
        if (r == WARPCORE_RESULT_WOULD_BLOCK) {
            /* The callback is owed: wait for it, the only event there is. */
            would_blocks++;
            CHECK(wait_at_least(&b->calls, seen + 1, 10000));
            seen = atomic_load(&b->calls);
            continue;
        }
        CHECK_RESULT(r, WARPCORE_RESULT_OK);
        if (r != WARPCORE_RESULT_OK || n == 0) break;
        for (size_t i = 0; i < n; i++) CHECK(buf[i] == (uint8_t)((total + i) * 13));
        total += n;
    }
    pthread_join(t, NULL);
    CHECK(total == UPLOAD);
    /* One callback per WOULD_BLOCK that was not the last word (the body ended). */
    CHECK(atomic_load(&b->calls) <= would_blocks);
    /* NULL removes it: the end is sticky, and no call comes. */
    CHECK_RESULT(warpcore_body_on_readable(body, NULL, NULL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_body_try_read(body, buf, sizeof buf, &n), WARPCORE_RESULT_OK);
    CHECK(n == 0);
    warpcore_body_free(body);
    free(b);
    CHECK_RESULT(warpcore_respond(atomic_load(&kept_handle), 200, NULL, 0, NULL, 0), WARPCORE_RESULT_OK);
    close(fd);

    /* Freed while bytes arrive: the callback has returned when the free
     * does, and never runs after it. */
    int ran = 0;
    for (int i = 0; i < 50; i++) {
        fd = start_upload(port, 64 * 1024);
        body = atomic_load(&kept_body);
        warpcore_response *res = atomic_load(&kept_handle);
        b = calloc(1, sizeof *b);
        CHECK_RESULT(warpcore_body_on_readable(body, touch_slowly, b), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_body_try_read(body, buf, sizeof buf, &n), WARPCORE_RESULT_WOULD_BLOCK);
        uint8_t piece[1000];
        memset(piece, 'q', sizeof piece);
        CHECK(send(fd, piece, sizeof piece, MSG_NOSIGNAL) == (ssize_t)sizeof piece);
        if (i % 2) sleep_ms(i % 3); /* vary who wins: not waited on for any event */
        warpcore_body_free(body);
        CHECK(atomic_load(&b->inside) == 0);
        ran += atomic_load(&b->calls);
        free(b);
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, NULL, 0), WARPCORE_RESULT_OK);
        close(fd);
    }
    printf("body_nonblocking: the callback ran in %d of 50 races\n", ran);

    CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    return check_finish("body_nonblocking");
}
