/*
 * warpcore_respond's error paths from inside a real handler serving a real
 * request over a socket: NULL arguments, invalid status, invalid header
 * fields, answering twice; a handler that returns without answering (the
 * handle is then the caller's, answered later from another thread); the
 * request view as C sees it.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

/* What the handler saw, published when it is done (release/acquire). */
struct seen {
    atomic_int done;
    warpcore_result results[32];
    int count;
    char message[256];
    size_t message_len;
    char view[1024];
    /* A handle the handler returned from without answering. */
    warpcore_response *unanswered;
};

static struct seen seen;

static void record(warpcore_result r) {
    if (seen.count < 32) seen.results[seen.count++] = r;
}

static warpcore_header field(const char *name, const char *value) {
    warpcore_header h = {wstr(name), wstr(value)};
    return h;
}

static void handle_errors(warpcore_response *res) {
    static const uint8_t body[] = "answered";
    warpcore_header ok[] = {field("X-Test", "yes"), field("Content-Type", "text/plain")};

    record(warpcore_respond(NULL, 200, ok, 2, body, 8));                 /* 0: NULL response */
    record(warpcore_respond(res, 200, NULL, 1, body, 8));                /* 1: NULL headers, count 1 */
    record(warpcore_respond(res, 200, ok, 2, NULL, 8));                  /* 2: NULL body, length 8 */
    warpcore_header null_name[] = {field("X-A", "1"), {{NULL, 3}, wstr("v")}};
    record(warpcore_respond(res, 200, null_name, 2, body, 8));           /* 3: NULL name */
    seen.message_len = warpcore_last_error_message(seen.message, sizeof seen.message);
    warpcore_header null_value[] = {{wstr("X-A"), {NULL, 1}}};
    record(warpcore_respond(res, 200, null_value, 1, body, 8));          /* 4: NULL value */
    record(warpcore_respond(res, 99, ok, 2, body, 8));                   /* 5 */
    record(warpcore_respond(res, 100, ok, 2, body, 8));                  /* 6: interim, not final */
    record(warpcore_respond(res, 600, ok, 2, body, 8));                  /* 7 */
    record(warpcore_respond(res, 0, ok, 2, body, 8));                    /* 8 */
    warpcore_header bad_name[] = {field("Bad Name", "v")};
    record(warpcore_respond(res, 200, bad_name, 1, body, 8));            /* 9 */
    warpcore_header empty_name[] = {field("", "v")};
    record(warpcore_respond(res, 200, empty_name, 1, body, 8));          /* 10 */
    warpcore_header crlf_value[] = {field("X-A", "a\r\nInjected: 1")};
    record(warpcore_respond(res, 200, crlf_value, 1, body, 8));          /* 11 */
    warpcore_header nul_value[] = {{wstr("X-A"), {(const uint8_t *)"a\0b", 3}}};
    record(warpcore_respond(res, 200, nul_value, 1, body, 8));           /* 12 */
    record(warpcore_respond(res, 200, ok, 2, body, 8));                  /* 13: the answer */
    record(warpcore_respond(res, 200, ok, 2, body, 8));                  /* 14: twice */
    record(warpcore_respond(res, 99, NULL, 0, NULL, 0));                 /* 15: twice, invalid too */
}

static const warpcore_result expected[] = {
    WARPCORE_RESULT_NULL_ARGUMENT,   WARPCORE_RESULT_NULL_ARGUMENT,    WARPCORE_RESULT_NULL_ARGUMENT,
    WARPCORE_RESULT_NULL_ARGUMENT,   WARPCORE_RESULT_NULL_ARGUMENT,    WARPCORE_RESULT_INVALID_STATUS,
    WARPCORE_RESULT_INVALID_STATUS,  WARPCORE_RESULT_INVALID_STATUS,   WARPCORE_RESULT_INVALID_STATUS,
    WARPCORE_RESULT_INVALID_HEADER,  WARPCORE_RESULT_INVALID_HEADER,   WARPCORE_RESULT_INVALID_HEADER,
    WARPCORE_RESULT_INVALID_HEADER,  WARPCORE_RESULT_OK,               WARPCORE_RESULT_ALREADY_ANSWERED,
    WARPCORE_RESULT_ALREADY_ANSWERED,
};

