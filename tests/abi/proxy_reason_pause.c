/*
 * Through C: the PROXY protocol settings (config-wide and per listener) and
 * their misuse; warpcore_response_set_reason (inside the call and deferred,
 * refused phrases, after the answer, stale handles); and
 * warpcore_response_pause_timeout (a deferred answer that outlives the
 * answer timeout, and the calls after the answer).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

static _Atomic(warpcore_response *) deferred, answered;
static atomic_int deferred_count;

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    char peer[64] = {0};
    memcpy(peer, req->peer_ip.ptr, req->peer_ip.len < 63 ? req->peer_ip.len : 63);
    if (wstr_is(req->path, "/reason")) {
        CHECK_RESULT(warpcore_response_set_reason(res, (const uint8_t *)"Bad\r\nX: 1", 9), WARPCORE_RESULT_INVALID_STATUS);
        CHECK_RESULT(warpcore_response_set_reason(res, (const uint8_t *)"\x01", 1), WARPCORE_RESULT_INVALID_STATUS);
        CHECK_RESULT(warpcore_response_set_reason(res, NULL, 3), WARPCORE_RESULT_NULL_ARGUMENT);
        CHECK_RESULT(warpcore_response_set_reason(res, NULL, 0), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_set_reason(res, (const uint8_t *)"Quite Fine", 10), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)peer, strlen(peer)), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_response_set_reason(res, (const uint8_t *)"Late", 4), WARPCORE_RESULT_ALREADY_ANSWERED);
        CHECK_RESULT(warpcore_response_pause_timeout(res), WARPCORE_RESULT_ALREADY_ANSWERED);
        atomic_store(&answered, res);
    } else if (wstr_is(req->path, "/slow")) {
        CHECK_RESULT(warpcore_response_pause_timeout(res), WARPCORE_RESULT_OK);
        atomic_store(&deferred, res);
        atomic_fetch_add(&deferred_count, 1);
    } else {
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)peer, strlen(peer)), WARPCORE_RESULT_OK);
    }
}

int main(void) {
    char reply[4096];
    /* PROXY protocol settings: misuse. */
    CHECK_RESULT(warpcore_config_set_proxy_protocol(NULL, WARPCORE_PROXY_PROTOCOL_REQUIRED), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_proxy_protocol(config, 3), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_listener_proxy_protocol(config, (const uint8_t *)"127.0.0.1:0", 11, 7),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_listener_proxy_protocol(config, (const uint8_t *)"127.0.0.1:1", 11, 1),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "not a listener") != NULL);
    CHECK_RESULT(warpcore_config_set_listener_proxy_protocol(config, NULL, 5, 1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_listener_proxy_protocol(NULL, (const uint8_t *)"x", 1, 1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_proxy_protocol(config, WARPCORE_PROXY_PROTOCOL_OPTIONAL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_listener_proxy_protocol(config, (const uint8_t *)"127.0.0.1:0", 11,
                                                             WARPCORE_PROXY_PROTOCOL_REQUIRED),
                 WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_timeout(config, WARPCORE_TIMEOUT_ANSWER, 1000), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("proxy_reason_pause");
    uint16_t port = warpcore_server_port(server);

    /* Required: the header's client is the peer; without one, closed. */
    long n = http_exchange(port, "PROXY TCP4 192.0.2.9 198.51.100.2 4000 80\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                           reply, sizeof reply);
    CHECK(n > 0 && strstr(reply, "\r\n\r\n192.0.2.9") != NULL);
    n = http_exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(n == 0);

    /* The reason phrase. */
    n = http_exchange(port, "PROXY UNKNOWN\r\nGET /reason HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply,
                      sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 Quite Fine\r\n", 25) == 0);
    CHECK(strstr(reply, "\r\n\r\n127.0.0.1") != NULL);
    /* Stale: the handle answered in its call. */
    CHECK_RESULT(warpcore_response_set_reason(atomic_load(&answered), (const uint8_t *)"x", 1), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_response_pause_timeout(atomic_load(&answered)), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_response_set_reason(NULL, (const uint8_t *)"x", 1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_response_pause_timeout(NULL), WARPCORE_RESULT_NULL_ARGUMENT);

    /* Paused: answered 2.5 s later from this thread though the answer timeout is 1 s. */
    struct bg_client c = {port, "PROXY UNKNOWN\r\nGET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", {0}, 0};
    pthread_t t;
    pthread_create(&t, NULL, bg_client_run, &c);
    CHECK(wait_at_least(&deferred_count, 1, 5000));
    warpcore_response *res = atomic_load(&deferred);
    CHECK_RESULT(warpcore_response_pause_timeout(res), WARPCORE_RESULT_OK);
    sleep_ms(2500);
    CHECK_RESULT(warpcore_response_set_reason(res, (const uint8_t *)"Worth The Wait", 14), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"done", 4), WARPCORE_RESULT_OK);
    /* Released: later calls are stale. */
    CHECK_RESULT(warpcore_response_pause_timeout(res), WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_response_set_reason(res, (const uint8_t *)"x", 1), WARPCORE_RESULT_ALREADY_ANSWERED);
    pthread_join(t, NULL);
    CHECK(c.n > 0 && strncmp(c.reply, "HTTP/1.1 200 Worth The Wait\r\n", 29) == 0);
    CHECK(strstr(c.reply, "\r\n\r\ndone") != NULL);

    warpcore_server_free(server);
    /* After the server is freed too. */
    CHECK_RESULT(warpcore_response_pause_timeout(res), WARPCORE_RESULT_ALREADY_ANSWERED);
    return check_finish("proxy_reason_pause");
}
