/*
 * A response handle answered inside its handler call never reaches another
 * request (issue #19, item 3). An answering handler for /a hands its handle
 * to a thread AND returns a prepared response: the prepared response is the
 * answer, and the handle is stale once the handler returns. The next request
 * on the same worker (/keep, deferred to this thread) is served by the same
 * worker and its handle pool; the thread's late warpcore_respond ("SECRET
 * ...") must get WARPCORE_RESULT_ALREADY_ANSWERED and the client of /keep its
 * own answer. Twice: the late call while /keep waits for its answer, and
 * after /keep was answered (its handle released). Under ASan: never freed
 * memory either.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

static warpcore_prepared *public_answer; /* "public answer for /a" */

/* The thread /a's handler hands its handle to: answers when told to. */
static pthread_t late_thread;
static atomic_int late_started, late_go, late_done;
static warpcore_response *late_res;
static warpcore_result late_result;

/* /keep's handle, deferred to the main thread. */
static _Atomic(warpcore_response *) kept;
static atomic_int kept_count;

static void *late_answer(void *arg) {
    (void)arg;
    static const char secret[] = "SECRET answer computed for the client of /a";
    CHECK(wait_at_least(&late_go, 1, 20000));
    late_result = warpcore_respond(late_res, 200, NULL, 0, (const uint8_t *)secret, sizeof secret - 1);
    atomic_store(&late_done, 1);
    return NULL;
}

static const warpcore_prepared *handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->path, "/a")) {
        late_res = res;
        int created = pthread_create(&late_thread, NULL, late_answer, NULL) == 0;
        CHECK(created);
        atomic_store(&late_started, created);
        return public_answer; /* the answer: the handle is stale from here on */
    }
    if (wstr_is(req->path, "/keep")) {
        atomic_store(&kept, res);
        atomic_fetch_add(&kept_count, 1);
        return NULL; /* deferred: answered by the main thread */
    }
    return NULL; /* answered 500 by the library */
}

/* One round: /a, then /keep; the late call before or after /keep's answer. */
static void round_trip(uint16_t port, int late_after_keep_answered) {
    char reply[4096];
    atomic_store(&late_go, 0);
    atomic_store(&late_done, 0);
    atomic_store(&late_started, 0);
    late_result = WARPCORE_RESULT_OK;

    long n = http_exchange(port, "GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(reply, "\r\n\r\npublic answer for /a") != NULL);
    CHECK(atomic_load(&late_started));

    int before = atomic_load(&kept_count);
    struct bg_client c = {port, "GET /keep HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", {0}, -1};
    pthread_t client;
    CHECK(pthread_create(&client, NULL, bg_client_run, &c) == 0);
    CHECK(wait_at_least(&kept_count, before + 1, 20000));
    warpcore_response *keep = atomic_load(&kept);

    static const char own[] = "the answer for the client of /keep";
    if (late_after_keep_answered) {
        CHECK_RESULT(warpcore_respond(keep, 200, NULL, 0, (const uint8_t *)own, sizeof own - 1), WARPCORE_RESULT_OK);
    }
    atomic_store(&late_go, 1);
    if (atomic_load(&late_started)) pthread_join(late_thread, NULL);
    CHECK(atomic_load(&late_done));
    CHECK_RESULT(late_result, WARPCORE_RESULT_ALREADY_ANSWERED);
    if (!late_after_keep_answered) {
        CHECK_RESULT(warpcore_respond(keep, 200, NULL, 0, (const uint8_t *)own, sizeof own - 1), WARPCORE_RESULT_OK);
    }
    pthread_join(client, NULL);
    CHECK(c.n > 0 && strncmp(c.reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(c.reply, "\r\n\r\nthe answer for the client of /keep") != NULL);
    CHECK(strstr(c.reply, "SECRET") == NULL);
    if (strstr(c.reply, "SECRET") != NULL) fprintf(stderr, "the client of /keep got:\n%s\n", c.reply);
}

int main(void) {
    static const char body[] = "public answer for /a";
    CHECK_RESULT(warpcore_prepared_new(200, NULL, 0, (const uint8_t *)body, sizeof body - 1, &public_answer),
                 WARPCORE_RESULT_OK);
    warpcore_config *config = local_config(1, NULL, NULL);
    CHECK_RESULT(warpcore_config_set_answering_handler(config, handler, NULL), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("stale_handle");
    uint16_t port = warpcore_server_port(server);

    for (int i = 0; i < 4; i++) round_trip(port, i % 2);

    CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    warpcore_prepared_free(public_answer);
    return check_finish("stale_handle");
}
