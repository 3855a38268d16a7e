/*
 * The config API's error paths: NULL arguments, _free(NULL), invalid
 * settings (refused and leaving the config as it was), warpcore_result_str
 * for every code, warpcore_last_error_message (length query, truncation,
 * per-thread), warpcore_version and the header's version macros.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

#ifndef EXPECTED_VERSION
#error "run.sh passes -DEXPECTED_VERSION from Cargo.toml"
#endif

static void dummy_handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    (void)req;
    warpcore_respond(res, 200, NULL, 0, NULL, 0);
}

static void null_arguments(void) {
    warpcore_config *config = NULL;
    CHECK_RESULT(warpcore_config_new(NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "out") != NULL);
    CHECK_RESULT(warpcore_config_new(&config), WARPCORE_RESULT_OK);
    CHECK(config != NULL);

    /* A NULL config in every setter. */
    CHECK_RESULT(warpcore_config_set_listen(NULL, (const uint8_t *)"127.0.0.1:0", 11), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "config") != NULL);
    CHECK_RESULT(warpcore_config_set_workers(NULL, 1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_external_workers(NULL, true), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_handler(NULL, dummy_handler, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_server_name(NULL, (const uint8_t *)"x", 1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_body_size(NULL, 10), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_head_size(NULL, 8192), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_request_line(NULL, 4096), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_header_count(NULL, 10), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_timeout(NULL, WARPCORE_TIMEOUT_IDLE, 5000), WARPCORE_RESULT_NULL_ARGUMENT);

    /* NULL data with a non-zero length; NULL with length 0 is an empty string. */
    CHECK_RESULT(warpcore_config_set_listen(config, NULL, 5), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "address") != NULL);
    CHECK_RESULT(warpcore_config_set_server_name(config, NULL, 3), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_server_name(config, NULL, 0), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_handler(config, NULL, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "handler") != NULL);

    /* Starting: NULL config, NULL out. */
    warpcore_server *server = NULL;
    CHECK_RESULT(warpcore_server_start(NULL, &server), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK(server == NULL);
    CHECK_RESULT(warpcore_config_set_handler(config, dummy_handler, NULL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_start(config, NULL), WARPCORE_RESULT_NULL_ARGUMENT);

    /* Every server call with NULL. */
    CHECK(warpcore_server_port(NULL) == 0);
    CHECK(warpcore_server_workers(NULL) == 0);
    CHECK_RESULT(warpcore_server_run_worker(NULL, 0), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_server_shutdown(NULL, 0), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_server_wait(NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_respond(NULL, 200, NULL, 0, NULL, 0), WARPCORE_RESULT_NULL_ARGUMENT);

    /* _free(NULL) is harmless. */
    warpcore_config_free(NULL);
    warpcore_server_free(NULL);
    warpcore_config_free(config);
}

static void invalid_settings(void) {
    warpcore_config *config = local_config(2, dummy_handler, NULL);

    CHECK_RESULT(warpcore_config_set_workers(config, 5000), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "workers") != NULL);
    CHECK_RESULT(warpcore_config_set_workers(config, 1025), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_workers(config, UINT32_MAX), WARPCORE_RESULT_INVALID_ARGUMENT);

    CHECK_RESULT(warpcore_config_set_max_header_count(config, 0), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "max_header_count") != NULL);
    CHECK_RESULT(warpcore_config_set_max_header_count(config, 101), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_header_count(config, 1), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_max_header_count(config, 100), WARPCORE_RESULT_OK);

    CHECK_RESULT(warpcore_config_set_max_request_line(config, 8), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_request_line(config, 64 * 1024), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_head_size(config, 2u << 20), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_head_size(config, 16), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_body_size(config, (uint64_t)1 << 41), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_max_body_size(config, 0), WARPCORE_RESULT_OK);

    CHECK_RESULT(warpcore_config_set_coalesce_wait(NULL, 50), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_coalesce_wait(config, 1001), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "coalesce_wait") != NULL);
    CHECK_RESULT(warpcore_config_set_coalesce_wait(config, UINT32_MAX), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_coalesce_wait(config, 1000), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_coalesce_wait(config, 0), WARPCORE_RESULT_OK);

    static const uint32_t kinds[] = {WARPCORE_TIMEOUT_HEADER, WARPCORE_TIMEOUT_IDLE, WARPCORE_TIMEOUT_BODY,
                                     WARPCORE_TIMEOUT_WRITE, WARPCORE_TIMEOUT_ANSWER};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        CHECK_RESULT(warpcore_config_set_timeout(config, kinds[i], 0), WARPCORE_RESULT_INVALID_ARGUMENT);
        CHECK_RESULT(warpcore_config_set_timeout(config, kinds[i], 999), WARPCORE_RESULT_INVALID_ARGUMENT);
        CHECK(strstr(last_error(), "timeout") != NULL);
        CHECK_RESULT(warpcore_config_set_timeout(config, kinds[i], 86400001), WARPCORE_RESULT_INVALID_ARGUMENT);
        CHECK_RESULT(warpcore_config_set_timeout(config, kinds[i], UINT64_MAX), WARPCORE_RESULT_INVALID_ARGUMENT);
        CHECK_RESULT(warpcore_config_set_timeout(config, kinds[i], 1000), WARPCORE_RESULT_OK);
        CHECK_RESULT(warpcore_config_set_timeout(config, kinds[i], 86400000), WARPCORE_RESULT_OK);
    }
    CHECK_RESULT(warpcore_config_set_timeout(config, WARPCORE_TIMEOUT_ANSWER + 1, 5000), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_timeout(config, UINT32_MAX, 5000), WARPCORE_RESULT_INVALID_ARGUMENT);

    static const char *bad_names[] = {"a\r\nX-Injected: 1", "tab\there", "del\x7f", "nl\n", "esc\x1b"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        CHECK_RESULT(warpcore_config_set_server_name(config, (const uint8_t *)bad_names[i], strlen(bad_names[i])),
                     WARPCORE_RESULT_INVALID_ARGUMENT);
        CHECK(strstr(last_error(), "server_name") != NULL);
    }
    /* A NUL inside the given length is a control character too. */
    CHECK_RESULT(warpcore_config_set_server_name(config, (const uint8_t *)"a\0b", 3), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_server_name(config, (const uint8_t *)"fine/1.0 (x)", 12), WARPCORE_RESULT_OK);

    /* A refused setting leaves the config as it was: still 2 workers. */
    warpcore_server *server = NULL;
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_OK);
    CHECK(warpcore_server_workers(server) == 2);
    CHECK(warpcore_server_port(server) != 0);
    CHECK_RESULT(warpcore_server_shutdown(server, 0), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    warpcore_config_free(config);
}