static void put_str(char **p, char *end, const char *label, warpcore_str s) {
    int n = snprintf(*p, (size_t)(end - *p), "%s=%.*s|", label, (int)s.len, (const char *)s.ptr);
    if (n > 0 && *p + n < end) *p += n;
}

static void handle_view(const warpcore_request *req, warpcore_response *res) {
    char *p = seen.view, *end = seen.view + sizeof seen.view;
    put_str(&p, end, "method", req->method);
    put_str(&p, end, "target", req->target);
    put_str(&p, end, "path", req->path);
    put_str(&p, end, "query", req->query);
    put_str(&p, end, "body", req->body);
    put_str(&p, end, "peer", req->peer_ip);
    for (size_t i = 0; i < req->header_count; i++) put_str(&p, end, "h", req->headers[i].value);
    snprintf(p, (size_t)(end - p), "v=%u.%u|w=%u|port>0=%d", (unsigned)req->version_major,
             (unsigned)req->version_minor, (unsigned)req->worker_index, req->peer_port > 0);
    record(warpcore_respond(res, 200, NULL, 0, req->body.ptr, req->body.len));
}

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    CHECK(userdata == &seen);
    if (wstr_is(req->path, "/errors")) {
        handle_errors(res);
    } else if (wstr_is(req->path, "/view") || wstr_is(req->method, "POST")) {
        handle_view(req, res);
    } else if (wstr_is(req->path, "/invalid-only")) {
        record(warpcore_respond(res, 42, NULL, 0, NULL, 0));
        seen.unanswered = res;
    } else if (wstr_is(req->path, "/no-content")) {
        static const uint8_t body[] = "must not be sent";
        record(warpcore_respond(res, 204, NULL, 0, body, sizeof body - 1));
    } else if (wstr_is(req->path, "/none")) {
        /* Returns without answering: the handle is the caller's now. */
        seen.unanswered = res;
    } else {
        record(warpcore_respond(res, 404, NULL, 0, NULL, 0));
    }
    atomic_store_explicit(&seen.done, 1, memory_order_release);
}

/* Runs `request` and waits for the handler to have finished. */
static long exchange(uint16_t port, const char *request, char *reply, size_t cap) {
    memset(&seen, 0, sizeof seen);
    long n = http_exchange(port, request, reply, cap);
    for (int i = 0; i < 1000 && !atomic_load_explicit(&seen.done, memory_order_acquire); i++) sleep_ms(5);
    CHECK(atomic_load_explicit(&seen.done, memory_order_acquire));
    return n;
}

struct later {
    uint16_t port;
    const char *request;
    char *reply;
    size_t cap;
    long n;
};

static void *client_thread(void *arg) {
    struct later *l = arg;
    l->n = http_exchange(l->port, l->request, l->reply, l->cap);
    return NULL;
}

/* Sends `request` from a client thread; once the handler has returned without
 * answering, answers the kept handle from this thread (503 "later"). */
