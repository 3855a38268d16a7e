/*
 * The demo server of DESIGN.md in C: GET / -> "Hello, World!", POST /echo ->
 * the request body as it arrives (any size: a body over 64 KiB streams, read
 * and echoed by a thread of its own), GET /ws -> a WebSocket echo (served
 * from the worker's event loop, no thread per connection), PREFIX/... ->
 * files under DIR for each --static PREFIX=DIR (served by the library's
 * static mounts, not by this handler).
 * One route more than DESIGN.md's demo contract, in this demo only: POST
 * /upload reads the body to its end and discards it (a streamed one on a
 * thread of its own), then answers its size in bytes as decimal text — the
 * upload suite of benches/harness/bench.py measures it against nginx
 * discarding the same body.
 * Flags: --host H --port N --workers N --static PREFIX=DIR (repeatable)
 * --access-log PATH --listen ADDRESS (repeatable: HOST:PORT, [V6]:PORT,
 * unix:PATH, fd://N; in place of --host/--port) --config FILE (the format is
 * below, at read_config_file) --tls-cert FILE --tls-key FILE (every
 * listener but the config file's tls_listen ones speaks TLS with that
 * certificate chain and key, PEM; read again on SIGHUP, so replacing the
 * files and sending SIGHUP installs new ones), --tls-ktls on|off (kernel TLS
 * after the handshake where the kernel has it; default on). Sockets passed by systemd (LISTEN_PID,
 * LISTEN_FDS) are listened on too; without any --listen, --host, --port or
 * `listen` line they are the only listeners. Prints "listening on ADDRESS"
 * once it accepts connections, one line per listener, the first listener
 * first (ADDRESS is HOST:PORT for TCP, unix:PATH for a Unix socket).
 * Signals: SIGTERM/SIGINT stop it gracefully (10 s deadline, exit status 0),
 * SIGHUP reloads its settings live (re-reading the config file: listeners,
 * mounts, limits; a file that does not read or apply is reported and the
 * running settings stay), SIGUSR1 reopens the access log (rotation).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "warpcore.h"

static int str_is(warpcore_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

/* The fixed answers, checked and rendered once at start (warpcore_prepared_new):
 * answering with one only copies it. */
static warpcore_prepared *hello_answer;
static warpcore_prepared *missing_answer;

static const warpcore_header text_plain[] = {
    {{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}},
};

static warpcore_result prepare_answers(void) {
    static const char hello[] = "Hello, World!";
    static const char missing[] = "Not Found\n";
    warpcore_result r = warpcore_prepared_new(200, text_plain, 1, (const uint8_t *)hello, sizeof hello - 1, &hello_answer);
    if (r != WARPCORE_RESULT_OK) return r;
    return warpcore_prepared_new(404, text_plain, 1, (const uint8_t *)missing, sizeof missing - 1, &missing_answer);
}

static const warpcore_header octets[] = {
    {{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"application/octet-stream", 24}},
};

struct echo {
    warpcore_body *body;
    warpcore_response *res;
};

/* Echoes a streamed body as it arrives, on a thread of its own: there reads
 * wait for bytes and writes wait for the client to read (a worker thread
 * would never wait). Chunked, since a chunked upload has no length. */
static void *echo_stream(void *arg) {
    struct echo *e = arg;
    uint8_t buf[16 * 1024];
    /* A response call that fails releases the handle; a failed read does not. */
    warpcore_result r = warpcore_response_start(e->res, 200, octets, 1, -1);
    while (r == WARPCORE_RESULT_OK) {
        size_t n = 0;
        if (warpcore_body_read(e->body, buf, sizeof buf, &n) != WARPCORE_RESULT_OK) {
            /* The client left or broke its body: the unended stream says so. */
            warpcore_response_abort(e->res);
            break;
        }
        if (n == 0) {
            warpcore_response_end(e->res);
            break;
        }
        r = warpcore_response_write(e->res, buf, n);
    }
    warpcore_body_free(e->body);
    free(e);
    return NULL;
}

/* POST /echo: a body that arrived whole goes straight back; one that streams
 * is handed to a thread (the handle is answered after the handler returns). */
