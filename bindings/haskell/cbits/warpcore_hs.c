/* See warpcore_hs.h. */
#define _GNU_SOURCE /* SCHED_BATCH */
#include "warpcore_hs.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "Rts.h" /* RtsConfig */

/* ---- the gate (see warpcore_hs.h) ---- */

/* Callbacks inside, striped over cache lines by thread so that workers do not
 * share one counter; the total is what matters. */
#define GATE_STRIPES 16
static struct {
    atomic_long inside;
} __attribute__((aligned(64))) gate_stripes[GATE_STRIPES];
static atomic_int gate_closed;
static atomic_uint gate_next_stripe;
static __thread int gate_stripe = -1;
static __thread int gate_depth;

static int stripe_of_thread(void) {
    if (gate_stripe < 0) gate_stripe = (int)(atomic_fetch_add(&gate_next_stripe, 1) % GATE_STRIPES);
    return gate_stripe;
}

/* Returns 1 when the caller may call into the runtime (then gate_leave after),
 * 0 when the gate is closed. The increment comes before the check (both
 * sequentially consistent), so the closer either sees this caller inside or
 * this caller sees the gate closed. */
static int gate_enter(void) {
    int s = stripe_of_thread();
    atomic_fetch_add(&gate_stripes[s].inside, 1);
    if (atomic_load(&gate_closed)) {
        atomic_fetch_sub(&gate_stripes[s].inside, 1);
        return 0;
    }
    gate_depth++;
    return 1;
}

static void gate_leave(void) {
    gate_depth--;
    atomic_fetch_sub(&gate_stripes[gate_stripe].inside, 1);
}

int warpcore_hs_gate_depth(void) {
    return gate_depth;
}

void warpcore_hs_gate_close(void) {
    atomic_store(&gate_closed, 1);
    /* A thread inside a callback that closes the gate does not wait for itself. */
    long own = gate_depth;
    struct timespec nap = {0, 1000000};
    for (long waited_ms = 0;; waited_ms++) {
        long inside = 0;
        for (int i = 0; i < GATE_STRIPES; i++) inside += atomic_load(&gate_stripes[i].inside);
        if (inside <= own) return;
        if (waited_ms >= WARPCORE_HS_GATE_WAIT_MS) {
            fprintf(stderr, "warpcore: %ld callback(s) still running as the GHC runtime exits\n", inside - own);
            return;
        }
        nanosleep(&nap, NULL);
    }
}

/* The RTS's configuration (rts/RtsFlags.c): hs_exit calls its onExitHook
 * before it stops any Haskell thread. Not in the public headers and not
 * exported by a shared RTS, hence weak: NULL there. */
extern RtsConfig rtsConfig __attribute__((weak));
static void (*previous_exit_hook)(void);
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;
static int gate_hooked;

static void gate_exit_hook(void) {
    warpcore_hs_gate_close();
    if (previous_exit_hook) previous_exit_hook();
}

static void gate_hook(void) {
    if (&rtsConfig == NULL) return;
    previous_exit_hook = rtsConfig.onExitHook;
    rtsConfig.onExitHook = gate_exit_hook;
    gate_hooked = 1;
}

int warpcore_hs_gate_install(void) {
    pthread_once(&gate_once, gate_hook);
    return gate_hooked;
}

/* One queue, on its own cache lines: workers push, one dispatcher takes. */
typedef struct queue {
    pthread_mutex_t lock;
    warpcore_hs_item *head;
    warpcore_hs_item *tail;
    /* A StablePtr to the dispatcher's empty MVar while it waits, else NULL. */
    HsStablePtr waiter;
    int capability;
    int closed;
} __attribute__((aligned(64))) queue;

struct warpcore_hs_dispatch {
    uint32_t count;
    queue *queues;
};