static void result_strings(void) {
    static const struct {
        warpcore_result code;
        const char *text;
    } known[] = {
        {WARPCORE_RESULT_OK, "success"},
        {WARPCORE_RESULT_INVALID_ARGUMENT, "invalid argument"},
        {WARPCORE_RESULT_NULL_ARGUMENT, "a required pointer argument is NULL"},
        {WARPCORE_RESULT_INVALID_ADDRESS, "invalid listen address"},
        {WARPCORE_RESULT_ADDRESS_IN_USE, "address already in use"},
        {WARPCORE_RESULT_IO_ERROR, "operating-system error"},
        {WARPCORE_RESULT_SHUTTING_DOWN, "the server is shutting down"},
        {WARPCORE_RESULT_INVALID_STATE, "the call does not fit the object's state"},
        {WARPCORE_RESULT_ALREADY_ANSWERED, "the request has already been answered"},
        {WARPCORE_RESULT_CLOSED, "the client has gone away"},
        {WARPCORE_RESULT_INVALID_STATUS, "invalid status code"},
        {WARPCORE_RESULT_INVALID_HEADER, "invalid header name or value"},
        {WARPCORE_RESULT_PANIC, "internal panic caught"},
        {WARPCORE_RESULT_LENGTH_MISMATCH, "the stream broke its declared Content-Length"},
        {WARPCORE_RESULT_WOULD_BLOCK, "the call would have to wait, and this one may not"},
        {WARPCORE_RESULT_BUFFER_TOO_SMALL, "the buffer is too small; the size needed was written"},
        {WARPCORE_RESULT_TLS, "a certificate, key or TLS setting is unusable"},
    };
    size_t n = sizeof known / sizeof known[0];
    for (size_t i = 0; i < n; i++) {
        /* The numbers are stable: 0, 1, 2, ... in this order. */
        CHECK(known[i].code == (warpcore_result)i);
        const char *s = warpcore_result_str(known[i].code);
        CHECK(s != NULL);
        if (s && strcmp(s, known[i].text) != 0) {
            fprintf(stderr, "warpcore_result_str(%u) = \"%s\", expected \"%s\"\n", (unsigned)i, s, known[i].text);
            CHECK(0);
        }
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, warpcore_result_str(known[j].code)) != 0);
    }
    static const uint32_t unknown[] = {17, 18, 100, 0x7fffffffu, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = warpcore_result_str(unknown[i]);
        CHECK(s != NULL && strcmp(s, "unknown result code") == 0);
    }
    /* The same static string each time. */
    CHECK(warpcore_result_str(WARPCORE_RESULT_OK) == warpcore_result_str(WARPCORE_RESULT_OK));
}

