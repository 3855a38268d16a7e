/*
 * Concurrent calls on one deferred handle never touch freed memory (issue
 * #19, item 4): a thread blocked in warpcore_response_write on backpressure
 * (a client that never reads, the smallest high-water mark), a second thread
 * calling warpcore_response_abort, and the client leaving (a reset), in three
 * orders, round after round. Exactly one of the two calls finishes the answer
 * (OK or CLOSED); the other gets ALREADY_ANSWERED. The blocked writer must not
 * hold the handle while it waits (the aborter is answered without waiting for
 * the stream), and ASan must see no use of freed memory.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>

#include "check.h"

#define ROUNDS 12
#define CHUNK (1 << 20)

static _Atomic(warpcore_response *) kept;
static atomic_int kept_count;

static void handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    /* Starts a chunked stream and returns: the rest comes from the writer. */
    CHECK_RESULT(warpcore_response_start(res, 200, NULL, 0, -1), WARPCORE_RESULT_OK);
    atomic_store(&kept, res);
    atomic_fetch_add(&kept_count, 1);
}

struct writer {
    warpcore_response *res;
    atomic_int tid;
    atomic_int entered; /* write calls begun */
    atomic_int done;
    warpcore_result last;
};

static void *write_until_refused(void *arg) {
    struct writer *w = arg;
    static uint8_t chunk[CHUNK];
    warpcore_result r;
    atomic_store(&w->tid, (int)syscall(SYS_gettid));
    do {
        atomic_fetch_add(&w->entered, 1);
        r = warpcore_response_write(w->res, chunk, sizeof chunk);
    } while (r == WARPCORE_RESULT_OK);
    w->last = r;
    atomic_store(&w->done, 1);
    return NULL;
}

struct aborter {
    warpcore_response *res;
    atomic_int entered;
    atomic_int done;
    warpcore_result result;
};

static void *abort_it(void *arg) {
    struct aborter *a = arg;
    atomic_store(&a->entered, 1);
    a->result = warpcore_response_abort(a->res);
    atomic_store(&a->done, 1);
    return NULL;
}

/* The scheduler state of thread `tid` of this process ('R', 'S', ...), or 0. */
static char thread_state(int tid) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    const char *end = strrchr(line, ')'); /* after the command name */
    return end && end[1] == ' ' ? end[2] : 0;
}

/* Waits until the writer is blocked: past its first write (which always
 * goes: the queue starts empty) and asleep in the same write call at two
 * looks in a row. Returns whether it got there within `ms` milliseconds. */
static int wait_writer_blocked(struct writer *w, long ms) {
    int asleep_in = -1;
    for (long waited = 0; waited < ms; waited++) {
        int entered = atomic_load(&w->entered), tid = atomic_load(&w->tid);
        if (atomic_load(&w->done)) return 0;
        if (entered >= 2 && tid > 0 && thread_state(tid) == 'S') {
            if (asleep_in == entered) return 1;
            asleep_in = entered;
        } else {
            asleep_in = -1;
        }
        sleep_ms(1);
    }
    return 0;
}

/* A client that asks for the stream and never reads. */
static int start_client(uint16_t port) {
    int fd = connect_local_rcvbuf(port, 4096);
    CHECK(fd >= 0);
    static const char request[] = "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(send(fd, request, sizeof request - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof request - 1));
    return fd;
}

/* The client leaves: a reset, as when it dies. */
static void leave(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void one_round(uint16_t port, int order) {
    int before = atomic_load(&kept_count);
    int fd = start_client(port);
    CHECK(wait_at_least(&kept_count, before + 1, 20000));
    warpcore_response *res = atomic_load(&kept);

    static struct writer w;
    static struct aborter a;
    memset(&w, 0, sizeof w);
    memset(&a, 0, sizeof a);
    w.res = a.res = res;
    pthread_t wt, at;
    CHECK(pthread_create(&wt, NULL, write_until_refused, &w) == 0);
    /* Soon more than the high-water mark and the socket buffers hold is
     * queued: a write waits for the client, who never reads. */
    int blocked = wait_writer_blocked(&w, 20000);
    CHECK(blocked);
    if (!blocked) fprintf(stderr, "the writer did not block (%d writes)\n", atomic_load(&w.entered));

    switch (order) {
    case 0: /* abort while the writer waits, answered at once; then the client leaves */
        CHECK(pthread_create(&at, NULL, abort_it, &a) == 0);
        CHECK(wait_at_least(&a.done, 1, 10000));
        leave(fd);
        break;
    case 1: /* the client leaves; then abort */
        leave(fd);
        CHECK(pthread_create(&at, NULL, abort_it, &a) == 0);
        break;
    default: /* both at once */
        CHECK(pthread_create(&at, NULL, abort_it, &a) == 0);
        leave(fd);
        break;
    }
    int finished = wait_at_least(&w.done, 1, 20000) && wait_at_least(&a.done, 1, 20000);
    CHECK(finished);
    if (!finished) {
        fprintf(stderr, "round with order %d: a call never returned (writer %d, aborter %d)\n", order,
                atomic_load(&w.done), atomic_load(&a.done));
        exit(1);
    }
    pthread_join(wt, NULL);
    pthread_join(at, NULL);
    /* The writer's last call and the abort: one finished the answer, the other was told. */
    CHECK(w.last == WARPCORE_RESULT_CLOSED || w.last == WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK(a.result == WARPCORE_RESULT_OK || a.result == WARPCORE_RESULT_CLOSED ||
          a.result == WARPCORE_RESULT_ALREADY_ANSWERED);
    CHECK((w.last == WARPCORE_RESULT_ALREADY_ANSWERED) != (a.result == WARPCORE_RESULT_ALREADY_ANSWERED));
    if (order == 0) {
        /* The abort did not wait for the stream: it finished the answer. */
        CHECK_RESULT(a.result, WARPCORE_RESULT_OK);
    }
    /* Released: any later call is told so. */
    CHECK_RESULT(warpcore_response_abort(res), WARPCORE_RESULT_ALREADY_ANSWERED);
}

int main(void) {
    warpcore_config *config = local_config(1, handler, NULL);
    CHECK_RESULT(warpcore_config_set_stream_high_water(config, 1024), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return check_finish("abort_race");
    uint16_t port = warpcore_server_port(server);
    for (int round = 0; round < ROUNDS; round++) one_round(port, round % 3);

    CHECK_RESULT(warpcore_server_shutdown(server, 2000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    return check_finish("abort_race");
}
