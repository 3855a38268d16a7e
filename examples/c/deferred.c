/*
 * The demo of DESIGN.md with every answer given after the handler returned,
 * from a small thread pool: the handler copies what it needs, queues the
 * response handle and returns at once, so the event loop never waits.
 * Routes: GET / -> "Hello, World!", POST /echo -> the body.
 * Flags: --host H --port N --workers N [--threads N] [--sched-batch on|off]
 * (on: the workers and the pool run under SCHED_BATCH, so that they hand
 * requests and answers over in batches; off by default).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warpcore.h"

enum route { ROUTE_HELLO, ROUTE_ECHO, ROUTE_NOT_FOUND, ROUTE_NOT_ALLOWED };

struct job {
    warpcore_response *response;
    enum route route;
    uint8_t *body;
    size_t body_len;
    struct job *next;
};

/* A mutex-and-condvar queue of jobs for the pool. A thread takes every queued
 * job at once, and a push wakes a thread only when the queue was empty and one
 * is idle: under load, one wake-up serves a batch instead of one job. Done jobs
 * go back to a free list under the same lock, taken when the pool next looks,
 * so a warm server allocates no job (a malloc in the handler and a free on
 * another thread cost more than the rest of the hand-off). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct job *head, *tail;
    struct job *free; /* done jobs, for the handler's next */
    size_t free_count;
    int idle;
    int stopping;
} queue = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, NULL, 0, 0, 0};

/* At most this many done jobs are kept. */
#define FREE_JOBS_MAX 4096

static int str_is(warpcore_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

/* A cleared job: a done one when there is one, else a new one (NULL when out of memory). */
static struct job *new_job(void) {
    pthread_mutex_lock(&queue.lock);
    struct job *job = queue.free;
    if (job) {
        queue.free = job->next;
        queue.free_count--;
    }
    pthread_mutex_unlock(&queue.lock);
    if (!job) return calloc(1, sizeof *job);
    memset(job, 0, sizeof *job);
    return job;
}

static void push(struct job *job) {
    pthread_mutex_lock(&queue.lock);
    /* A non-empty queue has a thread on its way (woken, or busy and about to
     * look again). */
    int wake = !queue.head && queue.idle > 0;
    if (queue.tail) queue.tail->next = job; else queue.head = job;
    queue.tail = job;
    pthread_mutex_unlock(&queue.lock);
    if (wake) pthread_cond_signal(&queue.ready);
}

/* Every queued job, oldest first; NULL once stopping. `done` (a list of
 * answered jobs, may be NULL) is given back first. */
static struct job *pop_all(struct job *done) {
    pthread_mutex_lock(&queue.lock);
    while (done) {
        struct job *next = done->next;
        if (queue.free_count < FREE_JOBS_MAX) {
            done->next = queue.free;
            queue.free = done;
            queue.free_count++;
        } else {
            free(done);
        }
        done = next;
    }
    while (!queue.head && !queue.stopping) {
        queue.idle++;
        pthread_cond_wait(&queue.ready, &queue.lock);
        queue.idle--;
    }
    struct job *jobs = queue.head;
    queue.head = queue.tail = NULL;
    pthread_mutex_unlock(&queue.lock);
    return jobs;
}

/* Releases a body handed over with warpcore_respond_buffer. */
static void free_body(void *userdata, const uint8_t *data, size_t len) {
    (void)data; (void)len;
    free(userdata);
}

/* The fixed answers, checked and rendered once at start, as the in-call demo
 * does: answering with one hands the worker a reference, not a copy. */
static warpcore_prepared *fixed_answers[3]; /* ROUTE_HELLO, ROUTE_NOT_FOUND, ROUTE_NOT_ALLOWED */

static warpcore_result prepare_answers(void) {
    static const char *const bodies[3] = {"Hello, World!", "Not Found\n", "Method Not Allowed\n"};
    static const uint16_t statuses[3] = {200, 404, 405};
    const warpcore_header text[] = {{{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}}};
    for (int i = 0; i < 3; i++) {
        warpcore_result r = warpcore_prepared_new(statuses[i], text, 1, (const uint8_t *)bodies[i], strlen(bodies[i]),
                                                  &fixed_answers[i]);
        if (r != WARPCORE_RESULT_OK) return r;
    }
    return WARPCORE_RESULT_OK;
}

static void answer(struct job *job) {
    const warpcore_header octets[] = {
        {{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"application/octet-stream", 24}}};
    warpcore_result r;
    switch (job->route) {
    case ROUTE_ECHO:
        /* The copied body goes out without another copy and is freed by the library. */
        r = warpcore_respond_buffer(job->response, 200, octets, 1, job->body, job->body_len, free_body, job->body);
        job->body = NULL;
        break;
    case ROUTE_HELLO:
        r = warpcore_respond_prepared(job->response, fixed_answers[0]);
        break;
    case ROUTE_NOT_FOUND:
        r = warpcore_respond_prepared(job->response, fixed_answers[1]);
        break;
    default:
        r = warpcore_respond_prepared(job->response, fixed_answers[2]);
        break;
    }
    /* WARPCORE_RESULT_CLOSED: the client left; the handle is released either way. */
    (void)r;
    free(job->body);
    job->body = NULL;
}

static int sched_batch;

static void *pool_thread(void *arg) {
    (void)arg;
    if (sched_batch && warpcore_thread_set_sched_batch(true) != WARPCORE_RESULT_OK)
        fprintf(stderr, "pool thread stays under its scheduling policy\n");
    struct job *jobs, *done = NULL;
    while ((jobs = pop_all(done)) != NULL) {
        /* Answered in order; the list is given back whole at the next look. */
        for (struct job *job = jobs; job; job = job->next) answer(job);
        done = jobs;
    }
    return NULL;
}

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    struct job *job = new_job();
    if (!job) {
        warpcore_respond(res, 503, NULL, 0, NULL, 0);
        return;
    }
    job->response = res;
    if (str_is(req->path, "/")) {
        job->route = str_is(req->method, "GET") || str_is(req->method, "HEAD") ? ROUTE_HELLO : ROUTE_NOT_ALLOWED;
    } else if (str_is(req->path, "/echo")) {
        job->route = str_is(req->method, "POST") ? ROUTE_ECHO : ROUTE_NOT_ALLOWED;
        if (job->route == ROUTE_ECHO && req->body.len > 0) {
            job->body = malloc(req->body.len);
            if (!job->body) {
                free(job);
                warpcore_respond(res, 503, NULL, 0, NULL, 0);
                return;
            }
            memcpy(job->body, req->body.ptr, req->body.len);
            job->body_len = req->body.len;
        }
    } else {
        job->route = ROUTE_NOT_FOUND;
    }
    push(job); /* answered later by the pool; the handler returns at once */
}

