/*
 * Shared helpers for the C ABI tests: counted checks that report file and
 * line, a result check that prints the library's message, and a minimal HTTP
 * client over POSIX sockets. Each test program includes this once.
 */
#ifndef WARPCORE_ABI_CHECK_H
#define WARPCORE_ABI_CHECK_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "warpcore.h"

/* Checks may run on handler threads: the counters are atomic. */
static atomic_int check_count;
static atomic_int check_failures;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        atomic_fetch_add(&check_count, 1);                                              \
        if (!(cond)) {                                                                  \
            atomic_fetch_add(&check_failures, 1);                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                               \
    } while (0)

/* `expr` must return `want`; on a mismatch, prints both codes and the message. */
#define CHECK_RESULT(expr, want)                                                        \
    do {                                                                                \
        warpcore_result got_ = (expr);                                                  \
        warpcore_result want_ = (want);                                                 \
        atomic_fetch_add(&check_count, 1);                                              \
        if (got_ != want_) {                                                            \
            char message_[256];                                                         \
            warpcore_last_error_message(message_, sizeof message_);                     \
            atomic_fetch_add(&check_failures, 1);                                       \
            fprintf(stderr, "%s:%d: %s returned %u (%s; last error: %s), expected %u (%s)\n", \
                    __FILE__, __LINE__, #expr, (unsigned)got_, warpcore_result_str(got_),   \
                    message_, (unsigned)want_, warpcore_result_str(want_));             \
        }                                                                               \
    } while (0)

/* Prints the tally; the program's exit status. */
static inline int check_finish(const char *name) {
    int failures = atomic_load(&check_failures);
    printf("%s: %d checks, %d failed\n", name, atomic_load(&check_count), failures);
    return failures == 0 ? 0 : 1;
}

/* The calling thread's last error message (truncated to 255 bytes). */
static inline const char *last_error(void) {
    static _Thread_local char buf[256];
    warpcore_last_error_message(buf, sizeof buf);
    return buf;
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Waits until `*value` is at least `want`, looking every millisecond, for at
 * most `ms` milliseconds: a generous deadline for an event, never a delay
 * standing in for one. Returns whether it got there.
 */
static inline int wait_at_least(atomic_int *value, int want, long ms) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (atomic_load(value) < want) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited = (now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
        if (waited >= ms) return 0;
        sleep_ms(1);
    }
    return 1;
}

/*
 * A TCP connection to 127.0.0.1:port with 10 s send and receive timeouts; -1
 * on failure. A `rcvbuf` other than 0 sets the receive buffer (before
 * connecting, so that the window follows it): a small one makes the server's
 * writes to a client that does not read block sooner.
 */
static inline int connect_local_rcvbuf(uint16_t port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A TCP connection to 127.0.0.1:port with 10 s send and receive timeouts; -1 on failure. */
static inline int connect_local(uint16_t port) {
    return connect_local_rcvbuf(port, 0);
}

/*
 * Sends `request` (which should ask for `Connection: close`) and reads until
 * the server closes, into `out` (NUL-terminated, at most `cap - 1` bytes).
 * Returns the bytes read, or -1 on a connection error or timeout.
 */
static inline long http_exchange(uint16_t port, const char *request, char *out, size_t cap) {
    int fd = connect_local(port);
    if (fd < 0) return -1;
    size_t len = strlen(request), sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        sent += (size_t)n;
    }
    size_t got = 0;
    for (;;) {
        if (got + 1 >= cap) break;
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) break;
            close(fd);
            out[got] = 0;
            return -1;
        }
        got += (size_t)n;
    }
    out[got] = 0;
    close(fd);
    return (long)got;
}

/* A client on a thread of its own (`pthread_create(&t, NULL, bg_client_run, &c)`):
 * `request` to 127.0.0.1:port, the reply read until the server closes. */
struct bg_client {
    uint16_t port;
    const char *request;
    char reply[8192];
    long n;
};

static inline void *bg_client_run(void *arg) {
    struct bg_client *c = arg;
    c->n = http_exchange(c->port, c->request, c->reply, sizeof c->reply);
    return NULL;
}

/* A `warpcore_str` of a string literal or NUL-terminated string. */
static inline warpcore_str wstr(const char *s) {
    warpcore_str w = {(const uint8_t *)s, strlen(s)};
    return w;
}

static inline int wstr_is(warpcore_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

/* A config listening on 127.0.0.1:0 with `workers` workers and `handler`. */
static inline warpcore_config *local_config(uint32_t workers, warpcore_handler_cb handler, void *userdata) {
    warpcore_config *config = NULL;
    static const char listen[] = "127.0.0.1:0";
    CHECK_RESULT(warpcore_config_new(&config), WARPCORE_RESULT_OK);
    if (!config) {
        fprintf(stderr, "warpcore_config_new failed\n");
        exit(1);
    }
    CHECK_RESULT(warpcore_config_set_listen(config, (const uint8_t *)listen, sizeof listen - 1), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_workers(config, workers), WARPCORE_RESULT_OK);
    if (handler) CHECK_RESULT(warpcore_config_set_handler(config, handler, userdata), WARPCORE_RESULT_OK);
    return config;
}

/* Starts a server on `config` (checked to succeed) and frees the config; NULL
 * when the start failed. */
static inline warpcore_server *start_server(warpcore_config *config) {
    warpcore_server *server = NULL;
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_OK);
    warpcore_config_free(config);
    return server;
}

#endif /* WARPCORE_ABI_CHECK_H */
