/*
 * Prepared responses (warpcore_prepared_new / _free / warpcore_respond_prepared)
 * and the answering handler (warpcore_config_set_answering_handler), over real
 * sockets: the error paths of preparing, a prepared answer with the library's
 * fields added per request (HEAD, HTTP/1.0, keep-alive), the same prepared
 * response from a plain handler, a deferred handle and an answering handler's
 * return value, NULL returns that answer through the handle, and a return for
 * a request already answered (ignored); pipelined deferred answers with
 * prepared responses freed at once after the call, answered out of order,
 * and a large body sent from the prepared response itself.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

static warpcore_prepared *hello;    /* 200, text/plain, "Hello, prepared!" */
static warpcore_prepared *missing;  /* 404, empty body */
static warpcore_response *kept;     /* a handle the plain handler returned from */
static atomic_int handled;
/* Handles of /defer requests, in arrival order, answered later from the main thread. */
#define DEFERRED 4
static warpcore_response *deferred[DEFERRED];
static atomic_int deferred_count;
static _Atomic(warpcore_response *) big_handle;

/* A client reading a large reply (until the server closes) on its own thread. */
#define BIG_BODY (100 * 1024)
struct big_client {
    uint16_t port;
    char *reply;
    long n;
};

static void *big_client_run(void *arg) {
    struct big_client *c = arg;
    c->n = http_exchange(c->port, "GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", c->reply, BIG_BODY + 4096);
    return NULL;
}

/* A deferred answer with a prepared body too large to copy (it goes out from
 * the prepared response itself, which the library keeps alive): freed at once
 * after the call, the whole body arrives intact. */
