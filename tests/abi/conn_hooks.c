/*
 * Connection hooks through C (warpcore_config_set_connection_hooks): an open
 * callback that refuses a connection before any byte is read, a close
 * callback told once per opened connection with the same values, both on
 * worker threads; NULL and bad arguments; hooks turned off by a later call;
 * callbacks still told of connections cut at shutdown.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

struct hooks {
    atomic_int opens, closes, refuse_next;
    atomic_ullong id_sum_open, id_sum_close;
    atomic_int bad_views;
};

static bool on_open(void *userdata, const warpcore_connection_info *c) {
    struct hooks *h = userdata;
    if (c == NULL || !wstr_is(c->peer_ip, "127.0.0.1") || c->peer_port == 0 || c->worker_index != 0)
        atomic_fetch_add(&h->bad_views, 1);
    atomic_fetch_add(&h->id_sum_open, c->id);
    atomic_fetch_add(&h->opens, 1);
    return atomic_exchange(&h->refuse_next, 0) == 0;
}

static void on_close(void *userdata, const warpcore_connection_info *c) {
    struct hooks *h = userdata;
    if (c == NULL || !wstr_is(c->peer_ip, "127.0.0.1")) atomic_fetch_add(&h->bad_views, 1);
    atomic_fetch_add(&h->id_sum_close, c->id);
    atomic_fetch_add(&h->closes, 1);
}

static atomic_int handled;

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    atomic_fetch_add(&handled, 1);
    static const uint8_t body[] = "hello";
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, body, sizeof body - 1), WARPCORE_RESULT_OK);
}

int main(void) {
    static struct hooks h;
    char reply[4096];
    const char *get = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    /* Misuse: NULL config; both NULL is fine (off). */
    CHECK_RESULT(warpcore_config_set_connection_hooks(NULL, on_open, on_close, &h), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_connection_hooks(config, NULL, NULL, NULL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_connection_hooks(config, on_open, on_close, &h), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("conn_hooks");
    uint16_t port = warpcore_server_port(server);

    long n = http_exchange(port, get, reply, sizeof reply);
    CHECK(n > 0 && strstr(reply, "hello") != NULL);
    CHECK(wait_at_least(&h.closes, 1, 5000));

    /* Refused: closed before anything is read, nothing answered, still closed once. */
    atomic_store(&h.refuse_next, 1);
    n = http_exchange(port, get, reply, sizeof reply);
    CHECK(n == 0);
    CHECK(wait_at_least(&h.closes, 2, 5000));
    CHECK(atomic_load(&handled) == 1);

    /* A connection left open is cut at shutdown and told. */
    int fd = connect_local(port);
    CHECK(fd >= 0);
    CHECK(wait_at_least(&h.opens, 3, 5000));
    warpcore_server_shutdown(server, 0);
    CHECK(wait_at_least(&h.closes, 3, 5000));
    if (fd >= 0) close(fd);
    warpcore_server_free(server);
    CHECK(atomic_load(&h.opens) == 3 && atomic_load(&h.closes) == 3);
    CHECK(atomic_load(&h.id_sum_open) == atomic_load(&h.id_sum_close));
    CHECK(atomic_load(&h.bad_views) == 0);

    /* Only a close callback: every connection is kept and told; a later call
     * with both NULL turns the hooks off. */
    static struct hooks only_close;
    config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_connection_hooks(config, NULL, on_close, &only_close), WARPCORE_RESULT_OK);
    server = start_server(config);
    if (!server) return check_finish("conn_hooks");
    port = warpcore_server_port(server);
    n = http_exchange(port, get, reply, sizeof reply);
    CHECK(n > 0 && strstr(reply, "hello") != NULL);
    CHECK(wait_at_least(&only_close.closes, 1, 5000));
    warpcore_config *off = local_config(1, handler, NULL);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);
    CHECK_RESULT(warpcore_config_set_listen(off, (const uint8_t *)listen, strlen(listen)), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_connection_hooks(off, NULL, NULL, NULL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_reload(server, off), WARPCORE_RESULT_OK);
    warpcore_config_free(off);
    n = http_exchange(port, get, reply, sizeof reply);
    CHECK(n > 0);
    warpcore_server_free(server);
    CHECK(atomic_load(&only_close.closes) == 1);
    return check_finish("conn_hooks");
}
