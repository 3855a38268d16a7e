/*
 * warpcore_response_on_close under AddressSanitizer: the callback runs once
 * when a client resets a connection whose answer is deferred (registered in
 * the handler call, or later from another thread), may call the handle (it
 * gets WARPCORE_RESULT_CLOSED, which releases it), never runs for a request
 * answered in its call, for a removed or replaced callback, or after the
 * call that finished the handle returned: a finishing call racing a running
 * callback waits for it, so the caller may free the callback's userdata as
 * soon as its call returned (ASan reports a use after free otherwise).
 * Registration on a gone connection returns CLOSED and releases the handle;
 * NULL and forged handles get NULL_ARGUMENT and INVALID_ARGUMENT; a handle
 * cut by shutdown's deadline is told, and its call after warpcore_server_free
 * returns CLOSED.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "kept.h"

static atomic_int told;        /* callbacks run, of every kind */
static atomic_int never_runs;  /* callbacks that must not run */
static atomic_int self_abort;  /* what the callback's own abort returned */

static void count_told(void *userdata, warpcore_response *res) {
    (void)res;
    CHECK(userdata == &told);
    atomic_fetch_add(&told, 1);
}

static void must_not_run(void *userdata, warpcore_response *res) {
    (void)userdata;
    (void)res;
    atomic_fetch_add(&never_runs, 1);
}

/* Calls its own handle from the callback: CLOSED, and the handle is released. */
static void abort_from_callback(void *userdata, warpcore_response *res) {
    CHECK(userdata == &self_abort);
    CHECK(res == atomic_load(&kept));
    atomic_store(&self_abort, (int)warpcore_response_abort(res));
    atomic_fetch_add(&told, 1);
}

/* Userdata the main thread frees as soon as its finishing call returned. */
struct box {
    atomic_int touched;
};

static void touch_slowly(void *userdata, warpcore_response *res) {
    (void)res;
    struct box *b = userdata;
    atomic_fetch_add(&b->touched, 1);
    sleep_ms(1); /* widens the window a finishing call must wait through */
    atomic_fetch_add(&b->touched, 1);
    atomic_fetch_add(&told, 1);
}

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->path, "/inline")) {
        /* Registered, then answered in the call: it never runs. */
        CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_OK);
        static const uint8_t body[] = "inline";
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_ALREADY_ANSWERED);
        return;
    }
    if (wstr_is(req->path, "/in-call")) {
        CHECK_RESULT(warpcore_response_on_close(res, abort_from_callback, &self_abort), WARPCORE_RESULT_OK);
    } else if (wstr_is(req->path, "/replaced")) {
        CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_on_close(res, count_told, &told), WARPCORE_RESULT_OK);
    }
    /* Returns without answering: the main thread holds the handle. */
    keep_handle(res);
}

/* Closes with a reset (SO_LINGER 0): the client left. */
static void reset_close(int fd) {
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static uint64_t active(warpcore_server *server) {
    warpcore_stats st = WARPCORE_STATS_INIT;
    CHECK_RESULT(warpcore_server_stats(server, &st), WARPCORE_RESULT_OK);
    return st.connections_active;
}

/* Waits until the server holds no connection (it saw every reset). */
static void wait_idle(warpcore_server *server) {
    for (int i = 0; i < 10000 && active(server) != 0; i++) sleep_ms(1);
    CHECK(active(server) == 0);
}

int main(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("close_notice");
    uint16_t port = warpcore_server_port(server);
    int fd;

    CHECK_RESULT(warpcore_response_on_close(NULL, count_told, &told), WARPCORE_RESULT_NULL_ARGUMENT);
    /* Generation 1 of a slot index no table ever had. */
    warpcore_response *forged = (warpcore_response *)(uintptr_t)((1ULL << 32) | 0xfffffffeULL);
    CHECK_RESULT(warpcore_response_on_close(forged, count_told, &told), WARPCORE_RESULT_INVALID_ARGUMENT);

    /* Answered in its call: the callback never runs, and the stale handle
     * refuses another. */
    char reply[1024];
    long n = http_exchange(port, "GET /inline HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strstr(reply, "\r\n\r\ninline") != NULL);

    /* Registered in the call; the client resets; the callback aborts its own
     * handle (CLOSED, released); later calls find it released. */
    warpcore_response *res = deferred_request(port, "/in-call", &fd);
    reset_close(fd);
    CHECK(wait_at_least(&told, 1, 10000));
    CHECK(atomic_load(&self_abort) == WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_response_abort(res), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_ALREADY_ANSWERED);

    /* Registered twice in the call: only the second runs. */
    res = deferred_request(port, "/replaced", &fd);
    reset_close(fd);
    CHECK(wait_at_least(&told, 2, 10000));
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, NULL, 0), WARPCORE_RESULT_CLOSED);

    /* Registered from this thread after the call, then removed: it never
     * runs; the handle is released by the next call, which says CLOSED. */
    res = deferred_request(port, "/later", &fd);
    CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_response_on_close(res, NULL, NULL), WARPCORE_RESULT_OK);
    reset_close(fd);
    wait_idle(server);
    CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_response_on_close(res, must_not_run, NULL), WARPCORE_RESULT_ALREADY_ANSWERED);

    /* Answered from this thread while its client resets: whichever wins,
     * the callback has finished with its userdata when the answer returns
     * (freed at once), and runs at most once. */
    int ran = 0;
    for (int i = 0; i < 100; i++) {
        struct box *b = calloc(1, sizeof *b);
        CHECK(b != NULL);
        res = deferred_request(port, "/race", &fd);
        CHECK_RESULT(warpcore_response_on_close(res, touch_slowly, b), WARPCORE_RESULT_OK);
        int before = atomic_load(&told);
        reset_close(fd);
        if (i % 2) sleep_ms(i % 3); /* vary who wins: not waited on for any event */
        warpcore_result r = warpcore_respond(res, 200, NULL, 0, NULL, 0);
        CHECK(r == WARPCORE_RESULT_OK || r == WARPCORE_RESULT_CLOSED);
        int touched = atomic_load(&b->touched);
        CHECK(touched == 0 || touched == 2); /* never half-way */
        free(b);
        ran += touched == 2;
        wait_idle(server);
        CHECK(atomic_load(&told) == before + (touched == 2));
    }
    printf("close_notice: the callback ran in %d of 100 races\n", ran);

    /* Cut by shutdown's deadline: told (on the worker, during shutdown); its
     * call after warpcore_server_free says CLOSED and releases it. */
    int before = atomic_load(&told);
    res = deferred_request(port, "/cut", &fd);
    CHECK_RESULT(warpcore_response_on_close(res, count_told, &told), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_shutdown(server, 100), WARPCORE_RESULT_OK);
    CHECK(atomic_load(&told) == before + 1);
    warpcore_server_free(server);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, NULL, 0), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_response_on_close(res, count_told, &told), WARPCORE_RESULT_ALREADY_ANSWERED);
    close(fd);

    CHECK(atomic_load(&never_runs) == 0);
    return check_finish("close_notice");
}