static void echo(const warpcore_request *req, warpcore_response *res) {
    if (!req->body_follows) {
        warpcore_respond(res, 200, octets, 1, req->body.ptr, req->body.len);
        return;
    }
    struct echo *e = malloc(sizeof *e);
    pthread_attr_t attr;
    pthread_t thread;
    if (!e || warpcore_response_body(res, &e->body) != WARPCORE_RESULT_OK) {
        free(e);
        warpcore_respond(res, 500, text_plain, 1, NULL, 0);
        return;
    }
    e->res = res;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thread, &attr, echo_stream, e) != 0) {
        warpcore_body_free(e->body);
        free(e);
        warpcore_respond(res, 503, text_plain, 1, NULL, 0);
    }
    pthread_attr_destroy(&attr);
}

struct upload {
    warpcore_body *body;
    warpcore_response *res;
};

/* Answers `count` bytes received, as decimal text and a newline. */
static void answer_count(warpcore_response *res, unsigned long long count) {
    char text[32];
    int n = snprintf(text, sizeof text, "%llu\n", count);
    warpcore_respond(res, 200, text_plain, 1, (const uint8_t *)text, (size_t)n);
}

/* Reads a streamed body to its end on a thread of its own, counting and
 * dropping the bytes, then answers the count. */
static void *upload_stream(void *arg) {
    struct upload *u = arg;
    static const char broken[] = "body not received whole\n";
    uint8_t *buf = malloc(64 * 1024);
    unsigned long long count = 0;
    for (;;) {
        size_t n = 0;
        if (!buf || warpcore_body_read(u->body, buf, 64 * 1024, &n) != WARPCORE_RESULT_OK) {
            /* The client left, the body broke or a buffer was not had: no count. */
            warpcore_respond(u->res, buf ? 400 : 500, text_plain, 1, (const uint8_t *)broken, sizeof broken - 1);
            break;
        }
        if (n == 0) {
            answer_count(u->res, count);
            break;
        }
        count += n;
    }
    free(buf);
    warpcore_body_free(u->body);
    free(u);
    return NULL;
}

/* POST /upload: a body that arrived whole is counted at once; one that streams
 * is read to its end by a thread (answered after the handler returns). */
static void upload(const warpcore_request *req, warpcore_response *res) {
    if (!req->body_follows) {
        answer_count(res, req->body.len);
        return;
    }
    struct upload *u = malloc(sizeof *u);
    pthread_attr_t attr;
    pthread_t thread;
    if (!u || warpcore_response_body(res, &u->body) != WARPCORE_RESULT_OK) {
        free(u);
        warpcore_respond(res, 500, text_plain, 1, NULL, 0);
        return;
    }
    u->res = res;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thread, &attr, upload_stream, u) != 0) {
        warpcore_body_free(u->body);
        free(u);
        warpcore_respond(res, 503, text_plain, 1, NULL, 0);
    }
    pthread_attr_destroy(&attr);
}

/* GET /ws: a WebSocket echo served from the worker's event loop, through the
 * events the library calls back with, without a thread per connection. Each
 * message goes back as it came (text or binary). A peer that does not read
 * makes a send return WOULD_BLOCK: its message waits here, and no more are
 * taken (so the library stops reading and TCP slows the peer) until WRITABLE. */
struct ws_echo {
    uint8_t *buf;
    size_t cap;
    uint8_t *held; /* a message held back by a full queue, or NULL */
    size_t held_len;
    uint32_t held_kind;
};

