/*
 * SCHED_BATCH: warpcore_thread_set_sched_batch moves the calling thread only
 * (threads it starts afterwards inherit), and back; with
 * warpcore_config_set_sched_batch an external worker's thread runs its
 * handlers under SCHED_BATCH and is back under SCHED_OTHER when
 * warpcore_server_run_worker returns.
 */
#define _GNU_SOURCE /* SCHED_BATCH */
#include <pthread.h>
#include <sched.h>

#include "check.h"

static void *report_policy(void *arg) {
    (void)arg;
    return (void *)(intptr_t)sched_getscheduler(0);
}

static int policy_of_new_thread(void) {
    pthread_t t;
    void *policy = NULL;
    CHECK(pthread_create(&t, NULL, report_policy, NULL) == 0);
    CHECK(pthread_join(t, &policy) == 0);
    return (int)(intptr_t)policy;
}

static void *calling_thread(void *arg) {
    (void)arg;
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
    CHECK_RESULT(warpcore_thread_set_sched_batch(true), WARPCORE_RESULT_OK);
    CHECK(sched_getscheduler(0) == SCHED_BATCH);
    CHECK(policy_of_new_thread() == SCHED_BATCH);
    CHECK_RESULT(warpcore_thread_set_sched_batch(true), WARPCORE_RESULT_OK);
    CHECK(sched_getscheduler(0) == SCHED_BATCH);
    CHECK_RESULT(warpcore_thread_set_sched_batch(false), WARPCORE_RESULT_OK);
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
    CHECK(policy_of_new_thread() == SCHED_OTHER);
    return NULL;
}

static void thread_call(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, calling_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    /* Only that thread moved. */
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
}

static atomic_int handler_policy = -1;

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    atomic_store(&handler_policy, sched_getscheduler(0));
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"ok", 2), WARPCORE_RESULT_OK);
}

struct runner {
    warpcore_server *server;
    warpcore_result result;
    int after;
};

static void *run(void *arg) {
    struct runner *r = arg;
    r->result = warpcore_server_run_worker(r->server, 0);
    r->after = sched_getscheduler(0);
    return NULL;
}

static void external_worker(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_sched_batch(NULL, true), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_sched_batch(config, true), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_external_workers(config, true), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    struct runner r = {server, WARPCORE_RESULT_PANIC, -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run, &r) == 0);
    char reply[4096];
    long n = http_exchange(warpcore_server_port(server), "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                           reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(atomic_load(&handler_policy) == SCHED_BATCH);
    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_RESULT(r.result, WARPCORE_RESULT_OK);
    CHECK(r.after == SCHED_OTHER);
    warpcore_server_free(server);
}

int main(void) {
    thread_call();
    external_worker();
    return check_finish("sched_batch");
}
