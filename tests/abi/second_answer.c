/*
 * A deferred handle answered more than once (issue #19, items 3 and 4): a
 * second answer from the same thread, answers from several threads at once
 * (respond, abort, end of a stream), and answers after the server was freed.
 * The first answer wins and releases the handle; every other call returns
 * WARPCORE_RESULT_ALREADY_ANSWERED, the client gets exactly one answer, and
 * ASan sees no use of freed memory.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#define RACERS 4
#define ROUNDS 40

static _Atomic(warpcore_response *) kept;
static atomic_int kept_count;

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->path, "/stream")) CHECK_RESULT(warpcore_response_start(res, 200, NULL, 0, -1), WARPCORE_RESULT_OK);
    atomic_store(&kept, res);
    atomic_fetch_add(&kept_count, 1);
}

static warpcore_response *start_kept(uint16_t port, const char *request, struct bg_client *c, pthread_t *t) {
    int before = atomic_load(&kept_count);
    c->port = port;
    c->request = request;
    c->n = -1;
    CHECK(pthread_create(t, NULL, bg_client_run, c) == 0);
    CHECK(wait_at_least(&kept_count, before + 1, 20000));
    return atomic_load(&kept);
}

struct racer {
    warpcore_response *res;
    int kind;
    atomic_int *go;
    warpcore_result result;
};

static void *race(void *arg) {
    struct racer *r = arg;
    while (!atomic_load(r->go)) {
    }
    char body[32];
    int len = snprintf(body, sizeof body, "racer %d", r->kind);
    switch (r->kind % 3) {
    case 0:
        r->result = warpcore_respond(r->res, 200, NULL, 0, (const uint8_t *)body, (size_t)len);
        break;
    case 1:
        r->result = warpcore_response_abort(r->res);
        break;
    default:
        r->result = warpcore_response_end(r->res);
        break;
    }
    return NULL;
}

static int count_of(const char *s, const char *part) {
    int n = 0;
    for (const char *at = strstr(s, part); at; at = strstr(at + 1, part)) n++;
    return n;
}

int main(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("second_answer");
    uint16_t port = warpcore_server_port(server);
    static const char plain[] = "GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    static const char stream[] = "GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    struct bg_client c;
    pthread_t t;

    /* A second answer from the same thread. */
    warpcore_response *res = start_kept(port, plain, &c, &t);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"first", 5), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"second", 6), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_response_abort(res), WARPCORE_RESULT_ALREADY_ANSWERED);
    pthread_join(t, NULL);
    CHECK(c.n > 0 && strstr(c.reply, "\r\n\r\nfirst") != NULL && strstr(c.reply, "second") == NULL);

    /* Several threads at once, on a fresh handle and on a started stream. */
    for (int round = 0; round < ROUNDS; round++) {
        int streaming = round % 2;
        res = start_kept(port, streaming ? stream : plain, &c, &t);
        atomic_int go = 0;
        struct racer racers[RACERS];
        pthread_t threads[RACERS];
        for (int i = 0; i < RACERS; i++) {
            racers[i] = (struct racer){res, i + round, &go, WARPCORE_RESULT_PANIC};
            CHECK(pthread_create(&threads[i], NULL, race, &racers[i]) == 0);
        }
        atomic_store(&go, 1);
        int wins = 0;
        for (int i = 0; i < RACERS; i++) {
            pthread_join(threads[i], NULL);
            warpcore_result r = racers[i].result;
            if (r == WARPCORE_RESULT_OK) {
                wins++;
            } else if (r != WARPCORE_RESULT_ALREADY_ANSWERED) {
                /* end before a start, respond after a start: refused, the handle kept */
                int refused_kind = (racers[i].kind % 3 == 2 && !streaming) || (racers[i].kind % 3 == 0 && streaming);
                CHECK(refused_kind && (r == WARPCORE_RESULT_INVALID_STATE || r == WARPCORE_RESULT_ALREADY_ANSWERED));
                if (!refused_kind) fprintf(stderr, "racer kind %d returned %u\n", racers[i].kind % 3, (unsigned)r);
            }
        }
        CHECK(wins == 1);
        pthread_join(t, NULL);
        CHECK(c.n > 0 && count_of(c.reply, "HTTP/1.1 ") == 1);
        CHECK(count_of(c.reply, "racer") <= 1);
    }

    /* After the server was freed: the first call learns the client is gone
     * (and releases the handle), the next that it was answered. */
    res = start_kept(port, plain, &c, &t);
    CHECK_RESULT(warpcore_server_shutdown(server, 100), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    pthread_join(t, NULL);
    CHECK(c.n == 0);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"late", 4), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"later", 5), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_response_abort(res), WARPCORE_RESULT_ALREADY_ANSWERED);
    return check_finish("second_answer");
}