static void check_deferred_big(uint16_t port) {
    uint8_t *body = malloc(BIG_BODY);
    struct big_client c = {.port = port, .reply = malloc(BIG_BODY + 4096)};
    CHECK(body != NULL && c.reply != NULL);
    if (!body || !c.reply) return;
    for (size_t i = 0; i < BIG_BODY; i++) body[i] = (uint8_t)('a' + i % 26);
    atomic_store(&big_handle, NULL);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, big_client_run, &c) == 0);
    for (int i = 0; i < 2000 && !atomic_load(&big_handle); i++) sleep_ms(5);
    CHECK(atomic_load(&big_handle) != NULL);
    warpcore_prepared *p = NULL;
    CHECK_RESULT(warpcore_prepared_new(200, NULL, 0, body, BIG_BODY, &p), WARPCORE_RESULT_OK);
    memset(body, 0, BIG_BODY); /* the library copied it */
    if (atomic_load(&big_handle)) CHECK_RESULT(warpcore_respond_prepared(atomic_load(&big_handle), p), WARPCORE_RESULT_OK);
    warpcore_prepared_free(p);
    pthread_join(t, NULL);
    const char *end = c.n > 0 ? strstr(c.reply, "\r\n\r\n") : NULL;
    CHECK(end != NULL && strstr(c.reply, "\r\nContent-Length: 102400\r\n") != NULL);
    if (end) {
        end += 4;
        CHECK(c.n - (end - c.reply) == BIG_BODY);
        int intact = c.n - (end - c.reply) == BIG_BODY;
        for (size_t i = 0; intact && i < BIG_BODY; i++) intact = (uint8_t)end[i] == (uint8_t)('a' + i % 26);
        CHECK(intact);
    }
    free(body);
    free(c.reply);
}

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
    } else if (wstr_is(req->path, "/big")) {
        atomic_store(&big_handle, res); /* answered from the main thread */
    } else if (wstr_is(req->path, "/defer")) {
        int i = atomic_load(&deferred_count);
        if (i < DEFERRED) deferred[i] = res;
        atomic_store(&deferred_count, i + 1); /* after the store: the main thread reads it then */
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

/* Pipelined requests answered from another thread with prepared responses,
 * each freed as soon as its call returned (the library must not read it
 * after: AddressSanitizer watches), the second before the first (held until
 * the first is answered): a keep-alive GET (the whole image), HEAD (no body),
 * HTTP/1.0 keep-alive, and a reason phrase set on the handle with
 * `Connection: close`. */
static void check_deferred_prepared(uint16_t port) {
    atomic_store(&deferred_count, 0);
    struct bg_client c = {.port = port,
                          .request = "GET /defer HTTP/1.1\r\nHost: t\r\n\r\n"
                                     "HEAD /defer HTTP/1.1\r\nHost: t\r\n\r\n"
                                     "GET /defer HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                     "GET /defer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, bg_client_run, &c) == 0);
    warpcore_header text[] = {field("Content-Type", "text/plain")};
    static const uint8_t body[] = "Hello, prepared!";
    /* The first two are read ahead together and answered second first; the
     * engine stops reading ahead at HTTP/1.0 and `Connection: close`, so the
     * others come one at a time. */
    static const int order[DEFERRED] = {1, 0, 2, 3};
    for (int k = 0; k < DEFERRED; k++) {
        int i = order[k], need = i + 1;
        for (int w = 0; w < 2000 && atomic_load(&deferred_count) < need; w++) sleep_ms(5);
        CHECK(atomic_load(&deferred_count) >= need);
        if (atomic_load(&deferred_count) < need) break;
        warpcore_prepared *fresh = NULL;
        CHECK_RESULT(warpcore_prepared_new(200, text, 1, body, sizeof body - 1, &fresh), WARPCORE_RESULT_OK);
        if (i == DEFERRED - 1) {
            static const uint8_t reason[] = "Fine Indeed";
            CHECK_RESULT(warpcore_response_set_reason(deferred[i], reason, sizeof reason - 1), WARPCORE_RESULT_OK);
        }
        CHECK_RESULT(warpcore_respond_prepared(deferred[i], fresh), WARPCORE_RESULT_OK);
        warpcore_prepared_free(fresh);
        CHECK_RESULT(warpcore_respond_prepared(deferred[i], hello), WARPCORE_RESULT_ALREADY_ANSWERED);
    }
    pthread_join(t, NULL);
    /* Four answers in request order, split at each status line. */
    char *answers[DEFERRED] = {c.reply};
    for (int i = 1; i < DEFERRED; i++) {
        answers[i] = answers[i - 1] ? strstr(answers[i - 1] + 4, "HTTP/1.") : NULL;
        CHECK(answers[i] != NULL);
    }
    if (!answers[DEFERRED - 1]) return;
    char copy[DEFERRED][2048];
    for (int i = 0; i < DEFERRED; i++) {
        size_t len = i + 1 < DEFERRED ? (size_t)(answers[i + 1] - answers[i]) : strlen(answers[i]);
        CHECK(len < sizeof copy[i]);
        if (len >= sizeof copy[i]) return;
        memcpy(copy[i], answers[i], len);
        copy[i][len] = '\0';
    }
    check_hello(copy[0], (long)strlen(copy[0]), 0, 0);
    const char *end_of_head = strstr(copy[0], "\r\n\r\n");
    CHECK(end_of_head != NULL && strcmp(end_of_head, "\r\n\r\nHello, prepared!") == 0);
    check_hello(copy[1], (long)strlen(copy[1]), 1, 0);
    /* HTTP/1.0 keep-alive: the 1.1 status line, the body, keep-alive said. */
    check_hello(copy[2], (long)strlen(copy[2]), 0, 0);
    CHECK(strstr(copy[2], "\r\nConnection: keep-alive\r\n") != NULL);
    CHECK(strncmp(copy[3], "HTTP/1.1 200 Fine Indeed\r\n", 26) == 0);
    CHECK(strstr(copy[3], "\r\nConnection: close\r\n") != NULL);
    CHECK(strstr(copy[3], "\r\n\r\nHello, prepared!") != NULL);
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
        check_deferred_prepared(port);
        check_deferred_big(port);
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