static void ws_event(void *userdata, warpcore_websocket *ws, uint32_t events) {
    struct ws_echo *e = userdata;
    if (events & WARPCORE_WEBSOCKET_EVENT_CLOSED) {
        /* The last call: the handle and the state go. */
        warpcore_websocket_free(ws);
        free(e->held);
        free(e->buf);
        free(e);
        return;
    }
    if (events & WARPCORE_WEBSOCKET_EVENT_DRAINING) {
        static const char bye[] = "server shutting down";
        warpcore_websocket_close(ws, 1001, (const uint8_t *)bye, sizeof bye - 1);
    }
    if (e->held) {
        if (warpcore_websocket_send(ws, e->held_kind, e->held, e->held_len) == WARPCORE_RESULT_WOULD_BLOCK) return;
        free(e->held);
        e->held = NULL;
    }
    for (;;) {
        size_t len = 0;
        uint32_t kind = 0;
        warpcore_result r = warpcore_websocket_recv(ws, e->buf, e->cap, &len, &kind);
        if (r == WARPCORE_RESULT_BUFFER_TOO_SMALL) {
            uint8_t *bigger = realloc(e->buf, len);
            if (!bigger) {
                warpcore_websocket_close(ws, 1011, NULL, 0);
                return;
            }
            e->buf = bigger;
            e->cap = len;
            continue;
        }
        if (r != WARPCORE_RESULT_OK || kind == WARPCORE_WEBSOCKET_KIND_CLOSE) {
            /* Drained: an idle connection does not keep a big message's buffer. */
            if (e->cap > 64 * 1024) {
                free(e->buf);
                e->buf = NULL;
                e->cap = 0;
            }
            return;
        }
        r = warpcore_websocket_send(ws, kind, e->buf, len);
        if (r == WARPCORE_RESULT_WOULD_BLOCK) {
            e->held = malloc(len ? len : 1);
            if (!e->held) {
                warpcore_websocket_close(ws, 1011, NULL, 0);
                return;
            }
            memcpy(e->held, e->buf, len);
            e->held_len = len;
            e->held_kind = kind;
            return;
        }
    }
}

static int find_header(const warpcore_request *req, const char *name, warpcore_str *value) {
    size_t n = strlen(name);
    for (size_t i = 0; i < req->header_count; i++) {
        warpcore_str h = req->headers[i].name;
        if (h.len == n && strncasecmp((const char *)h.ptr, name, n) == 0) {
            *value = req->headers[i].value;
            return 1;
        }
    }
    return 0;
}

static void websocket(const warpcore_request *req, warpcore_response *res) {
    struct ws_echo *e = calloc(1, sizeof *e);
    warpcore_websocket *ws = NULL;
    if (e && warpcore_websocket_accept(res, NULL, 0, 0, ws_event, e, &ws) == WARPCORE_RESULT_OK) return;
    free(e);
    /* Not a handshake the library accepts: 426 for another protocol version, else 400. */
    warpcore_str version;
    if (find_header(req, "Sec-WebSocket-Version", &version) && !str_is(version, "13")) {
        static const char upgrade[] = "WebSocket version 13 only\n";
        warpcore_header fields[] = {text_plain[0], {{(const uint8_t *)"Sec-WebSocket-Version", 21}, {(const uint8_t *)"13", 2}}};
        warpcore_respond(res, 426, fields, 2, (const uint8_t *)upgrade, sizeof upgrade - 1);
        return;
    }
    static const char expected[] = "a WebSocket handshake is expected here\n";
    warpcore_respond(res, 400, text_plain, 1, (const uint8_t *)expected, sizeof expected - 1);
}

/* An answering handler: the fixed answers are returned as prepared responses,
 * which the library sends as the handler returns (one call across the API per
 * request); the others are answered through `res`, and NULL is returned. */
static const warpcore_prepared *handle(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (str_is(req->path, "/")) {
        if (str_is(req->method, "GET") || str_is(req->method, "HEAD")) return hello_answer;
    } else if (str_is(req->path, "/echo")) {
        if (str_is(req->method, "POST")) {
            echo(req, res);
            return NULL;
        }
    } else if (str_is(req->path, "/ws")) {
        if (str_is(req->method, "GET")) {
            websocket(req, res);
            return NULL;
        }
    } else if (str_is(req->path, "/upload")) {
        if (str_is(req->method, "POST")) {
            upload(req, res);
            return NULL;
        }
    } else {
        return missing_answer;
    }
    static const char not_allowed[] = "Method Not Allowed\n";
    warpcore_header allow[] = {
        text_plain[0],
        {{(const uint8_t *)"Allow", 5},
         str_is(req->path, "/")    ? (warpcore_str){(const uint8_t *)"GET, HEAD", 9}
         : str_is(req->path, "/ws") ? (warpcore_str){(const uint8_t *)"GET", 3}
                                    : (warpcore_str){(const uint8_t *)"POST", 4}},
    };
    warpcore_respond(res, 405, allow, 2, (const uint8_t *)not_allowed, sizeof not_allowed - 1);
    return NULL;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--host H] [--port N] [--listen ADDRESS]... [--workers N] [--static PREFIX=DIR]...\n"
            "          [--access-log PATH] [--config FILE] [--tls-cert FILE --tls-key FILE] [--tls-ktls on|off]\n",
            argv0);
}

