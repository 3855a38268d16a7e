/*
 * The demo server of DESIGN.md in C: GET / -> "Hello, World!", POST /echo ->
 * the request body, PREFIX/... -> files under DIR for each --static PREFIX=DIR
 * (served by the library's static mounts, not by this handler).
 * Flags: --host H --port N --workers N --static PREFIX=DIR (repeatable).
 * Prints "listening on HOST:PORT" once it accepts connections; stops
 * gracefully on SIGTERM or SIGINT with exit status 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warpcore.h"

static int str_is(warpcore_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    static const char hello[] = "Hello, World!";
    const warpcore_header text_plain[] = {
        {{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}},
    };
    const warpcore_header octets[] = {
        {{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"application/octet-stream", 24}},
    };
    if (str_is(req->path, "/")) {
        if (str_is(req->method, "GET") || str_is(req->method, "HEAD")) {
            warpcore_respond(res, 200, text_plain, 1, (const uint8_t *)hello, sizeof hello - 1);
            return;
        }
    } else if (str_is(req->path, "/echo")) {
        if (str_is(req->method, "POST")) {
            warpcore_respond(res, 200, octets, 1, req->body.ptr, req->body.len);
            return;
        }
    } else {
        static const char missing[] = "Not Found\n";
        warpcore_respond(res, 404, text_plain, 1, (const uint8_t *)missing, sizeof missing - 1);
        return;
    }
    static const char not_allowed[] = "Method Not Allowed\n";
    warpcore_header allow[] = {
        text_plain[0],
        {{(const uint8_t *)"Allow", 5},
         {(const uint8_t *)(str_is(req->path, "/") ? "GET, HEAD" : "POST"), str_is(req->path, "/") ? 9 : 4}},
    };
    warpcore_respond(res, 405, allow, 2, (const uint8_t *)not_allowed, sizeof not_allowed - 1);
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--host H] [--port N] [--workers N] [--static PREFIX=DIR]...\n", argv0);
}

static int fail(const char *what, warpcore_result r) {
    char message[256];
    warpcore_last_error_message(message, sizeof message);
    fprintf(stderr, "%s: %s (%s)\n", what, warpcore_result_str(r), message);
    return 1;
}

#define MAX_MOUNTS 16

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 8080, workers = 0;
    const char *mounts[MAX_MOUNTS];
    int mount_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(argv[i], "--host") && value) {
            host = value;
        } else if (!strcmp(argv[i], "--port") && value) {
            port = strtol(value, &end, 10);
            if (*end || port < 0 || port > 65535) { usage(argv[0]); return 2; }
        } else if (!strcmp(argv[i], "--workers") && value) {
            workers = strtol(value, &end, 10);
            if (*end || workers < 0 || workers > 1024) { usage(argv[0]); return 2; }
        } else if (!strcmp(argv[i], "--static") && value) {
            if (mount_count == MAX_MOUNTS || !strchr(value, '=')) { usage(argv[0]); return 2; }
            mounts[mount_count++] = value;
        } else {
            usage(argv[0]);
            return 2;
        }
        i++;
    }

    /* Worker threads inherit this mask, so the signals reach sigwait below. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    char listen[300];
    int bracket = strchr(host, ':') != NULL;
    snprintf(listen, sizeof listen, bracket ? "[%s]:%ld" : "%s:%ld", host, port);

    warpcore_config *config = NULL;
    warpcore_result r = warpcore_config_new(&config);
    if (r != WARPCORE_RESULT_OK) return fail("config", r);
    if ((r = warpcore_config_set_listen(config, (const uint8_t *)listen, strlen(listen))) != WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_workers(config, (uint32_t)workers)) != WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_handler(config, handle, NULL)) != WARPCORE_RESULT_OK) {
        warpcore_config_free(config);
        return fail("config", r);
    }
    for (int m = 0; m < mount_count; m++) {
        const char *eq = strchr(mounts[m], '=');
        r = warpcore_config_add_static(config, (const uint8_t *)mounts[m], (size_t)(eq - mounts[m]),
                                       (const uint8_t *)(eq + 1), strlen(eq + 1));
        if (r != WARPCORE_RESULT_OK) {
            warpcore_config_free(config);
            return fail("--static", r);
        }
    }
    warpcore_server *server = NULL;
    r = warpcore_server_start(config, &server);
    warpcore_config_free(config);
    if (r != WARPCORE_RESULT_OK) return fail("start", r);

    printf(bracket ? "listening on [%s]:%u\n" : "listening on %s:%u\n", host, warpcore_server_port(server));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    warpcore_server_shutdown(server, 5000);
    warpcore_server_free(server);
    return 0;
}
