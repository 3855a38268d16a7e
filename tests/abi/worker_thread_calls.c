/*
 * The calls that wait for a server's workers, made from a worker thread (a
 * handler, a connection hook), where they used to wait for themselves for
 * good: warpcore_server_wait and warpcore_server_free are refused with
 * WARPCORE_RESULT_WOULD_BLOCK (nothing freed, the server goes on), and
 * warpcore_server_shutdown starts the shutdown and returns at once with the
 * same code, so that a handler may stop its own server (a /quit route). The
 * main thread then waits for the end, reads the report (a request deferred
 * before the shutdown and answered during the drain counts as finished) and
 * frees.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

static _Atomic(warpcore_server *) the_server;
static _Atomic(warpcore_response *) held; /* /held: answered by the main thread during the drain */
static atomic_int hook_checks, handler_checks;

static bool on_open(void *userdata, const warpcore_connection_info *info) {
    (void)userdata;
    (void)info;
    warpcore_server *server = atomic_load(&the_server);
    if (server) {
        CHECK_RESULT(warpcore_server_wait(server), WARPCORE_RESULT_WOULD_BLOCK);
        CHECK(strstr(last_error(), "worker thread") != NULL);
        warpcore_server_free(server); /* refused: the server must go on */
        CHECK(strstr(last_error(), "refused") != NULL);
        warpcore_server_free(NULL); /* ignored, as anywhere */
        atomic_fetch_add(&hook_checks, 1);
    }
    return true;
}

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    warpcore_server *server = atomic_load(&the_server);
    static const uint8_t bye[] = "bye";
    if (wstr_is(req->path, "/held")) {
        atomic_store(&held, res);
        return;
    }
    if (server && wstr_is(req->path, "/quit")) {
        /* Answered first: the shutdown lets requests received finish. */
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, bye, sizeof bye - 1), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_WOULD_BLOCK);
        CHECK(strstr(last_error(), "began") != NULL);
        CHECK_RESULT(warpcore_server_wait(server), WARPCORE_RESULT_WOULD_BLOCK);
        atomic_fetch_add(&handler_checks, 1);
        return;
    }
    warpcore_server_free(server); /* refused here too */
    CHECK(server == NULL || strstr(last_error(), "refused") != NULL);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, bye, 2), WARPCORE_RESULT_OK);
    atomic_fetch_add(&handler_checks, 1);
}

int main(void) {
    warpcore_config *config = local_config(2, handle, NULL);
    CHECK_RESULT(warpcore_config_set_connection_hooks(config, on_open, NULL, NULL), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("worker_thread_calls");
    atomic_store(&the_server, server);
    uint16_t port = warpcore_server_port(server);
    char reply[4096];

    long n = http_exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 ", 13) == 0 && strstr(reply, "\r\n\r\nby") != NULL);
    CHECK(atomic_load(&hook_checks) == 1 && atomic_load(&handler_checks) == 1);

    /* A request deferred before the shutdown, answered during its drain. */
    struct bg_client waiter = {.port = port, .request = "GET /held HTTP/1.1\r\nHost: t\r\n\r\n"};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, bg_client_run, &waiter) == 0);
    for (int i = 0; i < 2000 && !atomic_load(&held); i++) sleep_ms(5);
    CHECK(atomic_load(&held) != NULL);

    /* A handler stops its own server; its answer still goes out. */
    n = http_exchange(port, "GET /quit HTTP/1.1\r\nHost: t\r\n\r\n", reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 ", 13) == 0 && strstr(reply, "\r\n\r\nbye") != NULL);
    CHECK(atomic_load(&handler_checks) == 2);
    static const uint8_t late[] = "late";
    if (atomic_load(&held)) CHECK_RESULT(warpcore_respond(atomic_load(&held), 200, NULL, 0, late, 4), WARPCORE_RESULT_OK);
    pthread_join(t, NULL);
    CHECK(waiter.n > 0 && strstr(waiter.reply, "\r\nConnection: close\r\n") != NULL);
    CHECK(waiter.n > 0 && strstr(waiter.reply, "\r\n\r\nlate") != NULL);
    /* The main thread may wait: it returns once every worker has stopped. */
    CHECK_RESULT(warpcore_server_wait(server), WARPCORE_RESULT_OK);
    CHECK(connect_local(port) < 0); /* the listener is closed */
    /* The report of the shutdown the handler started, read without a second
     * shutdown: the held request finished during the drain. */
    warpcore_shutdown_report report = WARPCORE_SHUTDOWN_REPORT_INIT;
    CHECK_RESULT(warpcore_server_shutdown_report(server, &report), WARPCORE_RESULT_OK);
    CHECK(report.requests_finished == 1 && report.connections_cut == 0);
    CHECK_RESULT(warpcore_server_shutdown(server, 0), WARPCORE_RESULT_OK); /* again: harmless */
    CHECK_RESULT(warpcore_server_shutdown_report(server, &report), WARPCORE_RESULT_OK);
    CHECK(report.requests_finished == 1 && report.connections_cut == 0);
    atomic_store(&the_server, NULL);
    warpcore_server_free(server);
    return check_finish("worker_thread_calls");
}