/* Sends the library's error log to stderr. */
static void log_error(void *userdata, uint32_t level, const uint8_t *message, size_t len) {
    (void)userdata;
    static const char *names[] = {"error", "warning", "info"};
    fprintf(stderr, "demo: %s: %.*s\n", level < 3 ? names[level] : "log", (int)len, (const char *)message);
}

#define MAX_MOUNTS 16
#define MAX_LISTENERS 16
#define MAX_TEXT 512

/* What the flags, or the config file, say. */
struct settings {
    char listeners[MAX_LISTENERS][MAX_TEXT];
    int listener_count;
    long workers; /* -1: not said */
    char access_log[MAX_TEXT];
    char mounts[MAX_MOUNTS][MAX_TEXT];
    int mount_count;
    /* The limits a config file may set; -1: not said. */
    long long max_body_size, max_connections;
    long long timeouts_ms[5]; /* indexed by warpcore_timeout */
    long long unix_mode, unix_uid, unix_gid;
    /* TLS listeners: address, certificate chain file, key file. */
    char tls[MAX_LISTENERS][3][MAX_TEXT];
    int tls_count;
};

static void settings_init(struct settings *s) {
    memset(s, 0, sizeof *s);
    s->workers = -1;
    s->max_body_size = s->max_connections = -1;
    for (int i = 0; i < 5; i++) s->timeouts_ms[i] = -1;
    s->unix_mode = -1;
    s->unix_uid = s->unix_gid = -1;
}

static int add_text(char (*list)[MAX_TEXT], int *count, int max, const char *text) {
    if (*count == max || strlen(text) >= MAX_TEXT) return 0;
    strcpy(list[(*count)++], text);
    return 1;
}

/* A whole decimal number in [min, max] (or octal with a leading 0 when base is 0). */
static int parse_number(const char *text, int base, long long min, long long max, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, base);
    if (errno || end == text || *end || v < min || v > max) return 0;
    *out = v;
    return 1;
}

/*
 * The config file: one setting per line, `NAME VALUE...`, words separated by
 * spaces or tabs; a word starting with `#` begins a comment, to the end of
 * the line; blank lines are ignored. A line has at most 1023 bytes, and no NUL.
 *
 *   listen ADDRESS           repeatable: HOST:PORT, [V6]:PORT, unix:PATH, fd://N
 *   tls_listen ADDRESS CERT KEY   repeatable: a TLS listener with a certificate
 *                            chain and its key (PEM files, read again on SIGHUP);
 *                            the same ADDRESS again adds a certificate, chosen by
 *                            the name a client asks for (SNI; the first is the default)
 *   unix_socket_mode MODE [UID [GID]]   octal mode (0660), owner ids (-1: unchanged)
 *   workers N                0: one per core (read at start only: a reload cannot change it)
 *   static PREFIX=DIR        repeatable: a static mount
 *   access_log PATH
 *   max_body_size BYTES      (or "unlimited")
 *   max_connections N
 *   header_timeout_ms MS, idle_timeout_ms MS, body_timeout_ms MS,
 *   write_timeout_ms MS, answer_timeout_ms MS
 *
 * Errors name the file and line; nothing is applied from a file with one.
 */
