/*
 * warpcore_config_set_backlog: its range (NULL, 0 and 65536 refused with a
 * message, the config unchanged), and the queue the server's socket gets:
 * read back from the kernel (TCP_INFO on a listening socket reports its
 * backlog in tcpi_sacked), the default's 1024 (capped by somaxconn) and a
 * setting's own.
 */
#define _GNU_SOURCE
#include <netinet/tcp.h>

#include "check.h"

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"ok", 2), WARPCORE_RESULT_OK);
}

/* The backlog of this process's listening TCP socket on `port` (-1: none). */
static long listen_queue_of(uint16_t port) {
    for (int fd = 0; fd < 4096; fd++) {
        struct sockaddr_in addr;
        socklen_t len = sizeof addr;
        int listening = 0;
        socklen_t ilen = sizeof listening;
        if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0 || addr.sin_family != AF_INET ||
            ntohs(addr.sin_port) != port)
            continue;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) != 0 || !listening) continue;
        struct tcp_info info;
        socklen_t tlen = sizeof info;
        memset(&info, 0, sizeof info);
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &tlen) != 0) return -1;
        return (long)info.tcpi_sacked;
    }
    return -1;
}

static long somaxconn(void) {
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    long n = -1;
    if (f) {
        if (fscanf(f, "%ld", &n) != 1) n = -1;
        fclose(f);
    }
    return n;
}

/* The queue the server's socket got with `backlog` (0: the default). */
static long queue_with(uint32_t backlog) {
    warpcore_config *config = local_config(1, handler, NULL);
    if (backlog) CHECK_RESULT(warpcore_config_set_backlog(config, backlog), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    long queue = listen_queue_of(warpcore_server_port(server));
    /* And it serves. */
    char reply[256];
    CHECK(http_exchange(warpcore_server_port(server), "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                        reply, sizeof reply) > 0);
    CHECK(strncmp(reply, "HTTP/1.1 200", 12) == 0);
    warpcore_server_shutdown(server, 1000);
    warpcore_server_free(server);
    return queue;
}

static void range(void) {
    warpcore_config *config = NULL;
    CHECK_RESULT(warpcore_config_set_backlog(NULL, 16), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_new(&config), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_backlog(config, 0), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "backlog") != NULL);
    CHECK_RESULT(warpcore_config_set_backlog(config, 65536), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "backlog") != NULL);
    CHECK_RESULT(warpcore_config_set_backlog(config, 65535), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_backlog(config, 1), WARPCORE_RESULT_OK);
    warpcore_config_free(config);
}

int main(void) {
    range();
    long cap = somaxconn();
    CHECK(cap > 0);
    long def = queue_with(0), seven = queue_with(7);
    fprintf(stderr, "default queue %ld (somaxconn %ld), set to 7: %ld\n", def, cap, seven);
    CHECK(def == (cap < 1024 ? cap : 1024));
    CHECK(seven == (cap < 7 ? cap : 7));
    return check_finish("backlog");
}
