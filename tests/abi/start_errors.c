/*
 * Starting a server that cannot start: bad addresses, a port in use, no
 * handler. Each returns its code with a message and writes nothing to *out.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

static void dummy_handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    warpcore_respond(res, 200, NULL, 0, NULL, 0);
}

/* Starting must fail with `want`, leave `out` NULL, and leave a message. */
static void start_fails(const warpcore_config *config, warpcore_result want, const char *message_part) {
    warpcore_server *server = NULL;
    CHECK_RESULT(warpcore_server_start(config, &server), want);
    CHECK(server == NULL);
    if (message_part && !strstr(last_error(), message_part)) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", last_error(), message_part);
        CHECK(0);
    }
    warpcore_server_free(server);
}

static void bad_addresses(void) {
    static const char *bad[] = {"nonsense", "127.0.0.1", "127.0.0.1:", ":8080", "127.0.0.1:99999",
                                "127.0.0.1:-1", "127.0.0.1:http0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        warpcore_config *config = local_config(1, dummy_handler, NULL);
        CHECK_RESULT(warpcore_config_set_listen(config, (const uint8_t *)bad[i], strlen(bad[i])), WARPCORE_RESULT_OK);
        start_fails(config, WARPCORE_RESULT_INVALID_ADDRESS, bad[i]);
        warpcore_config_free(config);
    }
    /* An empty address (NULL, 0). */
    warpcore_config *config = local_config(1, dummy_handler, NULL);
    CHECK_RESULT(warpcore_config_set_listen(config, NULL, 0), WARPCORE_RESULT_OK);
    start_fails(config, WARPCORE_RESULT_INVALID_ADDRESS, NULL);
    /* Not UTF-8: refused by the setter already. */
    static const uint8_t not_utf8[] = {0xff, 0xfe, ':', '8', '0'};
    CHECK_RESULT(warpcore_config_set_listen(config, not_utf8, sizeof not_utf8), WARPCORE_RESULT_INVALID_ADDRESS);
    warpcore_config_free(config);
}

static void port_in_use(void) {
    /* A plain POSIX listener takes a port first. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(fd, 16) == 0);
    socklen_t addr_len = sizeof addr;
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0);
    char listen_on[64];
    snprintf(listen_on, sizeof listen_on, "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));

    warpcore_config *config = local_config(2, dummy_handler, NULL);
    CHECK_RESULT(warpcore_config_set_listen(config, (const uint8_t *)listen_on, strlen(listen_on)), WARPCORE_RESULT_OK);
    start_fails(config, WARPCORE_RESULT_ADDRESS_IN_USE, listen_on);

    /* Once the port is free again, the same config starts. */
    close(fd);
    warpcore_server *server = NULL;
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_OK);
    CHECK(server != NULL && warpcore_server_port(server) == ntohs(addr.sin_port));
    /* And a second server on its port is refused. */
    start_fails(config, WARPCORE_RESULT_ADDRESS_IN_USE, NULL);
    warpcore_server_free(server);
    warpcore_config_free(config);
}

static void no_handler(void) {
    warpcore_config *config = local_config(1, NULL, NULL);
    start_fails(config, WARPCORE_RESULT_INVALID_ARGUMENT, "handler");
    warpcore_config_free(config);
}

static void config_is_not_retained(void) {
    /* The config may be freed right after starting. */
    warpcore_config *config = local_config(1, dummy_handler, NULL);
    warpcore_server *server = start_server(config);
    char reply[4096];
    long n = http_exchange(warpcore_server_port(server), "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                           reply, sizeof reply);
    CHECK(n > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    /* Shutdown twice, then free. */
    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_wait(server), WARPCORE_RESULT_OK);
    warpcore_server_free(server);

    /* Free without shutdown shuts down. */
    config = local_config(2, dummy_handler, NULL);
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_OK);
    warpcore_config_free(config);
    warpcore_server_free(server);
}

int main(void) {
    bad_addresses();
    port_in_use();
    no_handler();
    config_is_not_retained();
    return check_finish("start_errors");
}