static int read_config_file(const char *path, struct settings *s, char *error, size_t error_len) {
    static const char *timeout_names[5] = {"header_timeout_ms", "idle_timeout_ms", "body_timeout_ms",
                                           "write_timeout_ms", "answer_timeout_ms"};
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(error, error_len, "%s: %s", path, strerror(errno));
        return 0;
    }
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    int number = 0, ok = 1;
    /* getline, not fgets: a NUL byte or an overlong line is seen as such,
     * instead of cutting the line short or splitting it in two. */
    while (ok && (got = getline(&line, &line_cap, f)) != -1) {
        number++;
        if ((size_t)got >= 2 * MAX_TEXT || strlen(line) != (size_t)got) {
            snprintf(error, error_len, "%s:%d: %s", path, number,
                     strlen(line) != (size_t)got ? "NUL byte in the line" : "line too long");
            ok = 0;
            break;
        }
        char *words[5] = {0};
        int n = 0;
        for (char *w = strtok(line, " \t\r\n"); w && w[0] != '#'; w = strtok(NULL, " \t\r\n")) {
            if (n == 5) { n++; break; }
            words[n++] = w;
        }
        if (n == 0) continue;
        const char *name = words[0], *value = words[1];
        long long v = 0;
        int t = -1;
        for (int i = 0; i < 5; i++) if (!strcmp(name, timeout_names[i])) t = i;
        if (!strcmp(name, "unix_socket_mode")) {
            long long uid = -1, gid = -1;
            ok = n >= 2 && n <= 4 && parse_number(value, 8, 0, 07777, &v) &&
                 (n < 3 || parse_number(words[2], 10, -1, 4294967294LL, &uid)) &&
                 (n < 4 || parse_number(words[3], 10, -1, 4294967294LL, &gid));
            if (ok) s->unix_mode = v, s->unix_uid = uid, s->unix_gid = gid;
        } else if (!strcmp(name, "tls_listen")) {
            ok = n == 4 && s->tls_count < MAX_LISTENERS && strlen(value) < MAX_TEXT && strlen(words[2]) < MAX_TEXT &&
                 strlen(words[3]) < MAX_TEXT;
            if (ok) {
                for (int w = 0; w < 3; w++) strcpy(s->tls[s->tls_count][w], words[w + 1]);
                s->tls_count++;
            }
        } else if (n != 2) {
            ok = 0;
        } else if (!strcmp(name, "listen")) {
            ok = add_text(s->listeners, &s->listener_count, MAX_LISTENERS, value);
        } else if (!strcmp(name, "static")) {
            ok = strchr(value, '=') != NULL && add_text(s->mounts, &s->mount_count, MAX_MOUNTS, value);
        } else if (!strcmp(name, "workers")) {
            ok = parse_number(value, 10, 0, 1024, &v);
            if (ok) s->workers = (long)v;
        } else if (!strcmp(name, "access_log")) {
            ok = strlen(value) < MAX_TEXT;
            if (ok) strcpy(s->access_log, value);
        } else if (!strcmp(name, "max_body_size")) {
            if (!strcmp(value, "unlimited")) s->max_body_size = (long long)(~0ULL >> 1);
            else ok = parse_number(value, 10, 0, 1LL << 40, &s->max_body_size);
        } else if (!strcmp(name, "max_connections")) {
            ok = parse_number(value, 10, 1, 10000000, &s->max_connections);
        } else if (t >= 0) {
            ok = parse_number(value, 10, 1000, 86400000, &s->timeouts_ms[t]);
        } else {
            snprintf(error, error_len, "%s:%d: unknown setting '%s'", path, number, name);
            free(line);
            fclose(f);
            return 0;
        }
        if (!ok) snprintf(error, error_len, "%s:%d: bad value for '%s'", path, number, name);
    }
    if (ok && ferror(f)) {
        snprintf(error, error_len, "%s: %s", path, strerror(errno));
        ok = 0;
    }
    free(line);
    fclose(f);
    return ok;
}

/* Which listeners the flags name, the systemd sockets passed, and the
 * config file (re-read on SIGHUP), if any. */
struct sources {
    struct settings flags;
    int flag_listen; /* --listen, --host or --port given */
    int host_port_given; /* --host or --port given: that listener comes first */
    char host_port[300];
    uint32_t systemd_count;
    const char *config_path;
    const char *tls_cert, *tls_key; /* --tls-cert, --tls-key */
    int tls_no_ktls;                /* --tls-ktls off */
};

/* A TLS setup with the certificate chain and key in files CERT and KEY added. */
static warpcore_result tls_with(warpcore_tls **tls, const char *cert, const char *key) {
    warpcore_result r = *tls ? WARPCORE_RESULT_OK : warpcore_tls_new(tls);
    if (r != WARPCORE_RESULT_OK) return r;
    return warpcore_tls_add_cert_files(*tls, (const uint8_t *)cert, strlen(cert), (const uint8_t *)key, strlen(key));
}

