/*
 * Prepared responses (warpcore_prepared_new / _free / warpcore_respond_prepared)
 * and the answering handler (warpcore_config_set_answering_handler), over real
 * sockets: the error paths of preparing, a prepared answer with the library's
 * fields added per request (HEAD, HTTP/1.0, keep-alive), the same prepared
 * response from a plain handler, a deferred handle and an answering handler's
 * return value, NULL returns that answer through the handle, and a return for
 * a request already answered (ignored).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

static warpcore_prepared *hello;    /* 200, text/plain, "Hello, prepared!" */
static warpcore_prepared *missing;  /* 404, empty body */
static warpcore_response *kept;     /* a handle the plain handler returned from */
static atomic_int handled;

static warpcore_header field(const char *name, const char *value) {
    warpcore_header h = {wstr(name), wstr(value)};
    return h;
}

static void check_prepare_errors(void) {
    static char dummy;
    warpcore_prepared *p = (warpcore_prepared *)(void *)&dummy; /* must stay untouched on error */
    warpcore_prepared *const sentinel = p;
    warpcore_header ok[] = {field("Content-Type", "text/plain")};
    static const uint8_t body[] = "x";
    CHECK_RESULT(warpcore_prepared_new(200, ok, 1, body, 1, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_prepared_new(200, NULL, 1, body, 1, &p), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_prepared_new(200, ok, 1, NULL, 1, &p), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_prepared_new(99, ok, 1, body, 1, &p), WARPCORE_RESULT_INVALID_STATUS);
    CHECK_RESULT(warpcore_prepared_new(600, ok, 1, body, 1, &p), WARPCORE_RESULT_INVALID_STATUS);
    warpcore_header bad_name[] = {field("Bad Name", "v")};
    CHECK_RESULT(warpcore_prepared_new(200, bad_name, 1, body, 1, &p), WARPCORE_RESULT_INVALID_HEADER);
    warpcore_header crlf[] = {field("X-A", "a\r\nInjected: 1")};
    CHECK_RESULT(warpcore_prepared_new(200, crlf, 1, body, 1, &p), WARPCORE_RESULT_INVALID_HEADER);
    CHECK(p == sentinel);
    CHECK_RESULT(warpcore_respond_prepared(NULL, hello), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_prepared_free(NULL);
    /* No headers and no body at all are fine. */
    warpcore_prepared *empty = NULL;
    CHECK_RESULT(warpcore_prepared_new(204, NULL, 0, NULL, 0, &empty), WARPCORE_RESULT_OK);
    CHECK(empty != NULL);
    warpcore_prepared_free(empty);
}

/* The plain handler: answers with prepared responses through the handle. */
static void plain(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->path, "/later")) {
        kept = res; /* answered from the main thread */
    } else if (wstr_is(req->path, "/")) {
        CHECK_RESULT(warpcore_respond_prepared(res, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
        CHECK_RESULT(warpcore_respond_prepared(res, hello), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_respond_prepared(res, hello), WARPCORE_RESULT_ALREADY_ANSWERED);
    } else {
        CHECK_RESULT(warpcore_respond_prepared(res, missing), WARPCORE_RESULT_OK);
    }
    atomic_fetch_add(&handled, 1);
}

/* The answering handler: returns the prepared response, or answers itself. */
static const warpcore_prepared *answering(void *userdata, const warpcore_request *req, warpcore_response *res) {
    CHECK(userdata == &handled);
    atomic_fetch_add(&handled, 1);
    if (wstr_is(req->path, "/")) return hello;
    if (wstr_is(req->path, "/self")) {
        static const uint8_t body[] = "by the handle";
        CHECK_RESULT(warpcore_respond(res, 201, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
        return NULL;
    }
    if (wstr_is(req->path, "/both")) {
        /* Answered through the handle, then returned: the first answer stands. */
        static const uint8_t body[] = "first";
        CHECK_RESULT(warpcore_respond(res, 202, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
        return hello;
    }
    return missing;
}

static void check_hello(const char *reply, long n, int head, int close) {
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(reply, "\r\nDate: ") != NULL);
    CHECK(strstr(reply, "\r\nContent-Type: text/plain\r\n") != NULL);
    CHECK(strstr(reply, "\r\nContent-Length: 16\r\n") != NULL);
    CHECK((strstr(reply, "\r\nConnection: close\r\n") != NULL) == close);
    CHECK((strstr(reply, "\r\n\r\nHello, prepared!") != NULL) == !head);
}

/* `first`, then a request that closes, in one write: the first answer must be
 * the hello kept alive (no `Connection: close`), the second a 404. */
static void check_kept_alive_hello(uint16_t port, const char *first, int head, char *reply, size_t size) {
    char request[512];
    snprintf(request, sizeof request, "%sGET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", first);
    long n = http_exchange(port, request, reply, size);
    char *second = n > 4 ? strstr(reply + 4, "HTTP/1.1 ") : NULL;
    CHECK(second != NULL && strncmp(second, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    CHECK(second != NULL && strstr(second, "\r\nContent-Length: 0\r\n") != NULL);
    if (second) *second = '\0'; /* the first answer alone */
    check_hello(reply, n, head, 0);
}

static void *client(void *arg) {
    static char reply[4096];
    uint16_t port = *(uint16_t *)arg;
    long n = http_exchange(port, "GET /later HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    check_hello(reply, n, 0, 1);
    return NULL;
}

static void serve_and_check(int answering_kind) {
    warpcore_config *config = local_config(1, plain, NULL);
    if (answering_kind) {
        CHECK_RESULT(warpcore_config_set_answering_handler(config, NULL, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
        CHECK_RESULT(warpcore_config_set_answering_handler(config, answering, &handled), WARPCORE_RESULT_OK);
    }
    warpcore_server *server = start_server(config);
    uint16_t port = warpcore_server_port(server);
    char reply[8192];

    long n = http_exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    check_hello(reply, n, 0, 1);
    n = http_exchange(port, "HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    check_hello(reply, n, 1, 1);
    /* HTTP/1.0 without keep-alive closes. */
    n = http_exchange(port, "GET / HTTP/1.0\r\n\r\n", reply, sizeof reply);
    check_hello(reply, n, 0, 1);
    /* Kept alive: the common HTTP/1.1 GET, then HEAD (no body) and HTTP/1.0 (which says keep-alive). */
    check_kept_alive_hello(port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 0, reply, sizeof reply);
    check_kept_alive_hello(port, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", 1, reply, sizeof reply);
    check_kept_alive_hello(port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, reply, sizeof reply);
    CHECK(strstr(reply, "\r\nConnection: keep-alive\r\n") != NULL);

    if (answering_kind) {
        n = http_exchange(port, "GET /self HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
        CHECK(n > 0 && strncmp(reply, "HTTP/1.1 201 ", 13) == 0 && strstr(reply, "\r\n\r\nby the handle") != NULL);
        n = http_exchange(port, "GET /both HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
        CHECK(n > 0 && strncmp(reply, "HTTP/1.1 202 ", 13) == 0 && strstr(reply, "\r\n\r\nfirst") != NULL);
        CHECK(strstr(reply, "Hello") == NULL);
    } else {
        /* A deferred handle answered with a prepared response from another thread. */
        kept = NULL;
        int before = atomic_load(&handled);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, client, &port) == 0);
        for (int i = 0; i < 1000 && atomic_load(&handled) == before; i++) sleep_ms(5);
        CHECK(kept != NULL);
        if (kept) CHECK_RESULT(warpcore_respond_prepared(kept, hello), WARPCORE_RESULT_OK);
        pthread_join(t, NULL);
    }
    CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
}

int main(void) {
    warpcore_header text[] = {field("Content-Type", "text/plain")};
    static const uint8_t body[] = "Hello, prepared!";
    CHECK_RESULT(warpcore_prepared_new(200, text, 1, body, sizeof body - 1, &hello), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_prepared_new(404, NULL, 0, NULL, 0, &missing), WARPCORE_RESULT_OK);
    check_prepare_errors();
    serve_and_check(0);
    serve_and_check(1);
    warpcore_prepared_free(hello);
    warpcore_prepared_free(missing);
    return check_finish("prepared");
}
