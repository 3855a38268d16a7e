/* See warpcore_hs.h. */
#define _GNU_SOURCE /* SCHED_BATCH */
#include "warpcore_hs.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

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
    int sched_batch;
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
    d->sched_batch = 0;
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

void warpcore_hs_dispatch_set_sched_batch(warpcore_hs_dispatch *d, int on) {
    d->sched_batch = on != 0;
}

static __thread int thread_sched_batch;

int warpcore_hs_sched_batch(void) {
    if (thread_sched_batch) return 0;
    thread_sched_batch = 1;
    if (sched_getscheduler(0) != SCHED_OTHER) return 0;
    struct sched_param param = {0};
    /* pid 0: this thread only (Linux scheduling attributes are per thread). */
    return sched_setscheduler(0, SCHED_BATCH, &param) == 0 ? 0 : -1;
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
    if (d->sched_batch) warpcore_hs_sched_batch();
    size_t n = req->header_count;
    size_t data_len = req->method.len + req->target.len + req->path.len + req->query.len +
                      req->body.len + req->peer_ip.len;
    for (size_t i = 0; i < n; i++) data_len += req->headers[i].name.len + req->headers[i].value.len;

    warpcore_hs_item *item = malloc(sizeof *item + n * sizeof(warpcore_header) + data_len);
    if (!item) {
        refuse(response);
        return;
    }
    warpcore_header *headers = (warpcore_header *)(item + 1);
    uint8_t *data = (uint8_t *)(headers + n);
    item->next = NULL;
    item->response = response;
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
    at = copy_str(&r->body, req->body, at);
    r->headers = headers;

    queue *q = &d->queues[req->worker_index % d->count];
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
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
}

void warpcore_hs_item_free(warpcore_hs_item *item) {
    free(item);
}

void warpcore_hs_release_stable(void *userdata, const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    hs_free_stable_ptr(userdata);
}

void warpcore_hs_release_free(void *userdata, const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    free(userdata);
}
