// Experiment only: LD_PRELOAD shim that holds every send()/writev() on a socket
// until the process next calls epoll_wait (or closes or shuts down the fd),
// then sends them: "handle every ready connection, then write every answer",
// bjoern's pattern. It showed what the per-connection sends cost (wake-up IPIs,
// see ../RESULTS.md) before the engine did the same itself (3b147ae); the
// engine now sends with bare syscalls, which this shim does not see.
//   cc -O2 -shared -fPIC -o build/batchsend.so bindings/python/bench/experiments/batchsend.c -ldl
//   LD_PRELOAD=$PWD/build/batchsend.so python3 examples/python/demo.py
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAXFD 65536
static char *buf[MAXFD]; static size_t len[MAXFD], cap[MAXFD];
static int dirty[MAXFD]; static int ndirty;
static ssize_t (*real_send)(int, const void *, size_t, int);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_close)(int);
static __thread int inside;

static void init(void) {
    if (!real_send) {
        real_send = dlsym(RTLD_NEXT, "send");
        real_epoll_wait = dlsym(RTLD_NEXT, "epoll_wait");
        real_close = dlsym(RTLD_NEXT, "close");
    }
}
static void add(int fd, const void *p, size_t n) {
    if (len[fd] + n > cap[fd]) { cap[fd] = (len[fd] + n) * 2; buf[fd] = realloc(buf[fd], cap[fd]); }
    if (len[fd] == 0) dirty[ndirty++] = fd;
    memcpy(buf[fd] + len[fd], p, n); len[fd] += n;
}
static void flush_fd(int fd) {
    size_t off = 0;
    while (off < len[fd]) {
        ssize_t w = real_send(fd, buf[fd] + off, len[fd] - off, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; break; }
        off += w;
    }
    len[fd] = 0;
}
static void flush_all(void) {
    for (int i = 0; i < ndirty; i++) if (len[dirty[i]]) flush_fd(dirty[i]);
    ndirty = 0;
}
ssize_t send(int fd, const void *p, size_t n, int flags) {
    init();
    if (fd < 0 || fd >= MAXFD || n > 16384) { if (fd >= 0 && fd < MAXFD && len[fd]) flush_fd(fd); return real_send(fd, p, n, flags); }
    add(fd, p, n); return n;
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    init();
    size_t tot = 0; for (int i = 0; i < cnt; i++) tot += iov[i].iov_len;
    if (fd < 0 || fd >= MAXFD || tot > 16384) {
        if (fd >= 0 && fd < MAXFD && len[fd]) flush_fd(fd);
        ssize_t (*rw)(int, const struct iovec *, int) = dlsym(RTLD_NEXT, "writev"); return rw(fd, iov, cnt);
    }
    for (int i = 0; i < cnt; i++) add(fd, iov[i].iov_base, iov[i].iov_len);
    return tot;
}
int epoll_wait(int ep, struct epoll_event *ev, int n, int t) { init(); flush_all(); return real_epoll_wait(ep, ev, n, t); }
int close(int fd) { init(); if (fd >= 0 && fd < MAXFD && len[fd]) flush_fd(fd); return real_close(fd); }
int shutdown(int fd, int how) {
    init();
    if (fd >= 0 && fd < MAXFD && len[fd]) flush_fd(fd);
    int (*rs)(int, int) = dlsym(RTLD_NEXT, "shutdown"); return rs(fd, how);
}
