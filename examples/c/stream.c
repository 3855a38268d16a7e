/*
 * A large generated stream: GET /stream?bytes=N answers N bytes (default
 * 100 MiB) of a repeating pattern, chunked, written by a thread of its own per
 * request. warpcore_response_write blocks that thread while more than the
 * high-water mark is queued, so memory stays flat however slowly the client
 * reads. Flags: --host H --port N --workers N.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warpcore.h"

struct stream_job {
    warpcore_response *response;
    unsigned long long bytes;
};

static void *produce(void *arg) {
    struct stream_job *job = arg;
    static uint8_t block[64 * 1024];
    for (size_t i = 0; i < sizeof block; i++) block[i] = (uint8_t)('a' + i % 26);
    const warpcore_header text[] = {{{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}}};
    warpcore_result r = warpcore_response_start(job->response, 200, text, 1, -1);
    unsigned long long left = job->bytes;
    while (r == WARPCORE_RESULT_OK && left > 0) {
        size_t n = left < sizeof block ? (size_t)left : sizeof block;
        r = warpcore_response_write(job->response, block, n);
        left -= n;
    }
    if (r == WARPCORE_RESULT_OK) warpcore_response_end(job->response);
    /* On WARPCORE_RESULT_CLOSED the client left and the handle is already released. */
    free(job);
    return NULL;
}

static void handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    const char prefix[] = "bytes=";
    unsigned long long bytes = 100ull << 20;
    if (req->query.len > sizeof prefix - 1 && memcmp(req->query.ptr, prefix, sizeof prefix - 1) == 0) {
        char digits[32] = {0};
        size_t n = req->query.len - (sizeof prefix - 1);
        if (n < sizeof digits) {
            memcpy(digits, req->query.ptr + sizeof prefix - 1, n);
            bytes = strtoull(digits, NULL, 10);
        }
    }
    struct stream_job *job = malloc(sizeof *job);
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (job) {
        job->response = res;
        job->bytes = bytes;
        if (pthread_create(&thread, &attr, produce, job) == 0) return; /* answered by the thread */
        free(job);
    }
    warpcore_respond(res, 503, NULL, 0, NULL, 0);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 8080, workers = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--workers")) workers = strtol(argv[i + 1], NULL, 10);
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    char listen[300];
    snprintf(listen, sizeof listen, "%s:%ld", host, port);
    warpcore_config *config = NULL;
    warpcore_server *server = NULL;
    if (warpcore_config_new(&config) != WARPCORE_RESULT_OK ||
        warpcore_config_set_listen(config, (const uint8_t *)listen, strlen(listen)) != WARPCORE_RESULT_OK ||
        warpcore_config_set_workers(config, (uint32_t)workers) != WARPCORE_RESULT_OK ||
        warpcore_config_set_handler(config, handle, NULL) != WARPCORE_RESULT_OK ||
        warpcore_server_start(config, &server) != WARPCORE_RESULT_OK) {
        char message[256];
        warpcore_last_error_message(message, sizeof message);
        fprintf(stderr, "stream: %s\n", message);
        warpcore_config_free(config);
        return 1;
    }
    warpcore_config_free(config);
    printf("listening on %s:%u\n", host, warpcore_server_port(server));
    fflush(stdout);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    warpcore_server_shutdown(server, 2000);
    warpcore_server_free(server);
    return 0;
}
