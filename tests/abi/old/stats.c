/*
 * A program built against the recorded release's header (warpcore-0.1.h, a
 * copy of include/warpcore.h as 0.1.0 was recorded in
 * abi/libwarpcore.so.0.abi) and run with the library of the tree, under
 * AddressSanitizer. The structs it allocates for the library to fill end
 * exactly where an inaccessible guard page begins, so a newer library writing
 * past them crashes the run (the library is not instrumented: AddressSanitizer
 * alone would not see its stores into a heap block's redzone). It also
 * allocates structs as other releases' programs would:
 *   - fewer fields than 0.1 (an older layout than any release): refused with
 *     INVALID_ARGUMENT, nothing written;
 *   - more fields (a later header's larger struct): filled up to the library's
 *     own size, the rest left alone, `size` set to the bytes written;
 *   - a size that ends inside a field: only whole fields are written.
 * Self-contained (no check.h: that one includes today's header).
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "warpcore-0.1.h"

static int checks, failures;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

static void hello(void *userdata, const warpcore_request *request, warpcore_response *response) {
    static const warpcore_header fields[] = {{{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}}};
    (void)userdata;
    (void)request;
    warpcore_respond(response, 200, fields, 1, (const uint8_t *)"old", 3);
}

/* One GET / on a new connection; the reply's first bytes. */
static int get(uint16_t port, char *reply, size_t cap) {
    static const char request[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ssize_t n = 0, got;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return -1;
    if (write(fd, request, sizeof request - 1) != (ssize_t)(sizeof request - 1)) return -1;
    while ((size_t)n < cap - 1 && (got = read(fd, reply + n, cap - 1 - (size_t)n)) > 0) n += got;
    reply[n] = 0;
    close(fd);
    return (int)n;
}

/* `size` bytes (a multiple of 8) that end where a PROT_NONE page begins. */
static void *guarded(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED || mprotect(map + page, page, PROT_NONE) != 0) abort();
    return map + page - size;
}

static void unguard(void *p) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    munmap((void *)((uintptr_t)p & ~(uintptr_t)(page - 1)), 2 * page);
}

/* An older layout than any release: two counters. */
struct stats_fewer {
    size_t size;
    uint64_t connections_accepted;
    uint64_t connections_active;
};

/* A later header's larger struct: 0.1's fields, then four more. */
struct stats_more {
    warpcore_stats known;
    uint64_t later[4];
};

#define UNTOUCHED 0xA5A5A5A5A5A5A5A5ull

int main(void) {
    warpcore_config *config = NULL;
    warpcore_server *server = NULL;
    char reply[256];

    printf("built with %s, running with %s\n", WARPCORE_VERSION, warpcore_version());
    CHECK(warpcore_config_new(&config) == WARPCORE_RESULT_OK);
    CHECK(warpcore_config_set_listen(config, (const uint8_t *)"127.0.0.1:0", 11) == WARPCORE_RESULT_OK);
    CHECK(warpcore_config_set_workers(config, 1) == WARPCORE_RESULT_OK);
    CHECK(warpcore_config_set_handler(config, hello, NULL) == WARPCORE_RESULT_OK);
    CHECK(warpcore_server_start(config, &server) == WARPCORE_RESULT_OK);
    warpcore_config_free(config);
    if (server == NULL) return 1;
    CHECK(get(warpcore_server_port(server), reply, sizeof reply) > 0 && strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);

    /* 0.1's structs at their exact size, against a guard page. */
    {
        const warpcore_stats init = WARPCORE_STATS_INIT;
        warpcore_stats *st = guarded(sizeof *st);
        *st = init;
        CHECK(warpcore_server_stats(server, st) == WARPCORE_RESULT_OK);
        CHECK(st->size == sizeof *st);
        CHECK(st->requests == 1 && st->responses_2xx == 1 && st->connections_accepted == 1);
        unguard(st);
    }
    {
        const warpcore_file_cache_stats init = WARPCORE_FILE_CACHE_STATS_INIT;
        warpcore_file_cache_stats *fc = guarded(sizeof *fc);
        *fc = init;
        CHECK(warpcore_server_file_cache_stats(server, fc) == WARPCORE_RESULT_OK);
        CHECK(fc->size == sizeof *fc && fc->fd_hits == 0 && fc->fd_misses == 0);
        unguard(fc);
    }

    /* Fewer fields than the first version: refused, nothing written. */
    {
        struct stats_fewer *few = guarded(sizeof *few);
        few->size = sizeof *few;
        few->connections_accepted = few->connections_active = UNTOUCHED;
        CHECK(warpcore_server_stats(server, (warpcore_stats *)(void *)few) == WARPCORE_RESULT_INVALID_ARGUMENT);
        CHECK(few->size == sizeof *few && few->connections_accepted == UNTOUCHED && few->connections_active == UNTOUCHED);
        unguard(few);
    }

    /* A later program's larger struct: the library's fields, no more. */
    {
        struct stats_more *more = guarded(sizeof *more);
        unsigned char *bytes = (unsigned char *)more;
        size_t i;
        memset(more, 0xA5, sizeof *more);
        more->known.size = sizeof *more;
        CHECK(warpcore_server_stats(server, &more->known) == WARPCORE_RESULT_OK);
        CHECK(more->known.size >= sizeof(warpcore_stats) && more->known.size <= sizeof *more);
        CHECK(more->known.requests == 1);
        for (i = more->known.size; i < sizeof *more; i++) CHECK(bytes[i] == 0xA5);
        /* A size ending inside a field: only the whole fields before it. */
        memset(more, 0xA5, sizeof *more);
        more->known.size = sizeof(warpcore_stats) + 4;
        CHECK(warpcore_server_stats(server, &more->known) == WARPCORE_RESULT_OK);
        CHECK(more->known.size >= sizeof(warpcore_stats) && more->known.size <= sizeof(warpcore_stats) + 4);
        for (i = more->known.size; i < sizeof *more; i++) CHECK(bytes[i] == 0xA5);
        unguard(more);
    }

    CHECK(warpcore_server_shutdown(server, 1000) == WARPCORE_RESULT_OK);
    {
        const warpcore_shutdown_report init = WARPCORE_SHUTDOWN_REPORT_INIT;
        warpcore_shutdown_report *report = guarded(sizeof *report);
        *report = init;
        CHECK(warpcore_server_shutdown_report(server, report) == WARPCORE_RESULT_OK);
        CHECK(report->size == sizeof *report && report->connections_cut == 0);
        unguard(report);
    }
    warpcore_server_free(server);
    printf("old-stats: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