static const warpcore_header text_plain = {
    {(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}};

static void refuse(warpcore_response *response) {
    static const char body[] = "Service Unavailable\n";
    warpcore_respond(response, 503, &text_plain, 1, (const uint8_t *)body, sizeof body - 1);
}

warpcore_hs_dispatch *warpcore_hs_dispatch_new(uint32_t count) {
    if (count == 0) count = 1;
    warpcore_hs_dispatch *d = malloc(sizeof *d);
    if (!d) return NULL;
    if (posix_memalign((void **)&d->queues, 64, count * sizeof(queue)) != 0) {
        free(d);
        return NULL;
    }
    d->count = count;
    for (uint32_t i = 0; i < count; i++) {
        queue *q = &d->queues[i];
        pthread_mutex_init(&q->lock, NULL);
        q->head = q->tail = NULL;
        q->waiter = NULL;
        q->capability = -1;
        q->closed = 0;
    }
    return d;
}

/* SCHED_BATCH on the runtime's threads, undone when the last server using
 * it closes. Recording the threads moved is not enough: a thread a BATCH
 * thread creates (the RTS starts workers on demand) inherits the policy. So
 * the threads already under SCHED_BATCH when the first such server starts
 * (someone else's choice) are noted, and at the end every other thread of
 * the process under SCHED_BATCH is put back to SCHED_OTHER. */
static pthread_mutex_t batch_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t *batch_kept;
static size_t batch_kept_count;
static long batch_users;
/* Bumped at the end, so that each thread is moved afresh by a later server. */
static atomic_uint batch_generation = 1;
static __thread unsigned thread_batch_generation;

int warpcore_hs_sched_batch(void) {
    unsigned generation = atomic_load(&batch_generation);
    if (thread_batch_generation == generation) return 0;
    thread_batch_generation = generation;
    if (sched_getscheduler(0) != SCHED_OTHER) return 0;
    struct sched_param param = {0};
    /* pid 0: this thread only (Linux scheduling attributes are per thread). */
    return sched_setscheduler(0, SCHED_BATCH, &param) == 0 ? 0 : -1;
}

/* Calls `each` with every thread id of the process under SCHED_BATCH. */
static void each_batch_thread(void (*each)(pid_t)) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        pid_t tid = (pid_t)atoi(entry->d_name);
        if (sched_getscheduler(tid) == SCHED_BATCH) each(tid);
    }
    closedir(dir);
}

static size_t batch_kept_cap;

static void keep_batch_thread(pid_t tid) {
    if (batch_kept_count == batch_kept_cap) {
        size_t cap = batch_kept_cap ? batch_kept_cap * 2 : 16;
        pid_t *grown = realloc(batch_kept, cap * sizeof *grown);
        if (!grown) return;
        batch_kept = grown;
        batch_kept_cap = cap;
    }
    batch_kept[batch_kept_count++] = tid;
}

static void restore_batch_thread(pid_t tid) {
    for (size_t i = 0; i < batch_kept_count; i++)
        if (batch_kept[i] == tid) return;
    struct sched_param param = {0};
    sched_setscheduler(tid, SCHED_OTHER, &param);
}

void warpcore_hs_sched_batch_retain(void) {
    pthread_mutex_lock(&batch_lock);
    if (batch_users++ == 0) {
        batch_kept_count = 0;
        each_batch_thread(keep_batch_thread);
    }
    pthread_mutex_unlock(&batch_lock);
}

void warpcore_hs_sched_batch_release(void) {
    pthread_mutex_lock(&batch_lock);
    if (--batch_users == 0) {
        each_batch_thread(restore_batch_thread);
        atomic_fetch_add(&batch_generation, 1);
    }
    pthread_mutex_unlock(&batch_lock);
}

void warpcore_hs_dispatch_close(warpcore_hs_dispatch *d) {
    if (!d) return;
    for (uint32_t i = 0; i < d->count; i++) {
        queue *q = &d->queues[i];
        pthread_mutex_lock(&q->lock);
        q->closed = 1;
        HsStablePtr waiter = q->waiter;
        int cap = q->capability;
        q->waiter = NULL;
        pthread_mutex_unlock(&q->lock);
        if (waiter) hs_try_putmvar(cap, waiter);
    }
}

void warpcore_hs_dispatch_free(warpcore_hs_dispatch *d) {
    if (!d) return;
    for (uint32_t i = 0; i < d->count; i++) {
        queue *q = &d->queues[i];
        warpcore_hs_item *item = q->head;
        while (item) {
            warpcore_hs_item *next = item->next;
            refuse(item->response);
            warpcore_body_free(item->body);
            free(item);
            item = next;
        }
        if (q->waiter) hs_free_stable_ptr(q->waiter);
        pthread_mutex_destroy(&q->lock);
    }
    free(d->queues);
    free(d);
}

