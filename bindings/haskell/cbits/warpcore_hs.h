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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "HsFFI.h"
#include "warpcore.h"

/* One queued request. `request` and everything it points to live inside the
 * item (the header array, the TLS client's certificate array, then
 * `data_len` bytes of strings at `data`: the TLS strings and certificates too). Owned
 * by whoever took it from the queue; released with warpcore_hs_item_free. The
 * response handle is the caller's to answer (it is deferred). When the body
 * streams (`request.body_follows`), `body` is its reader, taken by the
 * handler inside the handler call (the only place warpcore_response_body may
 * be called); it is the taker's to read and to free (warpcore_body_free),
 * and NULL when the body arrived whole or the reader could not be taken. */
typedef struct warpcore_hs_item {
    struct warpcore_hs_item *next;
    warpcore_response *response;
    warpcore_body *body;
    const uint8_t *data;
    size_t data_len;
    warpcore_request request;
} warpcore_hs_item;

/* The handler's userdata: one queue per dispatcher thread. Requests of worker
 * i go to queue i % queues. */
typedef struct warpcore_hs_dispatch warpcore_hs_dispatch;

/* Makes a dispatcher with `queues` queues (at least 1); NULL when out of memory. */
warpcore_hs_dispatch *warpcore_hs_dispatch_new(uint32_t queues);

/* Moves the calling thread (a dispatcher's) from SCHED_OTHER to SCHED_BATCH,
 * once per thread until the last server using it closes (a thread-local flag
 * makes later calls free); other policies are left alone. A SCHED_BATCH
 * thread that is woken does not preempt the thread running: on one core, the
 * worker that wakes a dispatcher (and the dispatcher's thread that wakes the
 * worker with an answer) keeps running until it blocks, so requests and
 * answers cross in batches, not one context switch each. The worker threads
 * are the library's to move (warpcore_config_set_sched_batch). Returns 0, or
 * -1 when the kernel refused. */
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

/* Frees one item (not its response, nor its body reader). NULL is ignored. */
void warpcore_hs_item_free(warpcore_hs_item *item);

/* warpcore_release_cb that frees the StablePtr given as userdata (keeps a
 * Haskell ByteString alive while the engine sends it). */
void warpcore_hs_release_stable(void *userdata, const uint8_t *data, size_t len);

/* warpcore_release_cb that free()s the userdata (a malloc'd buffer). */
void warpcore_hs_release_free(void *userdata, const uint8_t *data, size_t len);

/* ---- The gate: no call into the GHC runtime once it is going down ----
 *
 * Every call the engine makes into Haskell passes through a function here:
 * the dispatcher's handler (hs_try_putmvar), the release callback
 * (hs_free_stable_ptr) and the trampolines below in front of the "wrapper"
 * callbacks (handler and logs of the callback modes). When the runtime shuts
 * down (hs_exit, which a program's main returning calls), GHC kills the
 * Haskell threads of callbacks still running and ends their OS threads with
 * pthread_exit; on an engine thread that forced unwind crosses Rust frames
 * and aborts the process. So warpcore_hs_gate_install chains an exit hook
 * (the RTS's onExitHook, which hs_exit runs before it stops any thread) that
 * closes the gate and waits for the callbacks inside to return (up to
 * WARPCORE_HS_GATE_WAIT_MS). Once closed, the gate stays closed: handlers
 * answer 503 from C, log lines are dropped, released StablePtrs are left to
 * the process's exit. */

/* How long the exit hook waits for callbacks still inside, in milliseconds. */
#define WARPCORE_HS_GATE_WAIT_MS 10000

/* Installs the exit hook, once per process; later calls do nothing. Returns 1
 * when the hook is in place, 0 when this RTS does not expose its config (a
 * dynamically linked RTS: rtsConfig is not exported there). */
int warpcore_hs_gate_install(void);

/* Closes the gate and waits (bounded) for callbacks inside it on other
 * threads to return. What the exit hook does; harmless to repeat. */
void warpcore_hs_gate_close(void);

/* How many gated callbacks the calling OS thread is inside (0 outside any):
 * a Haskell handler or log sink called by the engine runs with this > 0, and
 * must not wait for the server's workers (shutdown, close, reload). */
