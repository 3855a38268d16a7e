/*
 * Close callbacks on two workers that end each other's requests (a paired
 * long poll: when one side leaves, the other is ended too), cut together by
 * shutdown's deadline. A worker thread never waits for a callback running
 * on another worker: the partner's abort returns WARPCORE_RESULT_WOULD_BLOCK
 * then (the partner's own callback releases it), so the two workers never
 * wait for each other and the shutdown returns (before the fix it hung, the
 * run's timeout failing the test). Every handle ends released. Round one
 * makes the overlap certain (each callback waits, bounded, until its
 * partner's has begun: both are then refused); round two cuts 64 pairs
 * with no such help.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#define MAX_REQUESTS 512

static _Atomic(warpcore_response *) handles[MAX_REQUESTS];
static atomic_uint worker_of[MAX_REQUESTS];
static atomic_int requests;

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    int i = atomic_fetch_add(&requests, 1);
    if (i >= MAX_REQUESTS) {
        warpcore_response_abort(res);
        return;
    }
    atomic_store(&worker_of[i], req->worker_index);
    atomic_store(&handles[i], res); /* deferred: a long poll */
}

struct side {
    warpcore_response *self, *partner;
    atomic_int *begun; /* callbacks of the pair begun */
    warpcore_result partner_result, self_result;
    atomic_int done;
};

static int wait_for_partner;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void end_the_pair(void *userdata, warpcore_response *res) {
    struct side *s = userdata;
    CHECK(res == s->self);
    atomic_fetch_add(s->begun, 1);
    if (wait_for_partner) {
        /* Until the partner's callback began (its worker cuts its
         * connection within a second of this one's), at most 5 s. */
        double t0 = now_s();
        while (atomic_load(s->begun) < 2 && now_s() - t0 < 5.0) {
        }
    }
    s->partner_result = warpcore_response_abort(s->partner);
    s->self_result = warpcore_response_abort(s->self);
    atomic_store(&s->done, 1);
}

/* Opens connections until `pairs` requests wait on each of the two workers;
 * returns the connections' count. */
static int open_pairs(uint16_t port, int pairs, int *fds, int *on0, int *on1) {
    int n = 0, c0 = 0, c1 = 0;
    while ((c0 < pairs || c1 < pairs) && n < MAX_REQUESTS) {
        int before = atomic_load(&requests);
        fds[n] = connect_local(port);
        CHECK(fds[n] >= 0);
        static const char rq[] = "GET /poll HTTP/1.1\r\nHost: t\r\n\r\n";
        CHECK(send(fds[n], rq, sizeof rq - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof rq - 1));
        CHECK(wait_at_least(&requests, before + 1, 10000));
        if (atomic_load(&worker_of[n]) == 0) {
            if (c0 < pairs) on0[c0] = n;
            c0++;
        } else {
            if (c1 < pairs) on1[c1] = n;
            c1++;
        }
        n++;
    }
    return n;
}

static void round_of(int pairs, int wait) {
    static struct side sides[2 * 64];
    static atomic_int begun[64];
    int fds[MAX_REQUESTS], on0[64], on1[64];
    wait_for_partner = wait;
    atomic_store(&requests, 0);
    warpcore_server *server = start_server(local_config(2, handler, NULL));
    if (!server) return;
    int n = open_pairs(warpcore_server_port(server), pairs, fds, on0, on1);
    for (int p = 0; p < pairs; p++) {
        struct side *a = &sides[2 * p], *b = &sides[2 * p + 1];
        atomic_store(&begun[p], 0);
        *a = (struct side){atomic_load(&handles[on0[p]]), atomic_load(&handles[on1[p]]), &begun[p], 0, 0, 0};
        *b = (struct side){a->partner, a->self, &begun[p], 0, 0, 0};
        CHECK_RESULT(warpcore_response_on_close(a->self, end_the_pair, a), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_on_close(b->self, end_the_pair, b), WARPCORE_RESULT_OK);
    }
    /* Cuts both workers' connections at once: returns only if no two
     * workers wait for each other. */
    CHECK_RESULT(warpcore_server_shutdown(server, 100), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    int blocked = 0;
    for (int p = 0; p < 2 * pairs; p++) {
        struct side *s = &sides[p];
        if (atomic_load(&s->done)) {
            /* The partner was ended here (OK: its connection was not cut
             * yet; CLOSED: it was), was being ended by its own callback
             * (refused: a worker never waits), or had ended. */
            CHECK(s->partner_result == WARPCORE_RESULT_OK || s->partner_result == WARPCORE_RESULT_CLOSED ||
                  s->partner_result == WARPCORE_RESULT_WOULD_BLOCK ||
                  s->partner_result == WARPCORE_RESULT_ALREADY_ANSWERED);
            CHECK(s->self_result == WARPCORE_RESULT_CLOSED || s->self_result == WARPCORE_RESULT_ALREADY_ANSWERED);
            blocked += s->partner_result == WARPCORE_RESULT_WOULD_BLOCK;
        }
        /* Released, whoever did it. */
        CHECK_RESULT(warpcore_response_abort(s->self), WARPCORE_RESULT_ALREADY_ANSWERED);
    }
    for (int i = 0; i < n; i++) close(fds[i]);
    printf("close_notice_pairs: %d pairs (%d connections), %d partner aborts refused while the partner's callback ran\n",
           pairs, n, blocked);
    if (wait) CHECK(blocked > 0); /* the overlap was certain */
}

int main(void) {
    round_of(1, 1);
    round_of(64, 0);
    return check_finish("close_notice_pairs");
}