/* Adds the config file's TLS listeners (one per address, with every
 * certificate named for it), and makes every other listener TLS with the
 * flags' certificate when they name one. */
static warpcore_result add_tls(warpcore_config *config, const struct sources *src, const struct settings *file,
                               const char (*plain)[MAX_TEXT], int plain_count) {
    warpcore_result r = WARPCORE_RESULT_OK;
    for (int i = 0; i < file->tls_count && r == WARPCORE_RESULT_OK; i++) {
        int first = 1;
        for (int j = 0; j < i; j++) first &= strcmp(file->tls[j][0], file->tls[i][0]) != 0;
        if (!first) continue;
        warpcore_tls *tls = NULL;
        for (int j = i; j < file->tls_count && r == WARPCORE_RESULT_OK; j++) {
            if (!strcmp(file->tls[j][0], file->tls[i][0])) r = tls_with(&tls, file->tls[j][1], file->tls[j][2]);
        }
        const char *a = file->tls[i][0];
        if (r == WARPCORE_RESULT_OK) r = warpcore_config_add_tls_listener(config, (const uint8_t *)a, strlen(a), tls);
        warpcore_tls_free(tls);
    }
    if (r != WARPCORE_RESULT_OK || !src->tls_cert) return r;
    warpcore_tls *tls = NULL;
    r = tls_with(&tls, src->tls_cert, src->tls_key);
    if (r == WARPCORE_RESULT_OK && src->tls_no_ktls) r = warpcore_tls_set_ktls(tls, false);
    for (int i = 0; i < plain_count && r == WARPCORE_RESULT_OK; i++) {
        r = warpcore_config_add_tls_listener(config, (const uint8_t *)plain[i], strlen(plain[i]), tls);
    }
    warpcore_tls_free(tls);
    return r;
}

/* The settings: the config file's, then the flags' over them (the flags'
 * listeners, if any, replace the file's; mounts add up). */