int warpcore_hs_gate_depth(void);

/* The handler of the callback modes: `userdata` is the Haskell "wrapper"
 * (a warpcore_handler_cb, cast with castFunPtrToPtr); called through the gate,
 * or answered 503 when it is closed. */
void warpcore_hs_gated_handler(void *userdata, const warpcore_request *request,
                               warpcore_response *response);

/* The same for a warpcore_access_log_cb and a warpcore_error_log_cb given as
 * userdata: the lines are dropped when the gate is closed. */
void warpcore_hs_gated_access_log(void *userdata, const uint8_t *lines, size_t len);
void warpcore_hs_gated_error_log(void *userdata, uint32_t level, const uint8_t *message, size_t len);

/* The connection hooks' "wrapper" callbacks (either may be NULL), kept for
 * the gated trampolines below as their userdata. Made by
 * warpcore_hs_hooks_new (NULL when out of memory), freed by
 * warpcore_hs_hooks_free once the server is freed. */
typedef struct warpcore_hs_hooks warpcore_hs_hooks;
warpcore_hs_hooks *warpcore_hs_hooks_new(warpcore_connection_open_cb on_open, warpcore_connection_close_cb on_close);
void warpcore_hs_hooks_free(warpcore_hs_hooks *hooks);

/* warpcore_connection_open_cb and _close_cb for a warpcore_hs_hooks as
 * userdata: through the gate; when it is closed (the runtime is going down)
 * a connection is refused and a close is not told. */
bool warpcore_hs_gated_on_open(void *userdata, const warpcore_connection_info *connection);
void warpcore_hs_gated_on_close(void *userdata, const warpcore_connection_info *connection);

/* ---- SCHED_BATCH on the runtime's threads, undone ----
 *
 * A server whose dispatchers move the runtime's threads to SCHED_BATCH holds
 * a reference: retain before its dispatchers start, release once they have
 * stopped. The first reference notes the threads already under SCHED_BATCH
 * (left alone); when the last goes, every other thread of the process under
 * SCHED_BATCH (those moved, and threads they started, which inherit the
 * policy) is put back to SCHED_OTHER, and later calls move threads afresh.
 * (A thread the program itself moves to SCHED_BATCH meanwhile is put back
 * too.) */
void warpcore_hs_sched_batch_retain(void);
void warpcore_hs_sched_batch_release(void);

/* ---- Calls that keep their error message ----
 *
 * warpcore_last_error_message is per OS thread, and a Haskell thread may move
 * to another OS thread (or another Haskell thread fail on this one) between a
 * call and a second call that reads the message. Each warpcore_hs_<name> calls
 * warpcore_<name> with the same arguments and, when it fails, copies the
 * message (at most WARPCORE_HS_MESSAGE_SIZE bytes with its NUL, truncated)
 * into `message` in the same call. On success `message` is not touched. */
#define WARPCORE_HS_MESSAGE_SIZE 256

