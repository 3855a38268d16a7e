/*
 * A stale upgraded handle never waits for another call. A handler upgrades
 * /first and frees its handle at once (its slot goes back). The handler of
 * /second hands its response to a thread that upgrades it, which waits for
 * the handler to return (a response answered from another thread waits for
 * its handler call) in the slot of /first's handle; meanwhile the handler
 * uses /first's stale handle. It must be told INVALID_ARGUMENT at once, not
 * wait for the slot, whose call waits for this very handler: a deadlock.
 * SIGALRM ends a stuck run.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>

#include "check.h"

static const warpcore_header upgrade_echo[] = {{{(const uint8_t *)"Upgrade", 7}, {(const uint8_t *)"echo", 4}}};

static _Atomic(warpcore_upgraded *) stale;
static atomic_int stale_checked;
static atomic_int upgrader_started;
static _Atomic(warpcore_upgraded *) second;
static pthread_t upgrader;

static void *upgrade_second(void *arg) {
    warpcore_upgraded *up = NULL;
    atomic_store(&upgrader_started, 1);
    CHECK_RESULT(warpcore_response_upgrade((warpcore_response *)arg, upgrade_echo, 1, NULL, NULL, &up),
                 WARPCORE_RESULT_OK);
    atomic_store(&second, up);
    return NULL;
}

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->path, "/first")) {
        warpcore_upgraded *up = NULL;
        CHECK_RESULT(warpcore_response_upgrade(res, upgrade_echo, 1, NULL, NULL, &up), WARPCORE_RESULT_OK);
        warpcore_upgraded_free(up);
        atomic_store(&stale, up);
    } else if (wstr_is(req->path, "/second")) {
        pthread_create(&upgrader, NULL, upgrade_second, res);
        CHECK(wait_at_least(&upgrader_started, 1, 10000));
        sleep_ms(200); /* the thread waits for this call to end by now */
        CHECK_RESULT(warpcore_upgraded_write(atomic_load(&stale), (const uint8_t *)"x", 1),
                     WARPCORE_RESULT_INVALID_ARGUMENT);
        atomic_store(&stale_checked, 1);
    }
}

static void stuck(int sig) {
    (void)sig;
    static const char message[] = "upgrade_stale_publish: stuck (a stale handle waited for another call)\n";
    (void)!write(2, message, sizeof message - 1);
    _exit(2);
}

static int upgrade_connect(uint16_t port, const char *path) {
    int fd = connect_local(port);
    char request[256];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", path);
    CHECK(send(fd, request, (size_t)len, MSG_NOSIGNAL) == len);
    return fd;
}

int main(void) {
    signal(SIGALRM, stuck);
    alarm(20);
    warpcore_server *server = start_server(local_config(1, handle, NULL));
    uint16_t port = warpcore_server_port(server);
    char buf[256];

    int first = upgrade_connect(port, "/first");
    CHECK(recv(first, buf, sizeof buf, 0) > 0);
    int fd = upgrade_connect(port, "/second");
    CHECK(recv(fd, buf, 12, 0) == 12 && memcmp(buf, "HTTP/1.1 101", 12) == 0);
    pthread_join(upgrader, NULL);
    CHECK(atomic_load(&stale_checked) == 1);
    warpcore_upgraded *up = atomic_load(&second);
    CHECK(up != NULL && up != atomic_load(&stale));
    warpcore_upgraded_free(up);
    close(fd);
    close(first);

    warpcore_server_shutdown(server, 1000);
    warpcore_server_free(server);
    return check_finish("upgrade_stale_publish");
}