static warpcore_result make_config(const struct sources *src, const struct settings *file, warpcore_config **out) {
    const struct settings *f = &src->flags;
    warpcore_config *config = NULL;
    warpcore_result r = warpcore_config_new(&config);
    if (r != WARPCORE_RESULT_OK) return r;
    long workers = f->workers >= 0 ? f->workers : file->workers >= 0 ? file->workers : 0;
    const char *access_log = f->access_log[0] ? f->access_log : file->access_log[0] ? file->access_log : NULL;
    long long max_body = file->max_body_size >= 0 ? file->max_body_size : -1;
    if ((r = warpcore_config_set_workers(config, (uint32_t)workers)) != WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_answering_handler(config, handle, NULL)) != WARPCORE_RESULT_OK ||
        /* Uploads of any size, streamed past 64 KiB (unless the file limits them). */
        (r = warpcore_config_set_max_body_size(config, max_body >= 0 && max_body <= (1LL << 40) ? (uint64_t)max_body
                                                                                                : UINT64_MAX)) !=
            WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_whole_body_max(config, 64 * 1024)) != WARPCORE_RESULT_OK ||
        /* An echo holds at most 16 KiB (and one write) of a slow reader's answer. */
        (r = warpcore_config_set_stream_high_water(config, 16 * 1024)) != WARPCORE_RESULT_OK ||
        (r = warpcore_config_set_error_log(config, log_error, NULL)) != WARPCORE_RESULT_OK ||
        (access_log && (r = warpcore_config_set_access_log_file(config, (const uint8_t *)access_log,
                                                                strlen(access_log))) != WARPCORE_RESULT_OK) ||
        (file->max_connections > 0 &&
         (r = warpcore_config_set_max_connections(config, (uint32_t)file->max_connections)) != WARPCORE_RESULT_OK) ||
        (file->unix_mode >= 0 && (r = warpcore_config_set_unix_socket_mode(config, (uint32_t)file->unix_mode,
                                                                           file->unix_uid, file->unix_gid)) !=
                                     WARPCORE_RESULT_OK))
        goto failed;
    for (int t = 0; t < 5; t++) {
        if (file->timeouts_ms[t] > 0 &&
            (r = warpcore_config_set_timeout(config, (uint32_t)t, (uint64_t)file->timeouts_ms[t])) != WARPCORE_RESULT_OK)
            goto failed;
    }
    /* Listeners: the flags', else the file's; then the systemd sockets; else the default host and port. */
    const struct settings *named = src->flag_listen ? f : file;
    if (src->host_port_given &&
        (r = warpcore_config_set_listen(config, (const uint8_t *)src->host_port, strlen(src->host_port))) !=
            WARPCORE_RESULT_OK)
        goto failed;
    for (int i = 0; i < named->listener_count; i++) {
        const char *a = named->listeners[i];
        if ((r = warpcore_config_add_listener(config, (const uint8_t *)a, strlen(a))) != WARPCORE_RESULT_OK) goto failed;
    }
    /* Every listener but the file's TLS ones, for --tls-cert. */
    char plain[MAX_LISTENERS + 2][MAX_TEXT];
    int plain_count = 0;
    if (src->host_port_given) add_text(plain, &plain_count, MAX_LISTENERS + 2, src->host_port);
    for (int i = 0; i < named->listener_count; i++) add_text(plain, &plain_count, MAX_LISTENERS + 2, named->listeners[i]);
    for (uint32_t i = 0; i < src->systemd_count; i++) {
        char fd[32];
        snprintf(fd, sizeof fd, "fd://%u", 3 + i);
        if ((r = warpcore_config_add_listener(config, (const uint8_t *)fd, strlen(fd))) != WARPCORE_RESULT_OK) goto failed;
        add_text(plain, &plain_count, MAX_LISTENERS + 2, fd);
    }
    if (!src->host_port_given && named->listener_count == 0 && src->systemd_count == 0 && file->tls_count == 0) {
        if ((r = warpcore_config_set_listen(config, (const uint8_t *)src->host_port, strlen(src->host_port))) !=
            WARPCORE_RESULT_OK)
            goto failed;
        add_text(plain, &plain_count, MAX_LISTENERS + 2, src->host_port);
    }
    if ((r = add_tls(config, src, file, (const char (*)[MAX_TEXT])plain, plain_count)) != WARPCORE_RESULT_OK) goto failed;
    for (int pass = 0; pass < 2; pass++) {
        const struct settings *m = pass == 0 ? file : f;
        for (int i = 0; i < m->mount_count; i++) {
            const char *mount = m->mounts[i], *eq = strchr(mount, '=');
            r = warpcore_config_add_static(config, (const uint8_t *)mount, (size_t)(eq - mount),
                                           (const uint8_t *)(eq + 1), strlen(eq + 1));
            if (r != WARPCORE_RESULT_OK) goto failed;
        }
    }
    *out = config;
    return WARPCORE_RESULT_OK;
failed:
    warpcore_config_free(config);
    return r;
}

/* Prints one "listening on ADDRESS" line per listener, the first first. */
static void announce(const warpcore_server *server) {
    uint32_t n = warpcore_server_listener_count(server);
    for (uint32_t i = 0; i < n; i++) {
        char address[PATH_MAX + 16];
        if (warpcore_server_listener_address(server, i, address, sizeof address, NULL) == WARPCORE_RESULT_OK)
            printf("listening on %s\n", address);
    }
    fflush(stdout);
}

