/*
 * Upgraded connections and WebSockets at the C API, and the misuse a careless
 * caller makes, each ending in its documented code: NULL arguments, an
 * upgrade the request did not ask for, a 101 without an Upgrade field, a
 * second answer after the upgrade, reads on a worker thread (WOULD_BLOCK),
 * calls after the connection closed (CLOSED), calls with a freed handle and
 * a stale one whose slot serves a new connection (INVALID_ARGUMENT, never
 * another connection), a double free, a free while another thread is
 * blocked in a read; for WebSockets a buffer too small, a bad kind, text that
 * is not UTF-8, a close code an endpoint may not send. Run under
 * AddressSanitizer: no call touches freed memory.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

static atomic_int handled;
static atomic_int closed_events;
static atomic_int ws_closed_events;
static _Atomic(warpcore_upgraded *) last_upgraded;
static _Atomic(warpcore_websocket *) last_websocket;
static _Atomic(warpcore_response *) deferred_handle;

static const warpcore_header upgrade_echo[] = {{{(const uint8_t *)"Upgrade", 7}, {(const uint8_t *)"echo", 4}}};

/* An echo from the worker's loop: reads never wait there. */
static void raw_event(void *userdata, warpcore_upgraded *up, uint32_t events) {
    (void)userdata;
    if (events & WARPCORE_UPGRADE_EVENT_CLOSED) {
        uint8_t buf[8];
        size_t n = 0;
        /* The peer half-closed before: the end of its stream stays the answer. */
        CHECK_RESULT(warpcore_upgraded_read(up, buf, sizeof buf, &n), WARPCORE_RESULT_OK);
        CHECK(n == 0);
        CHECK_RESULT(warpcore_upgraded_write(up, buf, 1), WARPCORE_RESULT_CLOSED);
        atomic_fetch_add(&closed_events, 1);
        return;
    }
    uint8_t buf[4096];
    for (;;) {
        size_t n = 0;
        warpcore_result r = warpcore_upgraded_read(up, buf, sizeof buf, &n);
        if (r == WARPCORE_RESULT_WOULD_BLOCK) return;
        if (r != WARPCORE_RESULT_OK) return;
        if (n == 0) {
            CHECK_RESULT(warpcore_upgraded_shutdown_write(up), WARPCORE_RESULT_OK);
            CHECK_RESULT(warpcore_upgraded_shutdown_write(up), WARPCORE_RESULT_CLOSED);
            return;
        }
        CHECK_RESULT(warpcore_upgraded_write(up, buf, n), WARPCORE_RESULT_OK);
    }
}

static void ws_event(void *userdata, warpcore_websocket *ws, uint32_t events) {
    (void)userdata;
    (void)ws;
    if (events & WARPCORE_WEBSOCKET_EVENT_CLOSED) atomic_fetch_add(&ws_closed_events, 1);
}

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    warpcore_upgraded *up = NULL;
    if (wstr_is(req->path, "/plain")) {
        /* Not asked: refused, and the response is still the handler's. */
        CHECK_RESULT(warpcore_response_upgrade(res, upgrade_echo, 1, NULL, NULL, &up), WARPCORE_RESULT_INVALID_STATE);
        CHECK_RESULT(warpcore_response_take_over(res, NULL, NULL, &up), WARPCORE_RESULT_INVALID_STATE);
        warpcore_websocket *ws = NULL;
        CHECK_RESULT(warpcore_websocket_accept(res, NULL, 0, 0, NULL, NULL, &ws), WARPCORE_RESULT_INVALID_STATE);
        CHECK(up == NULL && ws == NULL);
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, (const uint8_t *)"plain", 5), WARPCORE_RESULT_OK);
    } else if (wstr_is(req->path, "/raw")) {
        CHECK_RESULT(warpcore_response_upgrade(res, upgrade_echo, 1, raw_event, NULL, NULL),
                     WARPCORE_RESULT_NULL_ARGUMENT);
        CHECK_RESULT(warpcore_response_upgrade(res, NULL, 0, raw_event, NULL, &up), WARPCORE_RESULT_INVALID_HEADER);
        CHECK_RESULT(warpcore_response_upgrade(res, upgrade_echo, 1, raw_event, NULL, &up), WARPCORE_RESULT_OK);
        CHECK(up != NULL);
        /* The response is finished: a second answer is refused. */
        CHECK_RESULT(warpcore_respond(res, 200, NULL, 0, NULL, 0), WARPCORE_RESULT_ALREADY_ANSWERED);
        warpcore_upgraded *again = NULL;
        CHECK_RESULT(warpcore_response_upgrade(res, upgrade_echo, 1, NULL, NULL, &again),
                     WARPCORE_RESULT_ALREADY_ANSWERED);
        CHECK(again == NULL);
        atomic_store(&last_upgraded, up);
    } else if (wstr_is(req->path, "/deferred")) {
        /* Taken over later, from the test's thread. */
        atomic_store(&deferred_handle, res);
    } else if (wstr_is(req->path, "/ws")) {
        warpcore_websocket *ws = NULL;
        CHECK_RESULT(warpcore_websocket_accept(res, NULL, 0, 200, ws_event, NULL, &ws), WARPCORE_RESULT_OK);
        atomic_store(&last_websocket, ws);
    }
    atomic_fetch_add(&handled, 1);
}