int warpcore_hs_dispatch_take(warpcore_hs_dispatch *d, uint32_t index, HsStablePtr waiter,
                              int capability, warpcore_hs_item **out) {
    queue *q = &d->queues[index % d->count];
    pthread_mutex_lock(&q->lock);
    warpcore_hs_item *items = q->head;
    int result;
    if (items) {
        q->head = q->tail = NULL;
        *out = items;
        result = 1;
    } else if (q->closed) {
        result = -1;
    } else {
        q->waiter = waiter;
        q->capability = capability;
        result = 0;
    }
    pthread_mutex_unlock(&q->lock);
    return result;
}

/* Copies one string into the item's data area and points `dst` at the copy. */
static uint8_t *copy_str(warpcore_str *dst, warpcore_str src, uint8_t *at) {
    dst->len = src.len;
    dst->ptr = at;
    if (src.len) memcpy(at, src.ptr, src.len);
    return at + src.len;
}

void warpcore_hs_handler(void *userdata, const warpcore_request *req, warpcore_response *response) {
    warpcore_hs_dispatch *d = userdata;
    /* hs_try_putmvar needs a live runtime. */
    if (!gate_enter()) {
        refuse(response);
        return;
    }
    size_t n = req->header_count;
    /* The client's certificate chain (DER) only on a TLS connection that has one. */
    size_t certs = req->tls && req->tls_peer_certs ? req->tls_peer_cert_count : 0;
    size_t data_len = req->method.len + req->target.len + req->path.len + req->query.len +
                      req->body.len + req->peer_ip.len;
    for (size_t i = 0; i < n; i++) data_len += req->headers[i].name.len + req->headers[i].value.len;
    if (req->tls) data_len += req->tls_sni.len + req->tls_alpn.len;
    for (size_t i = 0; i < certs; i++) data_len += req->tls_peer_certs[i].len;

    warpcore_hs_item *item =
        malloc(sizeof *item + n * sizeof(warpcore_header) + certs * sizeof(warpcore_str) + data_len);
    if (!item) {
        gate_leave();
        refuse(response);
        return;
    }
    warpcore_header *headers = (warpcore_header *)(item + 1);
    warpcore_str *chain = (warpcore_str *)(headers + n);
    uint8_t *data = (uint8_t *)(chain + certs);
    item->next = NULL;
    item->response = response;
    item->body = NULL;
    /* A body that streams is read by the request's Haskell thread, after this
     * call: its reader can only be taken now. Not taken (it failed), the
     * Haskell side finds none and the engine discards the body. */
    if (req->body_follows && warpcore_response_body(response, &item->body) != WARPCORE_RESULT_OK)
        item->body = NULL;
    item->data = data;
    item->data_len = data_len;

    warpcore_request *r = &item->request;
    *r = *req;
    uint8_t *at = data;
    at = copy_str(&r->method, req->method, at);
    at = copy_str(&r->target, req->target, at);
    at = copy_str(&r->path, req->path, at);
    at = copy_str(&r->query, req->query, at);
    at = copy_str(&r->peer_ip, req->peer_ip, at);
    for (size_t i = 0; i < n; i++) {
        at = copy_str(&headers[i].name, req->headers[i].name, at);
        at = copy_str(&headers[i].value, req->headers[i].value, at);
    }
    if (req->tls) {
        at = copy_str(&r->tls_sni, req->tls_sni, at);
        at = copy_str(&r->tls_alpn, req->tls_alpn, at);
        for (size_t i = 0; i < certs; i++) at = copy_str(&chain[i], req->tls_peer_certs[i], at);
    } else {
        /* Not TLS: no pointer into the borrowed view may outlive this call. */
        r->tls_sni = (warpcore_str){0};
        r->tls_alpn = (warpcore_str){0};
    }
    r->tls_peer_certs = certs ? chain : NULL;
    r->tls_peer_cert_count = certs;
    at = copy_str(&r->body, req->body, at);
    r->headers = headers;

    queue *q = &d->queues[req->worker_index % d->count];
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
        gate_leave();
        warpcore_body_free(item->body);
        free(item);
        refuse(response);
        return;
    }
    if (q->tail) q->tail->next = item; else q->head = item;
    q->tail = item;
    HsStablePtr waiter = q->waiter;
    int cap = q->capability;
    q->waiter = NULL;
    pthread_mutex_unlock(&q->lock);
    /* Only the first request of a batch wakes the dispatcher; it takes them all. */
    if (waiter) hs_try_putmvar(cap, waiter);
    gate_leave();
}