static int fail(const char *what, warpcore_result r) {
    char message[256];
    warpcore_last_error_message(message, sizeof message);
    fprintf(stderr, "%s: %s (%s)\n", what, warpcore_result_str(r), message);
    return 1;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 8080;
    struct sources src;
    memset(&src, 0, sizeof src);
    settings_init(&src.flags);
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(argv[i], "--host") && value) {
            host = value;
            src.flag_listen = src.host_port_given = 1;
        } else if (!strcmp(argv[i], "--port") && value) {
            port = strtol(value, &end, 10);
            if (*end || port < 0 || port > 65535) { usage(argv[0]); return 2; }
            src.flag_listen = src.host_port_given = 1;
        } else if (!strcmp(argv[i], "--listen") && value) {
            if (!add_text(src.flags.listeners, &src.flags.listener_count, MAX_LISTENERS, value)) { usage(argv[0]); return 2; }
            src.flag_listen = 1;
        } else if (!strcmp(argv[i], "--config") && value) {
            src.config_path = value;
        } else if (!strcmp(argv[i], "--tls-cert") && value) {
            src.tls_cert = value;
        } else if (!strcmp(argv[i], "--tls-key") && value) {
            src.tls_key = value;
        } else if (!strcmp(argv[i], "--tls-ktls") && value && (!strcmp(value, "on") || !strcmp(value, "off"))) {
            src.tls_no_ktls = !strcmp(value, "off");
        } else if (!strcmp(argv[i], "--access-log") && value) {
            if (strlen(value) >= MAX_TEXT) { usage(argv[0]); return 2; }
            strcpy(src.flags.access_log, value);
        } else if (!strcmp(argv[i], "--workers") && value) {
            src.flags.workers = strtol(value, &end, 10);
            if (*end || src.flags.workers < 0 || src.flags.workers > 1024) { usage(argv[0]); return 2; }
        } else if (!strcmp(argv[i], "--static") && value) {
            if (!strchr(value, '=') || !add_text(src.flags.mounts, &src.flags.mount_count, MAX_MOUNTS, value)) {
                usage(argv[0]);
                return 2;
            }
        } else {
            usage(argv[0]);
            return 2;
        }
        i++;
    }
    if (!src.tls_cert != !src.tls_key) {
        fprintf(stderr, "--tls-cert and --tls-key go together\n");
        usage(argv[0]);
        return 2;
    }
    int bracket = strchr(host, ':') != NULL;
    snprintf(src.host_port, sizeof src.host_port, bracket ? "[%s]:%ld" : "%s:%ld", host, port);

    /* Worker threads inherit this mask, so the signals reach sigwait below. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    sigaddset(&stop_signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    warpcore_result r = prepare_answers();
    if (r != WARPCORE_RESULT_OK) return fail("prepare", r);
    struct settings file;
    settings_init(&file);
    char error[600];
    if (src.config_path && !read_config_file(src.config_path, &file, error, sizeof error)) {
        fprintf(stderr, "config: %s\n", error);
        return 2;
    }
    /* systemd socket activation: counted once (it clears the variables), kept for reloads. */
    warpcore_config *config = NULL;
    r = warpcore_config_new(&config);
    if (r == WARPCORE_RESULT_OK) r = warpcore_config_add_systemd_listeners(config, &src.systemd_count);
    warpcore_config_free(config);
    if (r != WARPCORE_RESULT_OK) return fail("systemd sockets", r);
    config = NULL;
    r = make_config(&src, &file, &config);
    if (r != WARPCORE_RESULT_OK) return fail("config", r);
    warpcore_server *server = NULL;
    r = warpcore_server_start(config, &server);
    warpcore_config_free(config);
    if (r != WARPCORE_RESULT_OK) return fail("start", r);
    announce(server);

    for (;;) {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        if (sig == SIGHUP) {
            /* Reload: the config file read again and the flags, applied live to
             * requests read from now on; on any error the running settings stay. */
            struct settings fresh_file;
            settings_init(&fresh_file);
            if (src.config_path && !read_config_file(src.config_path, &fresh_file, error, sizeof error)) {
                fprintf(stderr, "reload: %s (the running settings stay)\n", error);
                continue;
            }
            warpcore_config *fresh = NULL;
            r = make_config(&src, &fresh_file, &fresh);
            if (r == WARPCORE_RESULT_OK) r = warpcore_server_reload(server, fresh);
            warpcore_config_free(fresh);
            if (r != WARPCORE_RESULT_OK) {
                fail("reload (the running settings stay)", r);
            } else {
                fprintf(stderr, "demo: reloaded (%u listeners)\n", warpcore_server_listener_count(server));
            }
        } else if (sig == SIGUSR1) {
            if ((r = warpcore_server_reopen_logs(server)) != WARPCORE_RESULT_OK) fail("reopen logs", r);
        } else {
            break;
        }
    }
    warpcore_server_shutdown(server, 10000);
    warpcore_server_free(server);
    warpcore_prepared_free(hello_answer);
    warpcore_prepared_free(missing_answer);
    return 0;
}
