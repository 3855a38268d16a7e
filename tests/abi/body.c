/*
 * Request bodies that stream, at the C API: warpcore_response_body,
 * warpcore_body_read and warpcore_body_free. A 1 MiB upload is read on a
 * thread of the test's own and counted; the handler's own read on the worker
 * returns WOULD_BLOCK; and the misuse a careless caller makes gets its
 * documented code: NULL arguments, a second take, a take after the handler
 * returned, a take on a whole body, a stale handle, reads after the end,
 * freeing NULL. Run under AddressSanitizer: no call touches freed memory.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#define UPLOAD (1024 * 1024)

static atomic_int handled;
static atomic_int counted;
static warpcore_response *kept_handle;
static warpcore_body *kept_body;

static void *count_body(void *arg) {
    (void)arg;
    uint8_t buf[10000];
    size_t total = 0, n = 0;
    warpcore_result r;
    while ((r = warpcore_body_read(kept_body, buf, sizeof buf, &n)) == WARPCORE_RESULT_OK && n > 0) {
        for (size_t i = 0; i < n; i++) CHECK(buf[i] == (uint8_t)((total + i) * 7));
        total += n;
    }
    CHECK_RESULT(r, WARPCORE_RESULT_OK);
    CHECK(total == UPLOAD);
    /* The end is sticky. */
    CHECK_RESULT(warpcore_body_read(kept_body, buf, sizeof buf, &n), WARPCORE_RESULT_OK);
    CHECK(n == 0);
    char text[32];
    int len = snprintf(text, sizeof text, "%zu", total);
    CHECK_RESULT(warpcore_respond(kept_handle, 200, NULL, 0, (const uint8_t *)text, (size_t)len), WARPCORE_RESULT_OK);
    warpcore_body_free(kept_body);
    atomic_store(&counted, 1);
    return NULL;
}

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    warpcore_body *body = NULL;
    CHECK_RESULT(warpcore_response_body(res, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    if (!req->body_follows) {
        /* A whole body (or none) is in req->body: there is nothing to take. */
        CHECK_RESULT(warpcore_response_body(res, &body), WARPCORE_RESULT_INVALID_STATE);
        CHECK(body == NULL);
        warpcore_respond(res, 200, NULL, 0, req->body.ptr, req->body.len);
        atomic_fetch_add(&handled, 1);
        return;
    }
    CHECK(req->body.len == 0);
    CHECK_RESULT(warpcore_response_body(res, &body), WARPCORE_RESULT_OK);
    CHECK(body != NULL);
    /* Taken once only. */
    warpcore_body *again = NULL;
    CHECK_RESULT(warpcore_response_body(res, &again), WARPCORE_RESULT_INVALID_STATE);
    CHECK(again == NULL);
    /* On the worker thread a read never waits; argument checks come first. */
    uint8_t buf[16];
    size_t n = 99;
    warpcore_result r = warpcore_body_read(body, buf, sizeof buf, &n);
    CHECK(r == WARPCORE_RESULT_WOULD_BLOCK || (r == WARPCORE_RESULT_OK && n > 0));
    CHECK_RESULT(warpcore_body_read(body, buf, sizeof buf, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_body_read(body, NULL, 5, &n), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_body_read(NULL, buf, sizeof buf, &n), WARPCORE_RESULT_NULL_ARGUMENT);
    if (r == WARPCORE_RESULT_OK) {
        fprintf(stderr, "the test needs the body's bytes to come after the head\n");
        exit(1);
    }
    kept_handle = res;
    kept_body = body;
    atomic_fetch_add(&handled, 1);
}

/* Sends `head` then `len` patterned bytes on `fd`. */
static void send_upload(int fd, const char *head, size_t len) {
    CHECK(send(fd, head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head));
    uint8_t chunk[8192];
    for (size_t sent = 0; sent < len;) {
        size_t n = len - sent < sizeof chunk ? len - sent : sizeof chunk;
        for (size_t i = 0; i < n; i++) chunk[i] = (uint8_t)((sent + i) * 7);
        ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
        CHECK(w > 0);
        if (w <= 0) return;
        sent += (size_t)w;
    }
}

int main(void) {
    warpcore_config *config = local_config(1, handle, NULL);
    CHECK_RESULT(warpcore_config_set_max_body_size(config, UINT64_MAX), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_whole_body_max(config, 64 * 1024), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_whole_body_max(config, 65 * 1024 * 1024), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_whole_body_max(config, UINT64_MAX), WARPCORE_RESULT_INVALID_ARGUMENT);
    warpcore_server *server = start_server(config);
    uint16_t port = warpcore_server_port(server);

    /* A whole body: answered inside the call. */
    char reply[8192];
    long got = http_exchange(port, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                             reply, sizeof reply);
    CHECK(got > 0 && strstr(reply, "\r\n\r\nhello") != NULL);

    /* A streamed body: the head first, so the handler runs before any byte. */
    int fd = connect_local(port);
    CHECK(fd >= 0);
    char head[128];
    snprintf(head, sizeof head, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", UPLOAD);
    CHECK(send(fd, head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head));
    CHECK(wait_at_least(&handled, 2, 10000));
    /* After the handler returned, the handle no longer gives a body. */
    warpcore_body *late = NULL;
    CHECK_RESULT(warpcore_response_body(kept_handle, &late), WARPCORE_RESULT_INVALID_STATE);
    pthread_t reader;
    pthread_create(&reader, NULL, count_body, NULL);
    send_upload(fd, "", UPLOAD);
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, reply + len, sizeof reply - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    reply[len] = 0;
    close(fd);
    pthread_join(reader, NULL);
    CHECK(atomic_load(&counted) == 1);
    CHECK(strstr(reply, "\r\n\r\n1048576") != NULL);
    /* The handle is answered and released: a stale take is refused. */
    CHECK_RESULT(warpcore_response_body(kept_handle, &late), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK(late == NULL);
    warpcore_body_free(NULL);

    warpcore_server_shutdown(server, 1000);
    warpcore_server_free(server);
    return check_finish("body");
}
