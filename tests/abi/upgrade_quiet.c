/*
 * warpcore_upgraded_set_quiet_notice: an upgraded connection that asked is
 * told WARPCORE_UPGRADE_EVENT_QUIET at each half of its idle timeout without
 * a byte either way, and the idle timeout no longer closes it; a byte from
 * the peer starts a new quiet half; turned off again, the idle timeout closes
 * the connection. Misuse ends in its documented code: NULL, a freed handle,
 * a closed connection. Run under AddressSanitizer.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

static atomic_int quiet_events;
static atomic_int closed_events;
static _Atomic(warpcore_upgraded *) upgraded;

static const warpcore_header upgrade_x[] = {{{(const uint8_t *)"Upgrade", 7}, {(const uint8_t *)"x", 1}}};

/* The ping of a protocol would go out here; this one only counts, and
 * drains what the peer sent. */
static void on_event(void *userdata, warpcore_upgraded *up, uint32_t events) {
    (void)userdata;
    if (events & WARPCORE_UPGRADE_EVENT_QUIET) atomic_fetch_add(&quiet_events, 1);
    if (events & WARPCORE_UPGRADE_EVENT_READABLE) {
        uint8_t buf[64];
        size_t n = 0;
        while (warpcore_upgraded_read(up, buf, sizeof buf, &n) == WARPCORE_RESULT_OK && n > 0) {
        }
    }
    if (events & WARPCORE_UPGRADE_EVENT_CLOSED) atomic_fetch_add(&closed_events, 1);
}

static _Atomic(warpcore_upgraded *) without_callback;

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    warpcore_upgraded *up = NULL;
    if (wstr_is(req->path, "/nocb")) {
        /* Nobody to tell: the idle timeout still closes it. */
        CHECK_RESULT(warpcore_response_upgrade(res, upgrade_x, 1, NULL, NULL, &up), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_upgraded_set_idle_timeout(up, 1000), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_upgraded_set_quiet_notice(up, true), WARPCORE_RESULT_OK);
        atomic_store(&without_callback, up);
        return;
    }
    CHECK_RESULT(warpcore_response_upgrade(res, upgrade_x, 1, on_event, NULL, &up), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_upgraded_set_idle_timeout(up, 2000), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_upgraded_set_quiet_notice(up, true), WARPCORE_RESULT_OK);
    atomic_store(&upgraded, up);
}

/* Reads the 101's head; true when it came. */
static int read_101(int fd) {
    char head[1024];
    size_t len = 0;
    while (len + 1 < sizeof head) {
        ssize_t n = recv(fd, head + len, 1, 0);
        if (n <= 0) return 0;
        len += (size_t)n;
        if (len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0) break;
    }
    head[len] = 0;
    return strncmp(head, "HTTP/1.1 101", 12) == 0;
}

/* Whether the peer's side is still open: nothing to read, no end. */
static int still_open(int fd) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

int main(void) {
    CHECK_RESULT(warpcore_upgraded_set_quiet_notice(NULL, true), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_server *server = start_server(local_config(1, handle, NULL));
    uint16_t port = warpcore_server_port(server);
    int fd = connect_local(port);
    CHECK(fd >= 0);
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n";
    CHECK(send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1));
    CHECK(read_101(fd));
    /* Stored by the handler before its call returned, so before the 101 left. */
    warpcore_upgraded *up = atomic_load(&upgraded);
    CHECK(up != NULL);

    /* Quiet halves (1 s each, checked once a second): told twice, and open
     * at the 2 s idle timeout. */
    CHECK(wait_at_least(&quiet_events, 2, 10000));
    CHECK(still_open(fd));
    CHECK(atomic_load(&closed_events) == 0);

    /* A byte from the peer: a new quiet half before the next QUIET. */
    CHECK(send(fd, "a", 1, MSG_NOSIGNAL) == 1);
    CHECK(wait_at_least(&quiet_events, 3, 10000));
    CHECK(still_open(fd));

    /* Off again: the idle timeout closes the quiet connection. */
    CHECK_RESULT(warpcore_upgraded_set_quiet_notice(up, false), WARPCORE_RESULT_OK);
    CHECK(wait_at_least(&closed_events, 1, 10000));
    char c;
    CHECK(recv(fd, &c, 1, 0) == 0);
    CHECK_RESULT(warpcore_upgraded_set_quiet_notice(up, true), WARPCORE_RESULT_CLOSED);
    warpcore_upgraded_free(up);
    CHECK_RESULT(warpcore_upgraded_set_quiet_notice(up, true), WARPCORE_RESULT_INVALID_ARGUMENT);
    close(fd);

    /* Upgraded without a callback: quiet notice asked, nobody to tell, so
     * the idle timeout closes it as before. */
    fd = connect_local(port);
    CHECK(fd >= 0);
    static const char nocb[] = "GET /nocb HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n";
    CHECK(send(fd, nocb, sizeof nocb - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof nocb - 1));
    CHECK(read_101(fd));
    CHECK(recv(fd, &c, 1, 0) == 0); /* within the 10 s receive timeout */
    warpcore_upgraded_free(atomic_load(&without_callback));
    close(fd);
    warpcore_server_shutdown(server, 1000);
    warpcore_server_free(server);
    return check_finish("upgrade_quiet");
}
