/*
 * Every kind of call on a stale response handle returns a documented code
 * and touches no other request (issue #19, item 3): a handle answered inside
 * its handler call, called again (1) by the next handler on the same worker
 * while that one runs, (2) from another thread while the next request waits
 * deferred, (3) after that one was answered, (4) after the server was freed;
 * and a deferred handle after the call that finished it. Each stale call
 * returns WARPCORE_RESULT_ALREADY_ANSWERED (a buffer handed over is
 * released at once, exactly once), and every client gets its own answer.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>

#include "check.h"

static warpcore_prepared *prepared;
static char file_path[64];
static _Atomic(warpcore_response *) stale; /* answered inside its call */
static _Atomic(warpcore_response *) kept;  /* deferred to the main thread */
static atomic_int kept_count, probes;
static atomic_int releases;

static void count_release(void *userdata, const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    CHECK(userdata == &releases);
    atomic_fetch_add(&releases, 1);
}

static void never_told(void *userdata, warpcore_response *res) {
    (void)userdata;
    (void)res;
    CHECK(!"a close callback registered on a stale handle ran");
}

/* Every kind of call on `res`, each expected to return `want`. */
static void every_call(warpcore_response *res, warpcore_result want) {
    static const uint8_t bytes[] = "stale bytes";
    warpcore_header field = {wstr("X-Stale"), wstr("yes")};
    int released = atomic_load(&releases);
    CHECK_RESULT(warpcore_respond(res, 200, &field, 1, bytes, sizeof bytes - 1), want);
    CHECK_RESULT(warpcore_respond_buffer(res, 200, &field, 1, bytes, sizeof bytes - 1, count_release, &releases), want);
    CHECK(atomic_load(&releases) == released + 1);
    CHECK_RESULT(warpcore_respond_prepared(res, prepared), want);
    CHECK_RESULT(warpcore_respond_file(res, 200, &field, 1, (const uint8_t *)file_path, strlen(file_path)), want);
    CHECK_RESULT(warpcore_response_start(res, 200, &field, 1, -1), want);
    CHECK_RESULT(warpcore_response_write(res, bytes, sizeof bytes - 1), want);
    CHECK_RESULT(warpcore_response_write_buffer(res, bytes, sizeof bytes - 1, count_release, &releases), want);
    CHECK(atomic_load(&releases) == released + 2);
    CHECK_RESULT(warpcore_response_end(res), want);
    CHECK_RESULT(warpcore_response_abort(res), want);
    CHECK_RESULT(warpcore_response_on_close(res, never_told, NULL), want);
}

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->path, "/inline")) {
        static const uint8_t body[] = "inline answer";
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
        atomic_store(&stale, res);
    } else if (wstr_is(req->path, "/probe")) {
        /* The previous request's handle, from this request's handler call. */
        every_call(atomic_load(&stale), WARPCORE_RESULT_ALREADY_ANSWERED);
        static const uint8_t body[] = "probe answer";
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
        atomic_fetch_add(&probes, 1);
    } else if (wstr_is(req->path, "/keep")) {
        atomic_store(&kept, res);
        atomic_fetch_add(&kept_count, 1);
    } else {
        warpcore_respond(res, 404, NULL, 0, NULL, 0);
    }
}

static void expect_body(const char *reply, long n, const char *body) {
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    const char *at = strstr(reply, "\r\n\r\n");
    CHECK(at != NULL && strcmp(at + 4, body) == 0);
    CHECK(strstr(reply, "stale") == NULL && strstr(reply, "X-Stale") == NULL);
}

/* Starts a client for /keep and waits for its handler to have deferred it. */
static warpcore_response *start_keep(uint16_t port, struct bg_client *c, pthread_t *t) {
    int before = atomic_load(&kept_count);
    c->port = port;
    c->request = "GET /keep HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    c->n = -1;
    CHECK(pthread_create(t, NULL, bg_client_run, c) == 0);
    CHECK(wait_at_least(&kept_count, before + 1, 20000));
    return atomic_load(&kept);
}

int main(void) {
    strcpy(file_path, "/tmp/warpcore-late-XXXXXX");
    int fd = mkstemp(file_path);
    CHECK(fd >= 0);
    CHECK(write(fd, "file body", 9) == 9);
    close(fd);
    CHECK_RESULT(warpcore_prepared_new(200, NULL, 0, (const uint8_t *)"prepared", 8, &prepared), WARPCORE_RESULT_OK);

    warpcore_config *config = local_config(1, handler, NULL);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("late_calls");
    uint16_t port = warpcore_server_port(server);
    char reply[4096];
    static const char close_req[] = "HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char request[128];

    /* (1) From the next handler on the same worker, inside its call. */
    snprintf(request, sizeof request, "GET /inline %s", close_req);
    long n = http_exchange(port, request, reply, sizeof reply);
    expect_body(reply, n, "inline answer");
    snprintf(request, sizeof request, "GET /probe %s", close_req);
    n = http_exchange(port, request, reply, sizeof reply);
    expect_body(reply, n, "probe answer");
    CHECK(atomic_load(&probes) == 1);

    /* (2) From this thread while the next request waits, deferred. */
    n = http_exchange(port, "GET /inline HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    expect_body(reply, n, "inline answer");
    struct bg_client c;
    pthread_t t;
    warpcore_response *keep = start_keep(port, &c, &t);
    every_call(atomic_load(&stale), WARPCORE_RESULT_ALREADY_ANSWERED);
    static const uint8_t own[] = "kept answer";
    CHECK_RESULT(warpcore_respond(keep, 200, NULL, 0, own, sizeof own - 1), WARPCORE_RESULT_OK);
    pthread_join(t, NULL);
    expect_body(c.reply, c.n, "kept answer");

    /* (3) After it was answered: the stale handle, and the deferred one after
     * the call that finished it. */
    every_call(atomic_load(&stale), WARPCORE_RESULT_ALREADY_ANSWERED);
    every_call(keep, WARPCORE_RESULT_ALREADY_ANSWERED);

    /* A deferred handle finished by a stream's end, then every call again. */
    keep = start_keep(port, &c, &t);
    CHECK_RESULT(warpcore_response_start(keep, 200, NULL, 0, 4), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_response_write(keep, (const uint8_t *)"done", 4), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_response_end(keep), WARPCORE_RESULT_OK);
    pthread_join(t, NULL);
    expect_body(c.reply, c.n, "done");
    every_call(keep, WARPCORE_RESULT_ALREADY_ANSWERED);

    /* (4) After the server was freed: a stale handle still gets its code; a
     * deferred handle never answered gets CLOSED once (which releases it),
     * then ALREADY_ANSWERED. */
    n = http_exchange(port, "GET /inline HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    expect_body(reply, n, "inline answer");
    keep = start_keep(port, &c, &t);
    CHECK_RESULT(warpcore_server_shutdown(server, 100), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    pthread_join(t, NULL);
    CHECK(c.n == 0); /* cut at the shutdown's deadline, unanswered */
    every_call(atomic_load(&stale), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_respond(keep, 200, NULL, 0, own, sizeof own - 1), WARPCORE_RESULT_CLOSED);
    every_call(keep, WARPCORE_RESULT_ALREADY_ANSWERED);

    warpcore_prepared_free(prepared);
    unlink(file_path);
    return check_finish("late_calls");
}