static int fail(const char *what, warpcore_result r) {
    char message[256];
    warpcore_last_error_message(message, sizeof message);
    fprintf(stderr, "%s: %s (%s)\n", what, warpcore_result_str(r), message);
    return 1;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 8080, workers = 0, threads = 4;
    for (int i = 1; i < argc; i += 2) {
        char *end = NULL;
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        long *target = !strcmp(argv[i], "--port") ? &port
                     : !strcmp(argv[i], "--workers") ? &workers
                     : !strcmp(argv[i], "--threads") ? &threads : NULL;
        if (!strcmp(argv[i], "--host") && value) {
            host = value;
        } else if (!strcmp(argv[i], "--sched-batch") && value && (!strcmp(value, "on") || !strcmp(value, "off"))) {
            sched_batch = !strcmp(value, "on");
        } else if (target && value) {
            *target = strtol(value, &end, 10);
            if (*end || *target < 0 || *target > 65535) goto usage;
        } else {
            goto usage;
        }
    }
    if (threads < 1 || threads > 256) goto usage;

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    warpcore_result prepared = prepare_answers();
    if (prepared != WARPCORE_RESULT_OK) return fail("prepared answers", prepared);

    pthread_t pool[256];
    for (long t = 0; t < threads; t++) pthread_create(&pool[t], NULL, pool_thread, NULL);

    char listen[300];
    int bracket = strchr(host, ':') != NULL;
    snprintf(listen, sizeof listen, bracket ? "[%s]:%ld" : "%s:%ld", host, port);
    warpcore_config *config = NULL;
    warpcore_result r = warpcore_config_new(&config);
    if (r != WARPCORE_RESULT_OK) return fail("config", r);
    if ((r = warpcore_config_set_listen(config, (const uint8_t *)listen, strlen(listen))) != WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_workers(config, (uint32_t)workers)) != WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_handler(config, handle, NULL)) != WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_sched_batch(config, sched_batch)) != WARPCORE_RESULT_OK) {
        warpcore_config_free(config);
        return fail("config", r);
    }
    warpcore_server *server = NULL;
    r = warpcore_server_start(config, &server);
    warpcore_config_free(config);
    if (r != WARPCORE_RESULT_OK) return fail("start", r);
    printf(bracket ? "listening on [%s]:%u\n" : "listening on %s:%u\n", host, warpcore_server_port(server));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    /* Shutdown waits for the pool's answers to requests already received. */
    warpcore_server_shutdown(server, 5000);
    pthread_mutex_lock(&queue.lock);
    queue.stopping = 1;
    pthread_cond_broadcast(&queue.ready);
    pthread_mutex_unlock(&queue.lock);
    for (long t = 0; t < threads; t++) pthread_join(pool[t], NULL);
    warpcore_server_free(server);
    for (int i = 0; i < 3; i++) warpcore_prepared_free(fixed_answers[i]);
    return 0;

usage:
    fprintf(stderr, "usage: %s [--host H] [--port N] [--workers N] [--threads N] [--sched-batch on|off]\n", argv[0]);
    return 2;
}
