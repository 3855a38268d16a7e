/*
 * A handler hands its response handle to another thread, which answers at
 * once, while the handler is still running (a thread pool's everyday race).
 * The answer must wait for the handler to return and then go out: every
 * request gets its own answer, in order, whether the handler returns at once,
 * after a spin, after a short sleep or after a sleep long enough that the
 * answering thread stops yielding and waits to be woken. Sequential requests
 * and pipelined ones, on one keep-alive connection.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#define REQUESTS 256

struct handoff {
    warpcore_response *res;
    unsigned n;
};

static pthread_t answerers[REQUESTS];
static atomic_bool started[REQUESTS];
static struct handoff handoffs[REQUESTS];
static atomic_int answer_errors;

static void *answer(void *arg) {
    struct handoff *h = arg;
    char body[16];
    int len = snprintf(body, sizeof body, "n=%u", h->n);
    if (warpcore_respond(h->res, 200, NULL, 0, (const uint8_t *)body, (size_t)len) != WARPCORE_RESULT_OK) {
        atomic_fetch_add(&answer_errors, 1);
    }
    return NULL;
}

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    unsigned n = 0;
    for (size_t i = 1; i < req->path.len; i++) n = n * 10 + (unsigned)(req->path.ptr[i] - '0');
    if (n >= REQUESTS) {
        warpcore_respond(res, 404, NULL, 0, NULL, 0);
        return;
    }
    handoffs[n].res = res;
    handoffs[n].n = n;
    int created = pthread_create(&answerers[n], NULL, answer, &handoffs[n]) == 0;
    CHECK(created);
    if (created) atomic_store(&started[n], true);
    switch (n % 4) {
    case 0:
        break;
    case 1:
        for (volatile int spin = 0; spin < 20000; spin++) {
        }
        break;
    case 2:
        sleep_ms(1);
        break;
    default:
        /* Long enough for the answering thread to give up yielding and sleep. */
        sleep_ms(20);
        break;
    }
}

/* Reads one response from `fd` into `buf`; returns its body (NUL-terminated) or NULL. */
static const char *read_response(int fd, char *buf, size_t cap, size_t *have) {
    for (;;) {
        buf[*have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(buf, "Content-Length: ");
            if (!cl || cl > end) return NULL;
            size_t body_len = strtoul(cl + 16, NULL, 10);
            size_t total = (size_t)(end + 4 - buf) + body_len;
            if (*have >= total) {
                static char body[64];
                if (body_len >= sizeof body) return NULL;
                memcpy(body, end + 4, body_len);
                body[body_len] = 0;
                memmove(buf, buf + total, *have - total);
                *have -= total;
                return body;
            }
        }
        if (*have + 1 >= cap) return NULL;
        ssize_t n = recv(fd, buf + *have, cap - 1 - *have, 0);
        if (n <= 0) return NULL;
        *have += (size_t)n;
    }
}

static void send_all(int fd, const char *data) {
    size_t len = strlen(data), sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, data + sent, len - sent, MSG_NOSIGNAL);
        CHECK(n > 0);
        if (n <= 0) return;
        sent += (size_t)n;
    }
}

int main(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    warpcore_server *server = start_server(config);
    uint16_t port = warpcore_server_port(server);
    int fd = connect_local(port);
    CHECK(fd >= 0);
    static char buf[65536];
    size_t have = 0;
    char request[64], want[16];

    /* One at a time: the first half of the requests. */
    for (unsigned n = 0; n < REQUESTS / 2; n++) {
        snprintf(request, sizeof request, "GET /%u HTTP/1.1\r\nHost: t\r\n\r\n", n);
        send_all(fd, request);
        const char *body = read_response(fd, buf, sizeof buf, &have);
        snprintf(want, sizeof want, "n=%u", n);
        CHECK(body != NULL && strcmp(body, want) == 0);
        if (!body || strcmp(body, want) != 0) break; /* the rest would only time out */
    }

    /* Pipelined: the second half in one write, answered in order. */
    static char batch[REQUESTS * 40];
    size_t at = 0;
    for (unsigned n = REQUESTS / 2; n < REQUESTS; n++) {
        at += (size_t)snprintf(batch + at, sizeof batch - at, "GET /%u HTTP/1.1\r\nHost: t\r\n\r\n", n);
    }
    send_all(fd, batch);
    for (unsigned n = REQUESTS / 2; n < REQUESTS; n++) {
        const char *body = read_response(fd, buf, sizeof buf, &have);
        snprintf(want, sizeof want, "n=%u", n);
        CHECK(body != NULL && strcmp(body, want) == 0);
        if (!body || strcmp(body, want) != 0) break;
    }
    close(fd);

    for (unsigned n = 0; n < REQUESTS; n++) {
        if (atomic_load(&started[n])) pthread_join(answerers[n], NULL);
    }
    CHECK(atomic_load(&answer_errors) == 0);
    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    return check_finish("handoff");
}
