/*
 * warpcore_response_abort: before an answer (500, close), in the middle of a
 * chunked stream inside the handler call and from another thread after it
 * returned (the stream's end is never sent), a second abort refused, NULL
 * refused. Run under ASan/LSan: the deferred handle aborted from another
 * thread is released by the call.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

static _Atomic(warpcore_response *) kept;
static atomic_int results[4];

static const warpcore_header chunked_fields[] = {{{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}}};

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    static const uint8_t part[] = "partial ";
    if (wstr_is(req->path, "/before")) {
        atomic_store(&results[0], (int)warpcore_response_abort(res));
    } else if (wstr_is(req->path, "/stream")) {
        CHECK_RESULT(warpcore_response_start(res, 200, chunked_fields, 1, -1), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_write(res, part, sizeof part - 1), WARPCORE_RESULT_OK);
        atomic_store(&results[1], (int)warpcore_response_abort(res));
        atomic_store(&results[2], (int)warpcore_response_abort(res));
    } else {
        /* Returns without answering: the test answers from its own thread. */
        atomic_store(&kept, res);
    }
}

int main(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("abort");
    uint16_t port = warpcore_server_port(server);
    char reply[4096];

    CHECK_RESULT(warpcore_response_abort(NULL), WARPCORE_RESULT_NULL_ARGUMENT);

    /* Before anything was sent: 500 and the connection closes, so the
     * pipelined request after it gets no answer. */
    long n = http_exchange(port, "GET /before HTTP/1.1\r\nHost: t\r\n\r\nGET /before HTTP/1.1\r\nHost: t\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 500 ", 13) == 0);
    CHECK(strstr(reply, "\r\nConnection: close\r\n") != NULL);
    CHECK(strstr(reply + 4, "HTTP/1.1") == NULL);
    CHECK(atomic_load(&results[0]) == WARPCORE_RESULT_OK);

    /* Mid-stream inside the call: the written chunk, then the close, no last chunk. */
    n = http_exchange(port, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(reply, "\r\nTransfer-Encoding: chunked\r\n") != NULL);
    const char *body = strstr(reply, "\r\n\r\n");
    CHECK(body != NULL && strcmp(body + 4, "8\r\npartial \r\n") == 0);
    CHECK(atomic_load(&results[1]) == WARPCORE_RESULT_OK);
    CHECK(atomic_load(&results[2]) == WARPCORE_RESULT_ALREADY_ANSWERED);

    /* Mid-stream from another thread, after the handler returned. */
    struct bg_client c = {port, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n", {0}, -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, bg_client_run, &c) == 0);
    warpcore_response *res = NULL;
    for (int i = 0; i < 2000 && !(res = atomic_load(&kept)); i++) sleep_ms(5);
    CHECK(res != NULL);
    if (res) {
        static const uint8_t part[] = "from afar ";
        CHECK_RESULT(warpcore_response_start(res, 200, chunked_fields, 1, -1), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_write(res, part, sizeof part - 1), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_abort(res), WARPCORE_RESULT_OK); /* releases the handle */
    }
    pthread_join(t, NULL);
    CHECK(c.n > 0 && strncmp(c.reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    body = strstr(c.reply, "\r\n\r\n");
    CHECK(body != NULL && strcmp(body + 4, "a\r\nfrom afar \r\n") == 0);

    warpcore_stats st = WARPCORE_STATS_INIT;
    CHECK_RESULT(warpcore_server_stats(server, &st), WARPCORE_RESULT_OK);
    CHECK(st.responses_5xx == 1 && st.responses_2xx == 2);

    CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    return check_finish("abort");
}
