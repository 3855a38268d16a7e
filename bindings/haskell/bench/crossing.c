/* Helpers for Crossing.hs: call a Haskell FunPtr from a thread GHC did not
 * create. */
#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef void (*callback)(void);

struct calls {
    callback cb;
    long n;
    double seconds;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *call_loop(void *arg) {
    struct calls *c = arg;
    double t0 = now();
    for (long i = 0; i < c->n; i++) c->cb();
    c->seconds = now() - t0;
    return NULL;
}

/* Calls `cb` n times from a new pthread; returns the seconds it took. */
double crossing_call_from_foreign(callback cb, long n) {
    struct calls c = {cb, n, 0};
    pthread_t t;
    pthread_create(&t, NULL, call_loop, &c);
    pthread_join(t, NULL);
    return c.seconds;
}