static void *fresh_thread_message(void *arg) {
    size_t *len = arg;
    char buf[8];
    memset(buf, 'x', sizeof buf);
    *len = warpcore_last_error_message(buf, sizeof buf);
    CHECK(buf[0] == 0);
    CHECK(buf[1] == 'x');
    return NULL;
}

static void last_error_messages(void) {
    warpcore_config *config = local_config(1, NULL, NULL);
    CHECK_RESULT(warpcore_config_set_workers(config, 5000), WARPCORE_RESULT_INVALID_ARGUMENT);

    /* NULL with length 0 asks for the length. */
    size_t len = warpcore_last_error_message(NULL, 0);
    CHECK(len > 10);
    /* A buffer of len + 1 holds it all. */
    char *full = malloc(len + 1 + 4);
    memset(full, '#', len + 5);
    CHECK(warpcore_last_error_message(full, len + 1) == len);
    CHECK(strlen(full) == len);
    CHECK(full[len + 1] == '#'); /* nothing written past the given length */
    CHECK(strstr(full, "workers") != NULL);
    /* A short buffer gets a truncated, NUL-terminated prefix and the full length. */
    char small[6];
    memset(small, '#', sizeof small);
    CHECK(warpcore_last_error_message(small, 5) == len);
    CHECK(small[4] == 0 && small[5] == '#');
    CHECK(strncmp(small, full, 4) == 0);
    char one[2] = {'#', '#'};
    CHECK(warpcore_last_error_message(one, 1) == len);
    CHECK(one[0] == 0 && one[1] == '#');
    /* A non-NULL buffer with length 0 is not written. */
    char untouched = '#';
    CHECK(warpcore_last_error_message(&untouched, 0) == len);
    CHECK(untouched == '#');

    /* A later successful call does not clear it; a later failure replaces it. */
    CHECK_RESULT(warpcore_config_set_workers(config, 3), WARPCORE_RESULT_OK);
    CHECK(warpcore_last_error_message(NULL, 0) == len);
    CHECK_RESULT(warpcore_config_set_max_header_count(config, 0), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "max_header_count") != NULL);

    /* Per thread: a new thread has no message. */
    pthread_t t;
    size_t other = 99;
    CHECK(pthread_create(&t, NULL, fresh_thread_message, &other) == 0);
    pthread_join(t, NULL);
    CHECK(other == 0);
    CHECK(strstr(last_error(), "max_header_count") != NULL);

    free(full);
    warpcore_config_free(config);
}

/* The header's macros and the library's warpcore_version() against Cargo.toml. */
#if !defined(WARPCORE_VERSION_MAJOR) || !defined(WARPCORE_VERSION_MINOR) || !defined(WARPCORE_VERSION_PATCH) \
    || !defined(WARPCORE_VERSION)
#error "warpcore.h defines WARPCORE_VERSION_MAJOR, _MINOR, _PATCH and WARPCORE_VERSION"
#endif
#if WARPCORE_VERSION_MAJOR < 0 || WARPCORE_VERSION_MINOR < 0 || WARPCORE_VERSION_PATCH < 0
#error "the version numbers are usable in #if"
#endif

static void version(void) {
    const char *v = warpcore_version();
    CHECK(v != NULL && strcmp(v, EXPECTED_VERSION) == 0);
    CHECK(strcmp(WARPCORE_VERSION, EXPECTED_VERSION) == 0);
    char numbers[64];
    snprintf(numbers, sizeof numbers, "%d.%d.%d", WARPCORE_VERSION_MAJOR, WARPCORE_VERSION_MINOR,
             WARPCORE_VERSION_PATCH);
    CHECK(strcmp(numbers, EXPECTED_VERSION) == 0);
    CHECK(v == warpcore_version()); /* static: the same string every call */
}

int main(void) {
    null_arguments();
    invalid_settings();
    result_strings();
    last_error_messages();
    version();
    return check_finish("config_errors");
}