#define WARPCORE_HS_CAPTURED(X)                                                                    \
    X(config_set_listen, (struct warpcore_config *c, const uint8_t *p, size_t n), (c, p, n))       \
    X(config_set_workers, (struct warpcore_config *c, uint32_t v), (c, v))                         \
    X(config_set_external_workers, (struct warpcore_config *c, bool v), (c, v))                    \
    X(config_set_share_port, (struct warpcore_config *c, bool v), (c, v))                          \
    X(config_set_handler, (struct warpcore_config *c, warpcore_handler_cb f, void *u), (c, f, u))  \
    X(config_set_server_name, (struct warpcore_config *c, const uint8_t *p, size_t n), (c, p, n))  \
    X(config_set_max_body_size, (struct warpcore_config *c, uint64_t v), (c, v))                   \
    X(config_set_whole_body_max, (struct warpcore_config *c, uint64_t v), (c, v))                  \
    X(config_set_max_head_size, (struct warpcore_config *c, uint32_t v), (c, v))                   \
    X(config_set_max_request_line, (struct warpcore_config *c, uint32_t v), (c, v))               \
    X(config_set_max_header_count, (struct warpcore_config *c, uint32_t v), (c, v))               \
    X(config_set_stream_high_water, (struct warpcore_config *c, uint64_t v), (c, v))              \
    X(config_set_coalesce_wait, (struct warpcore_config *c, uint32_t v), (c, v))                   \
    X(config_set_max_connections, (struct warpcore_config *c, uint32_t v), (c, v))                \
    X(config_set_static_dotfiles, (struct warpcore_config *c, bool v), (c, v))                     \
    X(config_set_sched_batch, (struct warpcore_config *c, bool v), (c, v))                         \
    X(config_set_access_log_file, (struct warpcore_config *c, const uint8_t *p, size_t n),         \
      (c, p, n))                                                                                   \
    X(config_set_access_log_callback,                                                              \
      (struct warpcore_config *c, warpcore_access_log_cb f, void *u), (c, f, u))                   \
    X(config_set_error_log, (struct warpcore_config *c, warpcore_error_log_cb f, void *u),         \
      (c, f, u))                                                                                   \
    X(config_set_timeout, (struct warpcore_config *c, uint32_t w, uint64_t ms), (c, w, ms))        \
    X(config_add_static,                                                                           \
      (struct warpcore_config *c, const uint8_t *p, size_t pn, const uint8_t *d, size_t dn),       \
      (c, p, pn, d, dn))                                                                           \
    X(config_set_file_cache, (struct warpcore_config *c, uint64_t fd, uint64_t info),              \
      (c, fd, info))                                                                               \
    X(config_add_listener, (struct warpcore_config *c, const uint8_t *p, size_t n), (c, p, n))     \
    X(config_clear_listeners, (struct warpcore_config *c), (c))                                    \
    X(config_set_unix_socket_mode, (struct warpcore_config *c, uint32_t m, int64_t u, int64_t g),  \
      (c, m, u, g))                                                                                \
    X(config_add_systemd_listeners, (struct warpcore_config *c, uint32_t *count), (c, count))      \
    X(config_set_proxy_protocol, (struct warpcore_config *c, uint32_t m), (c, m))                  \
    X(config_set_listener_proxy_protocol,                                                          \
      (struct warpcore_config *c, const uint8_t *p, size_t n, uint32_t m), (c, p, n, m))           \
    X(config_set_connection_hooks,                                                                 \
      (struct warpcore_config *c, warpcore_connection_open_cb o, warpcore_connection_close_cb x,   \
       void *u),                                                                                   \
      (c, o, x, u))                                                                                \
    X(response_set_reason, (warpcore_response *r, const uint8_t *p, size_t n), (r, p, n))          \
    X(response_pause_timeout, (warpcore_response *r), (r))                                         \
    X(tls_add_cert_files,                                                                          \
      (struct warpcore_tls *t, const uint8_t *c, size_t cn, const uint8_t *k, size_t kn),          \
      (t, c, cn, k, kn))                                                                           \
    X(tls_add_cert_pem,                                                                            \
      (struct warpcore_tls *t, const uint8_t *c, size_t cn, const uint8_t *k, size_t kn),          \
      (t, c, cn, k, kn))                                                                           \
    X(tls_set_client_auth_pem, (struct warpcore_tls *t, uint32_t m, const uint8_t *p, size_t n),   \
      (t, m, p, n))                                                                                \
    X(tls_set_client_auth_file, (struct warpcore_tls *t, uint32_t m, const uint8_t *p, size_t n),  \
      (t, m, p, n))                                                                                \
    X(config_add_tls_listener,                                                                     \
      (struct warpcore_config *c, const uint8_t *p, size_t n, const struct warpcore_tls *t),       \
      (c, p, n, t))                                                                                \
    X(respond,                                                                                     \
      (warpcore_response *r, uint16_t s, const warpcore_header *h, size_t hn, const uint8_t *b,    \
       size_t bn),                                                                                 \
      (r, s, h, hn, b, bn))                                                                        \
    X(respond_buffer,                                                                              \
      (warpcore_response *r, uint16_t s, const warpcore_header *h, size_t hn, const uint8_t *b,    \
       size_t bn, warpcore_release_cb f, void *u),                                                 \
      (r, s, h, hn, b, bn, f, u))                                                                  \
    X(respond_file,                                                                                \
      (warpcore_response *r, uint16_t s, const warpcore_header *h, size_t hn, const uint8_t *p,    \
       size_t pn),                                                                                 \
      (r, s, h, hn, p, pn))                                                                        \
    X(response_start,                                                                              \
      (warpcore_response *r, uint16_t s, const warpcore_header *h, size_t hn, int64_t len),        \
      (r, s, h, hn, len))                                                                          \
    X(response_write, (warpcore_response *r, const uint8_t *p, size_t n), (r, p, n))               \
    X(response_write_buffer,                                                                       \
      (warpcore_response *r, const uint8_t *p, size_t n, warpcore_release_cb f, void *u),          \
      (r, p, n, f, u))                                                                             \
    X(response_end, (warpcore_response *r), (r))                                                   \
    X(response_abort, (warpcore_response *r), (r))                                                 \
    X(response_body, (warpcore_response *r, warpcore_body **out), (r, out))                        \
    X(body_read, (warpcore_body *b, uint8_t *p, size_t n, size_t *len), (b, p, n, len))            \
    X(response_upgrade,                                                                            \
      (warpcore_response *r, const warpcore_header *h, size_t hn, warpcore_upgrade_cb f, void *u,  \
       warpcore_upgraded **out),                                                                   \
      (r, h, hn, f, u, out))                                                                       \
    X(response_take_over,                                                                          \
      (warpcore_response *r, warpcore_upgrade_cb f, void *u, warpcore_upgraded **out),             \
      (r, f, u, out))                                                                              \
    X(upgraded_read, (warpcore_upgraded *g, uint8_t *p, size_t n, size_t *len), (g, p, n, len))   \
    X(upgraded_write, (warpcore_upgraded *g, const uint8_t *p, size_t n), (g, p, n))               \
    X(upgraded_write_buffer,                                                                       \
      (warpcore_upgraded *g, const uint8_t *p, size_t n, warpcore_release_cb f, void *u),          \
      (g, p, n, f, u))                                                                             \
    X(upgraded_shutdown_write, (warpcore_upgraded *g), (g))                                        \
    X(upgraded_close, (warpcore_upgraded *g), (g))                                                 \
    X(upgraded_set_idle_timeout, (warpcore_upgraded *g, uint64_t ms), (g, ms))                     \
    X(server_start, (const struct warpcore_config *c, struct warpcore_server **out), (c, out))     \
    X(server_run_worker, (const struct warpcore_server *s, uint32_t i), (s, i))                    \
    X(server_shutdown, (const struct warpcore_server *s, uint32_t ms), (s, ms))                    \
    X(server_reload, (const struct warpcore_server *s, const struct warpcore_config *c), (s, c))   \
    X(server_stats, (const struct warpcore_server *s, struct warpcore_stats *out), (s, out))       \
    X(server_file_cache_stats,                                                                     \
      (const struct warpcore_server *s, struct warpcore_file_cache_stats *out), (s, out))          \
    X(server_shutdown_report,                                                                      \
      (const struct warpcore_server *s, struct warpcore_shutdown_report *out), (s, out))           \
    X(server_reopen_logs, (const struct warpcore_server *s), (s))                                  \
    X(server_listener_address,                                                                     \
      (const struct warpcore_server *s, uint32_t i, char *buf, size_t cap, size_t *needed),        \
      (s, i, buf, cap, needed))

/* ---- Sockets the program opened (runSettingsSocket) ----
 *
 * The server owns a descriptor handed to it as "fd://N" (it closes it when it
 * stops), while the program keeps its own socket: the binding hands the
 * server a duplicate. */

/* A duplicate of descriptor `fd`, close-on-exec, numbered 3 or above (never
 * stdin, stdout or stderr); -1 with errno set. */
int warpcore_hs_dup_cloexec(int fd);

/* 1 when `fd` is a socket that listens (SO_ACCEPTCONN), 0 when it is not, -1
 * with errno set (not a socket, not open). */
int warpcore_hs_socket_listens(int fd);

#define WARPCORE_HS_PARAMS(...) __VA_ARGS__
#define WARPCORE_HS_DECLARE(name, params, args) \
    warpcore_result warpcore_hs_##name(WARPCORE_HS_PARAMS params, char *message);
WARPCORE_HS_CAPTURED(WARPCORE_HS_DECLARE)
#undef WARPCORE_HS_DECLARE

#endif
