/*
 * warpcore_config_set_backlog: its range (NULL, 0 and 65536 refused with a
 * message, the config unchanged), and its effect on the sockets the server
 * binds: with one connection allowed (accepting pauses at the limit), a
 * queue of 1 holds what the kernel lets it hold and the SYNs of later
 * connections are dropped (they wait), where the default queue takes them
 * all at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>

#include "check.h"

#define LATER 6

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"ok", 2), WARPCORE_RESULT_OK);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Starts LATER non-blocking connects to `port` and returns how many have
 * completed their handshake once `want` have or `ms` passed. */
static int handshakes(uint16_t port, int *fds, int want, long ms) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < LATER; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(fds[i] >= 0);
        int r = connect(fds[i], (struct sockaddr *)&addr, sizeof addr);
        CHECK(r == 0 || errno == EINPROGRESS);
    }
    long deadline = now_ms() + ms;
    int done = 0;
    for (;;) {
        struct pollfd p[LATER];
        for (int i = 0; i < LATER; i++) p[i] = (struct pollfd){fds[i], POLLOUT, 0};
        long left = deadline - now_ms();
        poll(p, LATER, left > 0 ? (int)left : 0);
        done = 0;
        for (int i = 0; i < LATER; i++) {
            int err = 0;
            socklen_t len = sizeof err;
            if ((p[i].revents & POLLOUT) && getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
                done++;
        }
        if (done >= want || now_ms() >= deadline) return done;
        sleep_ms(10);
    }
}

/* With one connection allowed and held, how many of LATER more complete
 * their handshake: `backlog` 0 leaves the default. */
static int queued_past_the_limit(uint32_t backlog, int want, long ms) {
    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_max_connections(config, 1), WARPCORE_RESULT_OK);
    if (backlog) CHECK_RESULT(warpcore_config_set_backlog(config, backlog), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    uint16_t port = warpcore_server_port(server);
    /* The one connection, answered (so taken by the server) and kept. */
    int held = connect_local(port);
    CHECK(held >= 0);
    static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(write(held, get, sizeof get - 1) == (ssize_t)(sizeof get - 1));
    char reply[512];
    CHECK(read(held, reply, sizeof reply) > 0);
    int fds[LATER];
    int done = handshakes(port, fds, want, ms);
    for (int i = 0; i < LATER; i++) close(fds[i]);
    close(held);
    warpcore_server_shutdown(server, 1000);
    warpcore_server_free(server);
    return done;
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
    /* The default queue takes every later connection at once. */
    CHECK(queued_past_the_limit(0, LATER, 5000) == LATER);
    /* A queue of 1 holds one or two (the kernel takes backlog + 1); the
     * others' SYNs are dropped and sent again a second later, still to a
     * full queue: 2.5 s is past that first retry. */
    int queued = queued_past_the_limit(1, LATER, 2500);
    fprintf(stderr, "queue of 1: %d of %d connections completed\n", queued, LATER);
    CHECK(queued >= 1 && queued <= 2);
    return check_finish("backlog");
}