static int upgrade_connect(uint16_t port, const char *path, const char *extra) {
    int fd = connect_local(port);
    char request[512];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s\r\n", path,
                       extra ? "websocket" : "echo", extra ? extra : "");
    CHECK(send(fd, request, (size_t)len, MSG_NOSIGNAL) == len);
    return fd;
}

/* Reads the response head (through the blank line); returns its status. */
static int read_head(int fd) {
    char head[2048];
    size_t len = 0;
    while (len + 1 < sizeof head) {
        ssize_t n = recv(fd, head + len, 1, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
        if (len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0) break;
    }
    head[len] = 0;
    int status = -1;
    sscanf(head, "HTTP/1.1 %d", &status);
    return status;
}

static int recv_exactly(int fd, char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0) return 0;
        got += (size_t)n;
    }
    return 1;
}

/* Sends one masked client frame. */
static void send_frame(int fd, uint8_t opcode, const void *payload, size_t len) {
    uint8_t frame[1024];
    size_t at = 0;
    frame[at++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        frame[at++] = (uint8_t)(0x80 | len);
    } else { /* the tests send less than 1000 bytes */
        frame[at++] = 0x80 | 126;
        frame[at++] = (uint8_t)(len >> 8);
        frame[at++] = (uint8_t)len;
    }
    static const uint8_t mask[4] = {1, 2, 3, 4};
    memcpy(frame + at, mask, 4);
    at += 4;
    for (size_t i = 0; i < len; i++) frame[at++] = ((const uint8_t *)payload)[i] ^ mask[i % 4];
    CHECK(send(fd, frame, at, MSG_NOSIGNAL) == (ssize_t)at);
}

static atomic_int released;

/* The release callback of warpcore_upgraded_write_buffer: counts its calls. */
static void count_release(void *userdata, const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    CHECK(userdata == &released);
    atomic_fetch_add(&released, 1);
}

static warpcore_upgraded *blocked_handle;
static atomic_int blocked_returned;

static void *blocked_read(void *arg) {
    (void)arg;
    uint8_t buf[16];
    size_t n = 0;
    warpcore_result r = warpcore_upgraded_read(blocked_handle, buf, sizeof buf, &n);
    /* Freed while it waited: it returns, as closed (or, freed before it
     * began, the handle is stale). */
    CHECK(r == WARPCORE_RESULT_CLOSED || r == WARPCORE_RESULT_INVALID_ARGUMENT);
    atomic_store(&blocked_returned, 1);
    return NULL;
}

