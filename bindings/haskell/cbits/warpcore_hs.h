/*
 * The Haskell binding's C side: a request handler written in C that copies
 * each request into one malloc'd item, queues it for a Haskell dispatcher
 * thread and wakes that thread with hs_try_putmvar. No Haskell code runs on a
 * worker thread, so the event loop never waits for the GHC runtime.
 *
 * Threads: warpcore_hs_handler runs on worker threads; every other function
 * may be called from any thread.
 */
#ifndef WARPCORE_HS_H
#define WARPCORE_HS_H

#include <stddef.h>
#include <stdint.h>

#include "HsFFI.h"
#include "warpcore.h"

/* One queued request. `request` and everything it points to live inside the
 * item (the header array, then `data_len` bytes of strings at `data`). Owned
 * by whoever took it from the queue; released with warpcore_hs_item_free. The
 * response handle is the caller's to answer (it is deferred). */
typedef struct warpcore_hs_item {
    struct warpcore_hs_item *next;
    warpcore_response *response;
    const uint8_t *data;
    size_t data_len;
    warpcore_request request;
} warpcore_hs_item;

/* The handler's userdata: one queue per dispatcher thread. Requests of worker
 * i go to queue i % queues. */
typedef struct warpcore_hs_dispatch warpcore_hs_dispatch;

/* Makes a dispatcher with `queues` queues (at least 1); NULL when out of memory. */
warpcore_hs_dispatch *warpcore_hs_dispatch_new(uint32_t queues);

/* With `on`, the handler moves each worker thread it runs on to SCHED_BATCH
 * (warpcore_hs_sched_batch). Call before the server starts. */
void warpcore_hs_dispatch_set_sched_batch(warpcore_hs_dispatch *dispatch, int on);

/* Moves the calling thread from SCHED_OTHER to SCHED_BATCH, once per thread
 * (a thread-local flag makes later calls free); other policies are left
 * alone. A SCHED_BATCH thread that is woken does not preempt the thread
 * running: on one core, the worker that wakes a dispatcher (and the
 * dispatcher's thread that wakes the worker with an answer) keeps running
 * until it blocks, so requests and answers cross in batches, not one
 * context switch each. Returns 0, or -1 when the kernel refused. */
int warpcore_hs_sched_batch(void);

/* Closes every queue: waiting dispatchers are woken, later requests are
 * answered 503 by the handler itself. Items still queued stay takeable. */
void warpcore_hs_dispatch_close(warpcore_hs_dispatch *dispatch);

/* Frees the dispatcher, its queued items (their responses answered 503) and
 * any waiter still registered. Call after the server is freed. NULL is ignored. */
void warpcore_hs_dispatch_free(warpcore_hs_dispatch *dispatch);

/* Takes everything queue `index` holds, oldest first, into `*out` and returns 1.
 * When it is empty and open, keeps `waiter` (a StablePtr to an empty MVar ())
 * to fill with hs_try_putmvar(capability, waiter) when a request arrives, and
 * returns 0; the StablePtr is then consumed. When it is empty and closed,
 * returns -1 and does not keep `waiter`. */
int warpcore_hs_dispatch_take(warpcore_hs_dispatch *dispatch, uint32_t index,
                              HsStablePtr waiter, int capability,
                              warpcore_hs_item **out);

/* The warpcore_handler_cb for a dispatcher as userdata. */
void warpcore_hs_handler(void *userdata, const warpcore_request *request,
                         warpcore_response *response);

/* Frees one item (not its response). NULL is ignored. */
void warpcore_hs_item_free(warpcore_hs_item *item);

/* warpcore_release_cb that frees the StablePtr given as userdata (keeps a
 * Haskell ByteString alive while the engine sends it). */
void warpcore_hs_release_stable(void *userdata, const uint8_t *data, size_t len);

/* warpcore_release_cb that free()s the userdata (a malloc'd buffer). */
void warpcore_hs_release_free(void *userdata, const uint8_t *data, size_t len);

#endif
