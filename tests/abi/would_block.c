/*
 * A handler writing to another request's stream (publish/subscribe) never
 * waits: over the stream's high-water mark warpcore_response_write and
 * warpcore_response_write_buffer return WARPCORE_RESULT_WOULD_BLOCK at once,
 * sending nothing (a buffer is released before the call returns) and leaving
 * the handle to the caller, still streaming. The worker answers the
 * publisher and later requests; ending the stream afterwards sends the
 * subscriber exactly what was accepted. Run under ASan/LSan: the subscriber's
 * handle is released by warpcore_response_end.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#define HIGH_WATER (64 * 1024)
#define CHUNK (64 * 1024)
/* Without a refusal the publisher stops here (an unbounded queue takes it all). */
#define LIMIT (64L << 20)

static _Atomic(warpcore_response *) sub;
static atomic_int pub_result = -1;
static atomic_int buffer_result = -1;
static atomic_long accepted;
static atomic_int released;
static atomic_int released_before_return = -1;
static atomic_int end_result = -1;

static const warpcore_header chunked_fields[] = {{{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}}};

static void release(void *userdata, const uint8_t *data, size_t len) {
    (void)userdata;
    (void)data;
    (void)len;
    atomic_fetch_add(&released, 1);
}

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    static const uint8_t hello[] = "subscribed\n";
    static uint8_t p[CHUNK], q[CHUNK];
    if (wstr_is(req->path, "/sub")) {
        CHECK_RESULT(warpcore_response_start(res, 200, chunked_fields, 1, -1), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_write(res, hello, sizeof hello - 1), WARPCORE_RESULT_OK);
        atomic_store(&sub, res); /* returns unfinished: the handle is ours now */
    } else if (wstr_is(req->path, "/pub")) {
        warpcore_response *s = atomic_load(&sub);
        memset(p, 'p', sizeof p);
        memset(q, 'q', sizeof q);
        warpcore_result rc = WARPCORE_RESULT_OK;
        long n = 0;
        while (n < LIMIT && (rc = warpcore_response_write(s, p, sizeof p)) == WARPCORE_RESULT_OK) n += CHUNK;
        atomic_store(&accepted, n);
        atomic_store(&pub_result, (int)rc);
        atomic_store(&buffer_result, (int)warpcore_response_write_buffer(s, q, sizeof q, release, NULL));
        atomic_store(&released_before_return, atomic_load(&released));
        warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"published", 9);
    } else if (wstr_is(req->path, "/end")) {
        atomic_store(&end_result, (int)warpcore_response_end(atomic_load(&sub)));
        warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"ended", 5);
    } else {
        warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"after", 5);
    }
}

static int starts_with_200(const char *reply, long n) {
    return n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0;
}

int main(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_stream_high_water(config, HIGH_WATER), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("would_block");
    uint16_t port = warpcore_server_port(server);
    static char reply[4096];

    /* A subscriber that does not read yet. */
    int fd = connect_local_rcvbuf(port, 4096); /* a subscriber with a small receive buffer */
    CHECK(fd >= 0);
    if (fd < 0) return check_finish("would_block");
    static const char subscribe[] = "GET /sub HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    CHECK(send(fd, subscribe, sizeof subscribe - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof subscribe - 1));
    for (int i = 0; i < 2000 && !atomic_load(&sub); i++) sleep_ms(5);
    CHECK(atomic_load(&sub) != NULL);

    /* The publisher, on the subscriber's worker, is answered. */
    long n = http_exchange(port, "GET /pub HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(starts_with_200(reply, n) && strstr(reply, "\r\n\r\npublished") != NULL);
    CHECK_RESULT((warpcore_result)atomic_load(&pub_result), WARPCORE_RESULT_WOULD_BLOCK);
    CHECK_RESULT((warpcore_result)atomic_load(&buffer_result), WARPCORE_RESULT_WOULD_BLOCK);
    CHECK(atomic_load(&released_before_return) == 1);
    /* Nothing leaves during the handler call: one write past the mark at most. */
    long taken = atomic_load(&accepted);
    CHECK(taken > 0 && taken <= HIGH_WATER + CHUNK);

    /* Later requests on that worker are answered. */
    n = http_exchange(port, "GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(starts_with_200(reply, n) && strstr(reply, "\r\n\r\nafter") != NULL);

    /* The refused handle still streams: end it; the subscriber gets what was accepted. */
    n = http_exchange(port, "GET /end HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(starts_with_200(reply, n));
    CHECK_RESULT((warpcore_result)atomic_load(&end_result), WARPCORE_RESULT_OK);
    size_t cap = 4u << 20, got = 0;
    char *all = malloc(cap);
    CHECK(all != NULL);
    for (;;) {
        ssize_t r = all ? recv(fd, all + got, cap - got, 0) : -1;
        if (r == 0 || (r < 0 && errno != EINTR) || got == cap) break;
        if (r > 0) got += (size_t)r;
    }
    close(fd);
    const char *body = NULL;
    for (size_t i = 0; all && i + 4 <= got; i++) {
        if (memcmp(all + i, "\r\n\r\n", 4) == 0) {
            body = all + i + 4;
            break;
        }
    }
    CHECK(all != NULL && starts_with_200(all, (long)got) && body != NULL);
    long ps = 0, qs = 0;
    for (const char *c = body; body && c < all + got; c++) {
        ps += *c == 'p';
        qs += *c == 'q';
    }
    CHECK(ps == taken);
    CHECK(qs == 0);
    free(all);

    CHECK(atomic_load(&released) == 1);
    CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    return check_finish("would_block");
}
