/*
 * External workers: warpcore_server_run_worker from our own pthreads, the
 * handler running on those threads, INVALID_STATE for an index run twice, out
 * of range, or on a server with its own threads, SHUTTING_DOWN afterwards;
 * warpcore_server_wait returning after a shutdown from another thread;
 * shutdown + free.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#define WORKERS 2

struct runner {
    warpcore_server *server;
    uint32_t index;
    pthread_t thread;
    warpcore_result result;
};

static struct runner runners[WORKERS];
static atomic_int served[WORKERS];
static atomic_int on_a_foreign_thread;

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    uint32_t w = req->worker_index;
    CHECK(w < WORKERS);
    if (w < WORKERS) {
        /* The handler runs on the thread that called run_worker(w). */
        if (!pthread_equal(pthread_self(), runners[w].thread)) atomic_fetch_add(&on_a_foreign_thread, 1);
        atomic_fetch_add(&served[w], 1);
    }
    char body[16];
    int len = snprintf(body, sizeof body, "%u", (unsigned)w);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)body, (size_t)len), WARPCORE_RESULT_OK);
}

static void *run(void *arg) {
    struct runner *r = arg;
    r->result = warpcore_server_run_worker(r->server, r->index);
    return NULL;
}

static void *wait_for(void *arg) {
    CHECK_RESULT(warpcore_server_wait(arg), WARPCORE_RESULT_OK);
    return NULL;
}

static void *shut_down(void *arg) {
    CHECK_RESULT(warpcore_server_shutdown(arg, 2000), WARPCORE_RESULT_OK);
    return NULL;
}

static void external(void) {
    warpcore_config *config = local_config(WORKERS, handler, NULL);
    CHECK_RESULT(warpcore_config_set_external_workers(config, true), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    CHECK(warpcore_server_workers(server) == WORKERS);
    uint16_t port = warpcore_server_port(server);

    /* Out of range, before anything runs. */
    CHECK_RESULT(warpcore_server_run_worker(server, WORKERS), WARPCORE_RESULT_INVALID_STATE);
    CHECK_RESULT(warpcore_server_run_worker(server, UINT32_MAX), WARPCORE_RESULT_INVALID_STATE);

    for (uint32_t i = 0; i < WORKERS; i++) {
        runners[i].server = server;
        runners[i].index = i;
        runners[i].result = WARPCORE_RESULT_PANIC;
    }
    /* The runners' ids are written before any handler can read them. */
    for (uint32_t i = 0; i < WORKERS; i++) CHECK(pthread_create(&runners[i].thread, NULL, run, &runners[i]) == 0);

    /* Connect until both workers have answered (SO_REUSEPORT spreads connections). */
    char reply[4096];
    int attempts = 0;
    while ((atomic_load(&served[0]) == 0 || atomic_load(&served[1]) == 0) && attempts < 500) {
        long n = http_exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
        CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
        attempts++;
    }
    CHECK(atomic_load(&served[0]) > 0 && atomic_load(&served[1]) > 0);
    CHECK(atomic_load(&on_a_foreign_thread) == 0);

    /* Both run now: running one again is refused (and does not block). */
    for (uint32_t i = 0; i < WORKERS; i++) CHECK_RESULT(warpcore_server_run_worker(server, i), WARPCORE_RESULT_INVALID_STATE);
    CHECK(strstr(last_error(), "already running") != NULL);

    /* wait() on another thread returns once shutdown (from a third) is done. */
    pthread_t waiter, stopper;
    CHECK(pthread_create(&waiter, NULL, wait_for, server) == 0);
    sleep_ms(50);
    CHECK(pthread_create(&stopper, NULL, shut_down, server) == 0);
    CHECK(pthread_join(stopper, NULL) == 0);
    CHECK(pthread_join(waiter, NULL) == 0);
    for (uint32_t i = 0; i < WORKERS; i++) {
        CHECK(pthread_join(runners[i].thread, NULL) == 0);
        CHECK_RESULT(runners[i].result, WARPCORE_RESULT_OK);
    }
    CHECK_RESULT(warpcore_server_run_worker(server, 0), WARPCORE_RESULT_SHUTTING_DOWN);
    CHECK_RESULT(warpcore_server_wait(server), WARPCORE_RESULT_OK);
    CHECK(connect_local(port) < 0);
    warpcore_server_free(server);
}

static void never_run(void) {
    /* External workers nobody runs: shutdown still returns, free is clean. */
    warpcore_config *config = local_config(3, handler, NULL);
    CHECK_RESULT(warpcore_config_set_external_workers(config, true), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    CHECK_RESULT(warpcore_server_shutdown(server, 5000), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_run_worker(server, 1), WARPCORE_RESULT_SHUTTING_DOWN);
    warpcore_server_free(server);
}

static void own_threads(void) {
    /* A server that runs its own threads has no worker to hand out. */
    warpcore_config *config = local_config(2, handler, NULL);
    warpcore_server *server = start_server(config);
    CHECK_RESULT(warpcore_server_run_worker(server, 0), WARPCORE_RESULT_INVALID_STATE);
    CHECK_RESULT(warpcore_server_run_worker(server, 1), WARPCORE_RESULT_INVALID_STATE);
    char reply[4096];
    long n = http_exchange(warpcore_server_port(server), "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                           reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
}

int main(void) {
    external();
    never_run();
    own_threads();
    return check_finish("external_workers");
}