static long exchange_answering_later(uint16_t port, const char *request, char *reply, size_t cap) {
    memset(&seen, 0, sizeof seen);
    struct later l = {port, request, reply, cap, -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, client_thread, &l) == 0);
    for (int i = 0; i < 1000 && !atomic_load_explicit(&seen.done, memory_order_acquire); i++) sleep_ms(5);
    CHECK(atomic_load_explicit(&seen.done, memory_order_acquire));
    CHECK(seen.unanswered != NULL);
    if (seen.unanswered) {
        static const uint8_t body[] = "later";
        /* Answering releases the handle. */
        CHECK_RESULT(warpcore_respond(seen.unanswered, 503, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
    }
    pthread_join(t, NULL);
    return l.n;
}

int main(void) {
    warpcore_config *config = local_config(1, handler, &seen);
    warpcore_server *server = start_server(config);
    uint16_t port = warpcore_server_port(server);
    char reply[8192];

    /* Every refused call, then one answer, then answering twice. */
    long n = exchange(port, "GET /errors HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0);
    CHECK(seen.count == (int)(sizeof expected / sizeof expected[0]));
    for (int i = 0; i < seen.count && i < (int)(sizeof expected / sizeof expected[0]); i++) {
        if (seen.results[i] != expected[i]) {
            fprintf(stderr, "/errors call %d returned %u (%s), expected %u (%s)\n", i, (unsigned)seen.results[i],
                    warpcore_result_str(seen.results[i]), (unsigned)expected[i], warpcore_result_str(expected[i]));
            CHECK(0);
        }
    }
    /* The message names the field, on the handler's thread. */
    CHECK(seen.message_len > 0 && strstr(seen.message, "headers[1].name") != NULL);
    /* Exactly the one answer reached the client. */
    CHECK(strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(reply, "\r\nX-Test: yes\r\n") != NULL);
    CHECK(strstr(reply, "\r\nContent-Length: 8\r\n") != NULL);
    CHECK(strstr(reply, "Injected") == NULL && strstr(reply, "Bad Name") == NULL);
    CHECK(strstr(reply, "\r\n\r\nanswered") != NULL);
    CHECK(strstr(reply + 4, "HTTP/1.1") == NULL);

    /* Only invalid attempts, then the handler returns: nothing is sent yet;
     * the handle, now ours, is answered from this thread. */
    n = exchange_answering_later(port, "GET /invalid-only HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                                 reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 503 ", 13) == 0);
    CHECK(strstr(reply, "\r\n\r\nlater") != NULL);
    CHECK(seen.count == 1 && seen.results[0] == WARPCORE_RESULT_INVALID_STATUS);

    /* No answer at all: the same, and the pipelined request behind it waits
     * for that answer, then is answered after it. */
    n = exchange_answering_later(port,
                                 "GET /none HTTP/1.1\r\nHost: t\r\n\r\n"
                                 "GET /view HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                                 reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 503 ", 13) == 0);
    char *second = strstr(reply + 4, "HTTP/1.1 ");
    CHECK(second != NULL && strncmp(second, "HTTP/1.1 200 OK\r\n", 17) == 0);

    /* 204: no body, no Content-Length, even when one is offered. */
    n = exchange(port, "GET /no-content HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 204 No Content\r\n", 25) == 0);
    CHECK(strstr(reply, "must not") == NULL && strstr(reply, "Content-Length") == NULL);
    CHECK(n >= 4 && strcmp(reply + n - 4, "\r\n\r\n") == 0);

    /* The request view, field by field (this also checks the struct layout). */
    n = exchange(port,
                 "POST /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: example\r\nX-Two:  spaced  \r\n"
                 "Content-Length: 5\r\nConnection: close\r\n\r\nhello",
                 reply, sizeof reply);
    CHECK(n > 0 && strstr(reply, "\r\n\r\nhello") != NULL);
    static const char want_view[] =
        "method=POST|target=/a%20b/c?x=1&y=%20|path=/a b/c|query=x=1&y=%20|body=hello|peer=127.0.0.1|"
        "h=example|h=spaced|h=5|h=close|v=1.1|w=0|port>0=1";
    if (strcmp(seen.view, want_view) != 0) {
        fprintf(stderr, "view:     %s\nexpected: %s\n", seen.view, want_view);
        CHECK(0);
    }
    n = exchange(port, "GET /view HTTP/1.0\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strstr(seen.view, "|query=|body=|") != NULL && strstr(seen.view, "v=1.0|") != NULL);

    CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    return check_finish("respond");
}
