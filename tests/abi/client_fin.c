/*
 * warpcore_config_set_client_fin_ends_request under AddressSanitizer: NULL
 * config gets NULL_ARGUMENT; with it on, a client that half-closes (FIN)
 * while its answer is deferred runs the request's close callback
 * (registered in the call, or later from this thread), later calls on the
 * handle return WARPCORE_RESULT_CLOSED (releasing it), and the client reads
 * the end of the stream and no answer; a request answered in its call with
 * the FIN behind it is still answered. Reloaded off, a FIN only half-closes:
 * the deferred answer is still read and no callback runs.
 */
#define _POSIX_C_SOURCE 200809L

#include "kept.h"

static atomic_int told;
static atomic_int never_runs;

static void count_told(void *userdata, warpcore_response *res) {
    CHECK(userdata == &told);
    CHECK(res == atomic_load(&kept));
    atomic_fetch_add(&told, 1);
}

static void must_not_run(void *userdata, warpcore_response *res) {
    (void)userdata;
    (void)res;
    atomic_fetch_add(&never_runs, 1);
}

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->path, "/inline")) {
        static const uint8_t body[] = "inline";
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
        return;
    }
    if (wstr_is(req->path, "/in-call")) {
        CHECK_RESULT(warpcore_response_on_close(res, count_told, &told), WARPCORE_RESULT_OK);
    } else if (wstr_is(req->path, "/half")) {
        CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_OK);
    }
    /* Returns without answering: the main thread holds the handle. */
    keep_handle(res);
}

/* Reads until the server closes: the bytes read (`out` NUL-terminated). */
static long read_to_end(int fd, char *out, size_t cap) {
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) break;
            out[got] = 0;
            return -1;
        }
        got += (size_t)n;
        if (got + 1 >= cap) break;
    }
    out[got] = 0;
    return (long)got;
}

/* An answered request on another connection of the single worker: once its
 * answer is read, the worker has seen what was sent before it. */
static void round_trip(uint16_t port) {
    char reply[1024];
    long n = http_exchange(port, "GET /inline HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strstr(reply, "\r\n\r\ninline") != NULL);
}

int main(void) {
    CHECK_RESULT(warpcore_config_set_client_fin_ends_request(NULL, true), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_client_fin_ends_request(NULL, false), WARPCORE_RESULT_NULL_ARGUMENT);

    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_client_fin_ends_request(config, true), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("client_fin");
    uint16_t port = warpcore_server_port(server);
    char reply[4096];
    int fd;

    /* Registered in the call; the client sends its FIN: told, the handle
     * says CLOSED (released), the client reads the end and nothing else. */
    warpcore_response *res = deferred_request(port, "/in-call", &fd);
    CHECK(shutdown(fd, SHUT_WR) == 0);
    CHECK(wait_at_least(&told, 1, 10000));
    static const uint8_t late[] = "late";
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, late, sizeof late - 1), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_response_abort(res), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK(read_to_end(fd, reply, sizeof reply) == 0);
    close(fd);

    /* Registered later, from this thread. */
    res = deferred_request(port, "/later", &fd);
    CHECK_RESULT(warpcore_response_on_close(res, count_told, &told), WARPCORE_RESULT_OK);
    CHECK(shutdown(fd, SHUT_WR) == 0);
    CHECK(wait_at_least(&told, 2, 10000));
    CHECK_RESULT(warpcore_response_start(res, 200, NULL, 0, -1), WARPCORE_RESULT_CLOSED);
    CHECK(read_to_end(fd, reply, sizeof reply) == 0);
    close(fd);

    /* Answered in the call, then the FIN: the answer is read. */
    fd = connect_local(port);
    CHECK(fd >= 0);
    static const char inline_request[] = "GET /inline HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(send(fd, inline_request, sizeof inline_request - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof inline_request - 1));
    CHECK(shutdown(fd, SHUT_WR) == 0);
    CHECK(read_to_end(fd, reply, sizeof reply) > 0 && strstr(reply, "\r\n\r\ninline") != NULL);
    close(fd);

    /* Reloaded off: a FIN only half-closes; the answer is still read. */
    config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_client_fin_ends_request(config, false), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_reload(server, config), WARPCORE_RESULT_OK);
    warpcore_config_free(config);
    res = deferred_request(port, "/half", &fd);
    CHECK(shutdown(fd, SHUT_WR) == 0);
    round_trip(port);
    static const uint8_t still[] = "still read";
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, still, sizeof still - 1), WARPCORE_RESULT_OK);
    CHECK(read_to_end(fd, reply, sizeof reply) > 0 && strstr(reply, "\r\n\r\nstill read") != NULL);
    close(fd);

    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    CHECK(atomic_load(&told) == 2);
    CHECK(atomic_load(&never_runs) == 0);
    return check_finish("client_fin");
}