void warpcore_hs_item_free(warpcore_hs_item *item) {
    free(item);
}

void warpcore_hs_release_stable(void *userdata, const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    /* Once the runtime is going down the StablePtr is left to the exit. */
    if (!gate_enter()) return;
    hs_free_stable_ptr(userdata);
    gate_leave();
}

void warpcore_hs_release_free(void *userdata, const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    free(userdata);
}

/* ---- trampolines in front of the "wrapper" callbacks ---- */

/* A FunPtr made by castFunPtrToPtr back into a function pointer. */
#define FN_FROM(type, userdata, fn) \
    type fn;                        \
    memcpy(&fn, &userdata, sizeof fn)

typedef void (*handler_fn)(void *, const warpcore_request *, warpcore_response *);
typedef void (*access_log_fn)(void *, const uint8_t *, size_t);
typedef void (*error_log_fn)(void *, uint32_t, const uint8_t *, size_t);

void warpcore_hs_gated_handler(void *userdata, const warpcore_request *request,
                               warpcore_response *response) {
    if (!gate_enter()) {
        refuse(response);
        return;
    }
    FN_FROM(handler_fn, userdata, fn);
    fn(NULL, request, response);
    gate_leave();
}

void warpcore_hs_gated_access_log(void *userdata, const uint8_t *lines, size_t len) {
    if (!gate_enter()) return;
    FN_FROM(access_log_fn, userdata, fn);
    fn(NULL, lines, len);
    gate_leave();
}

void warpcore_hs_gated_error_log(void *userdata, uint32_t level, const uint8_t *message, size_t len) {
    if (!gate_enter()) return;
    FN_FROM(error_log_fn, userdata, fn);
    fn(NULL, level, message, len);
    gate_leave();
}

struct warpcore_hs_hooks {
    warpcore_connection_open_cb on_open;
    warpcore_connection_close_cb on_close;
};

warpcore_hs_hooks *warpcore_hs_hooks_new(warpcore_connection_open_cb on_open, warpcore_connection_close_cb on_close) {
    warpcore_hs_hooks *hooks = malloc(sizeof *hooks);
    if (hooks) {
        hooks->on_open = on_open;
        hooks->on_close = on_close;
    }
    return hooks;
}

void warpcore_hs_hooks_free(warpcore_hs_hooks *hooks) {
    free(hooks);
}

bool warpcore_hs_gated_on_open(void *userdata, const warpcore_connection_info *connection) {
    const warpcore_hs_hooks *hooks = userdata;
    if (!hooks->on_open) return true;
    if (!gate_enter()) return false;
    bool keep = hooks->on_open(NULL, connection);
    gate_leave();
    return keep;
}

void warpcore_hs_gated_on_close(void *userdata, const warpcore_connection_info *connection) {
    const warpcore_hs_hooks *hooks = userdata;
    if (!hooks->on_close) return;
    if (!gate_enter()) return;
    hooks->on_close(NULL, connection);
    gate_leave();
}

/* ---- sockets the program opened ---- */

int warpcore_hs_dup_cloexec(int fd) {
    /* Atomically close-on-exec: a process another thread spawns meanwhile does
     * not inherit the listening socket. */
    return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

int warpcore_hs_socket_listens(int fd) {
    int listens = 0;
    socklen_t len = sizeof listens;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listens, &len) != 0) return -1;
    return listens != 0;
}

/* ---- calls that keep their error message ---- */

#define WARPCORE_HS_DEFINE(name, params, args)                                        \
    warpcore_result warpcore_hs_##name(WARPCORE_HS_PARAMS params, char *message) {     \
        warpcore_result result_ = warpcore_##name args;                               \
        if (result_ != WARPCORE_RESULT_OK)                                            \
            warpcore_last_error_message(message, WARPCORE_HS_MESSAGE_SIZE);           \
        return result_;                                                               \
    }
WARPCORE_HS_CAPTURED(WARPCORE_HS_DEFINE)