int main(void) {
    warpcore_server *server = start_server(local_config(1, handle, NULL));
    uint16_t port = warpcore_server_port(server);
    char reply[4096];

    /* A request that did not ask is answered as HTTP. */
    long got = http_exchange(port, "GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply);
    CHECK(got > 0 && strstr(reply, "\r\n\r\nplain") != NULL);

    /* Upgrade in the call; an echo from the worker's loop; a half-close. */
    int fd = upgrade_connect(port, "/raw", NULL);
    CHECK(read_head(fd) == 101);
    CHECK(send(fd, "hello", 5, MSG_NOSIGNAL) == 5);
    char echoed[8] = {0};
    CHECK(recv_exactly(fd, echoed, 5) && memcmp(echoed, "hello", 5) == 0);
    shutdown(fd, SHUT_WR);
    CHECK(recv(fd, echoed, sizeof echoed, 0) == 0);
    close(fd);
    CHECK(wait_at_least(&closed_events, 1, 10000));
    warpcore_upgraded *up = atomic_load(&last_upgraded);
    /* Closed, not freed: CLOSED; then freed: INVALID_ARGUMENT, and a second free does nothing. */
    size_t n = 0;
    uint8_t buf[64];
    uint64_t left = 0;
    CHECK_RESULT(warpcore_upgraded_write(up, (const uint8_t *)"x", 1), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_upgraded_close(up), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_upgraded_draining(up, &left), WARPCORE_RESULT_OK);
    CHECK(left == UINT64_MAX);
    CHECK_RESULT(warpcore_upgraded_draining(up, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_upgraded_read(up, buf, sizeof buf, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_upgraded_free(up);
    warpcore_upgraded_free(up);
    warpcore_upgraded_free(NULL);
    CHECK_RESULT(warpcore_upgraded_read(up, buf, sizeof buf, &n), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_upgraded_write(up, buf, 1), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_upgraded_set_idle_timeout(up, 1000), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_upgraded_read(NULL, buf, sizeof buf, &n), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_upgraded_read((warpcore_upgraded *)(uintptr_t)0x7fff00001234, buf, sizeof buf, &n),
                 WARPCORE_RESULT_INVALID_ARGUMENT);

    /* A deferred take-over from this thread: the application writes its own
     * answer; a blocking read waits for the peer; the stale handle of the
     * freed connection (whose slot this one may reuse) reaches nothing. */
    fd = upgrade_connect(port, "/deferred", NULL);
    CHECK(wait_at_least(&handled, 3, 10000));
    warpcore_upgraded *taken = NULL;
    CHECK_RESULT(warpcore_response_take_over(atomic_load(&deferred_handle), NULL, NULL, &taken), WARPCORE_RESULT_OK);
    CHECK(taken != NULL && taken != up);
    CHECK_RESULT(warpcore_response_take_over(atomic_load(&deferred_handle), NULL, NULL, &taken),
                 WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK_RESULT(warpcore_upgraded_write(up, (const uint8_t *)"stale", 5), WARPCORE_RESULT_INVALID_ARGUMENT);
    static const char own[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n";
    CHECK_RESULT(warpcore_upgraded_write(taken, (const uint8_t *)own, sizeof own - 1), WARPCORE_RESULT_OK);
    /* A buffer handed over without a copy: sent, then released exactly once. */
    static const char handed[] = "handed";
    CHECK_RESULT(warpcore_upgraded_write_buffer(taken, (const uint8_t *)handed, 6, NULL, NULL),
                 WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_upgraded_write_buffer(taken, (const uint8_t *)handed, 6, count_release, &released),
                 WARPCORE_RESULT_OK);
    CHECK(read_head(fd) == 101);
    char got_handed[6];
    CHECK(recv_exactly(fd, got_handed, 6) && memcmp(got_handed, "handed", 6) == 0);
    CHECK(wait_at_least(&released, 1, 10000));
    CHECK(send(fd, "ping", 4, MSG_NOSIGNAL) == 4);
    CHECK_RESULT(warpcore_upgraded_read(taken, buf, 4, &n), WARPCORE_RESULT_OK);
    CHECK(n >= 1 && memcmp(buf, "ping", n) == 0);
    CHECK_RESULT(warpcore_upgraded_set_nonblocking(taken, true), WARPCORE_RESULT_OK);
    if (n < 4) CHECK_RESULT(warpcore_upgraded_read(taken, buf, 4, &n), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_upgraded_read(taken, buf, 4, &n), WARPCORE_RESULT_WOULD_BLOCK);
    CHECK_RESULT(warpcore_upgraded_set_nonblocking(taken, false), WARPCORE_RESULT_OK);
    /* A read blocked on another thread returns when the handle is freed. */
    blocked_handle = taken;
    pthread_t reader;
    pthread_create(&reader, NULL, blocked_read, NULL);
    sleep_ms(50); /* most often the read is blocked by now; either way is checked */
    warpcore_upgraded_free(taken);
    pthread_join(reader, NULL);
    CHECK(atomic_load(&blocked_returned) == 1);
    CHECK(recv(fd, buf, sizeof buf, 0) == 0);
    close(fd);
    /* A buffer handed to a freed handle is refused and released at once, once. */
    CHECK_RESULT(warpcore_upgraded_write_buffer(taken, (const uint8_t *)handed, 6, count_release, &released),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(atomic_load(&released) == 2);

    /* WebSockets: a 200-byte message limit, a buffer too small, bad sends, closes. */
    fd = upgrade_connect(port, "/ws", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    CHECK(read_head(fd) == 101);
    CHECK(wait_at_least(&handled, 4, 10000));
    warpcore_websocket *ws = atomic_load(&last_websocket);
    send_frame(fd, 0x1, "0123456789", 10);
    uint32_t kind = 0;
    CHECK_RESULT(warpcore_websocket_recv(ws, buf, 4, &n, &kind), WARPCORE_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 10);
    CHECK_RESULT(warpcore_websocket_recv(ws, buf, sizeof buf, &n, &kind), WARPCORE_RESULT_OK);
    CHECK(n == 10 && kind == WARPCORE_WEBSOCKET_KIND_TEXT && memcmp(buf, "0123456789", 10) == 0);
    CHECK_RESULT(warpcore_websocket_recv(ws, buf, sizeof buf, NULL, &kind), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_websocket_send(ws, 3, buf, 1), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_websocket_send(ws, WARPCORE_WEBSOCKET_KIND_TEXT, (const uint8_t *)"\xff", 1),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_websocket_close(ws, 1005, NULL, 0), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_websocket_close(ws, 1000, (const uint8_t *)"\xff", 1), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_websocket_send(ws, WARPCORE_WEBSOCKET_KIND_BINARY, (const uint8_t *)"ok", 2),
                 WARPCORE_RESULT_OK);
    uint8_t frame[4];
    CHECK(recv_exactly(fd, (char *)frame, 4) && frame[0] == 0x82 && frame[1] == 2 && memcmp(frame + 2, "ok", 2) == 0);
    /* A message over the limit: the peer is told 1009 and cut; recv gives the Close. */
    static const uint8_t too_long[300] = {0};
    send_frame(fd, 0x2, too_long, sizeof too_long);
    CHECK_RESULT(warpcore_websocket_recv(ws, buf, sizeof buf, &n, &kind), WARPCORE_RESULT_OK);
    CHECK(kind == WARPCORE_WEBSOCKET_KIND_CLOSE && n >= 2 && (buf[0] << 8 | buf[1]) == 1009);
    CHECK_RESULT(warpcore_websocket_recv(ws, buf, sizeof buf, &n, &kind), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_websocket_send(ws, WARPCORE_WEBSOCKET_KIND_BINARY, buf, 1), WARPCORE_RESULT_CLOSED);
    CHECK_RESULT(warpcore_websocket_close(ws, 1000, NULL, 0), WARPCORE_RESULT_CLOSED);
    CHECK(recv_exactly(fd, (char *)frame, 4) && frame[0] == 0x88 && (frame[2] << 8 | frame[3]) == 1009);
    CHECK(wait_at_least(&ws_closed_events, 1, 10000));
    warpcore_websocket_free(ws);
    warpcore_websocket_free(ws);
    warpcore_websocket_free(NULL);
    CHECK_RESULT(warpcore_websocket_recv(ws, buf, sizeof buf, &n, &kind), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_websocket_send(ws, WARPCORE_WEBSOCKET_KIND_BINARY, buf, 1), WARPCORE_RESULT_INVALID_ARGUMENT);
    close(fd);

    warpcore_stats stats = WARPCORE_STATS_INIT;
    CHECK_RESULT(warpcore_server_stats(server, &stats), WARPCORE_RESULT_OK);
    CHECK(stats.upgrades == 3);
    warpcore_server_shutdown(server, 1000);
    warpcore_server_free(server);
    return check_finish("upgrade");
}
