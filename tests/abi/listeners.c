/*
 * Listeners through the C API (WARPCORE_0.3): a server on TCP, a Unix socket
 * and a descriptor handed in, read back with warpcore_server_listener_count
 * and _address, and every misuse answered with its documented code: bad
 * addresses (at add, and at start for what only start can tell), NULL
 * arguments, a bad index, a buffer too small, descriptors that are not
 * listening sockets (left open), bad socket modes and owners, systemd
 * variables that are not this process's or not a count, reload after
 * shutdown, reloads that fail half-way (nothing changes, nothing is left
 * bound, descriptors handed in stay open), an fd:// naming one of the
 * server's own sockets, a relative path after a chdir. A client of the Unix
 * socket is seen as peer "unix:", port 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <sys/stat.h>
#include <sys/un.h>
#include <fcntl.h>

#include "check.h"

static atomic_int unix_peers, tcp_peers;

static void peer_handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    if (wstr_is(req->peer_ip, "unix:") && req->peer_port == 0) atomic_fetch_add(&unix_peers, 1);
    if (wstr_is(req->peer_ip, "127.0.0.1") && req->peer_port != 0) atomic_fetch_add(&tcp_peers, 1);
    warpcore_respond(res, 200, NULL, 0, req->peer_ip.ptr, req->peer_ip.len);
}

static warpcore_result add(warpcore_config *config, const char *address) {
    return warpcore_config_add_listener(config, (const uint8_t *)address, strlen(address));
}

/* A config with no listener yet (the default is dropped by the first add). */
static warpcore_config *bare_config(void) {
    warpcore_config *config = NULL;
    CHECK_RESULT(warpcore_config_new(&config), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_workers(config, 2), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_handler(config, peer_handler, NULL), WARPCORE_RESULT_OK);
    return config;
}

/* GET / over the Unix socket at `path`; the answer's body, or "" on failure. */
static void unix_get(const char *path, char *out, size_t cap) {
    out[0] = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return;
    }
    static const char request[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    CHECK(send(fd, request, sizeof request - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof request - 1));
    size_t got = 0;
    ssize_t n;
    while (got + 1 < cap && (n = recv(fd, out + got, cap - 1 - got, 0)) > 0) got += (size_t)n;
    out[got] = 0;
    close(fd);
    const char *body = strstr(out, "\r\n\r\n");
    if (body) memmove(out, body + 4, strlen(body + 4) + 1);
}

static void bad_forms(void) {
    warpcore_config *config = bare_config();
    static const char *bad[] = {"unix:", "fd://", "fd://-1", "fd://x", "fd://3x", "nohost", ":80", "host:99999", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RESULT(add(config, bad[i]), WARPCORE_RESULT_INVALID_ADDRESS);
    }
    char long_path[300] = "unix:/";
    memset(long_path + 6, 'a', 200);
    long_path[206] = 0;
    CHECK_RESULT(add(config, long_path), WARPCORE_RESULT_INVALID_ADDRESS);
    static const uint8_t not_utf8[] = {'u', 'n', 'i', 'x', ':', '/', 0xff};
    CHECK_RESULT(warpcore_config_add_listener(config, not_utf8, sizeof not_utf8), WARPCORE_RESULT_INVALID_ADDRESS);
    CHECK_RESULT(warpcore_config_add_listener(NULL, (const uint8_t *)"fd://3", 6), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_add_listener(config, NULL, 6), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_clear_listeners(NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    /* Modes and owners. */
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 010000, -1, -1), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 0660, -2, -1), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 0660, -1, 4294967295LL), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(NULL, 0660, -1, -1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 0660, -1, -1), WARPCORE_RESULT_OK);
    /* What only start can tell: a host that does not resolve, a path named twice. */
    CHECK_RESULT(add(config, "no-such-host.invalid:80"), WARPCORE_RESULT_OK);
    warpcore_server *server = NULL;
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_INVALID_ADDRESS);
    CHECK(server == NULL);
    CHECK_RESULT(warpcore_config_clear_listeners(config), WARPCORE_RESULT_OK);
    CHECK_RESULT(add(config, "unix:/tmp/warpcore-abi-twice.sock"), WARPCORE_RESULT_OK);
    CHECK_RESULT(add(config, "unix:/tmp/warpcore-abi-twice.sock"), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "twice") != NULL);
    CHECK(server == NULL);
    warpcore_config_free(config);
}

/* Descriptors that are not listening sockets: refused at start, left open. */
static void bad_descriptors(void) {
    int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int unbound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int dgram = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int fds[] = {file, unbound, dgram, 999};
    const char *why[] = {"not a socket", "not listening", "stream", "not an open descriptor"};
    for (int i = 0; i < 4; i++) {
        warpcore_config *config = bare_config();
        char address[32];
        snprintf(address, sizeof address, "fd://%d", fds[i]);
        CHECK_RESULT(add(config, address), WARPCORE_RESULT_OK);
        warpcore_server *server = NULL;
        CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_INVALID_ADDRESS);
        if (!strstr(last_error(), why[i])) {
            fprintf(stderr, "message \"%s\" lacks \"%s\"\n", last_error(), why[i]);
            CHECK(0);
        }
        CHECK(server == NULL);
        if (fds[i] != 999) CHECK(fcntl(fds[i], F_GETFD) != -1); /* still open */
        warpcore_config_free(config);
    }
    close(file);
    close(unbound);
    close(dgram);
}

static void systemd_not_ours(void) {
    warpcore_config *config = bare_config();
    uint32_t count = 99;
    unsetenv("LISTEN_PID");
    CHECK_RESULT(warpcore_config_add_systemd_listeners(config, &count), WARPCORE_RESULT_OK);
    CHECK(count == 0);
    /* Another process's: left alone. */
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "2", 1);
    count = 99;
    CHECK_RESULT(warpcore_config_add_systemd_listeners(config, &count), WARPCORE_RESULT_OK);
    CHECK(count == 0);
    CHECK(getenv("LISTEN_FDS") != NULL);
    /* Ours, but not a count: refused, and the variables are gone. */
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "many", 1);
    CHECK_RESULT(warpcore_config_add_systemd_listeners(config, NULL), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL);
    /* Ours with none passed: nothing added, NULL count allowed. */
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "0", 1);
    CHECK_RESULT(warpcore_config_add_systemd_listeners(config, NULL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_add_systemd_listeners(NULL, &count), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_config_free(config);
}

static void serving(void) {
    char dir[] = "/tmp/warpcore-abi-listen-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sock[96], unix_address[110], handed_path[96];
    snprintf(sock, sizeof sock, "%s/app.sock", dir);
    snprintf(unix_address, sizeof unix_address, "unix:%s", sock);
    snprintf(handed_path, sizeof handed_path, "%s/handed.sock", dir);

    /* A Unix socket the embedder opened, handed in as fd://N. */
    int handed = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", handed_path);
    CHECK(bind(handed, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(handed, 16) == 0);
    char fd_address[32];
    snprintf(fd_address, sizeof fd_address, "fd://%d", handed);

    warpcore_config *config = bare_config();
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 0600, -1, -1), WARPCORE_RESULT_OK);
    CHECK_RESULT(add(config, unix_address), WARPCORE_RESULT_OK);
    /* set_listen after an add still comes first. */
    CHECK_RESULT(warpcore_config_set_listen(config, (const uint8_t *)"127.0.0.1:0", 11), WARPCORE_RESULT_OK);
    CHECK_RESULT(add(config, fd_address), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return;

    CHECK(warpcore_server_listener_count(server) == 3);
    CHECK(warpcore_server_listener_count(NULL) == 0);
    uint16_t port = warpcore_server_port(server);
    CHECK(port != 0);
    char text[256];
    size_t needed = 0;
    char expect[64];
    snprintf(expect, sizeof expect, "127.0.0.1:%u", (unsigned)port);
    CHECK_RESULT(warpcore_server_listener_address(server, 0, text, sizeof text, &needed), WARPCORE_RESULT_OK);
    CHECK(strcmp(text, expect) == 0 && needed == strlen(expect));
    CHECK_RESULT(warpcore_server_listener_address(server, 1, text, sizeof text, NULL), WARPCORE_RESULT_OK);
    CHECK(strcmp(text, unix_address) == 0);
    CHECK_RESULT(warpcore_server_listener_address(server, 2, text, sizeof text, NULL), WARPCORE_RESULT_OK);
    CHECK(strncmp(text, "unix:", 5) == 0 && strcmp(text + 5, handed_path) == 0);
    /* Sizes: asked with NULL, 0; one byte short; exactly right. */
    size_t unix_len = strlen(unix_address);
    CHECK_RESULT(warpcore_server_listener_address(server, 1, NULL, 0, &needed), WARPCORE_RESULT_BUFFER_TOO_SMALL);
    CHECK(needed == unix_len);
    memset(text, 'z', sizeof text);
    CHECK_RESULT(warpcore_server_listener_address(server, 1, text, unix_len, &needed), WARPCORE_RESULT_BUFFER_TOO_SMALL);
    CHECK(text[0] == 'z');
    CHECK_RESULT(warpcore_server_listener_address(server, 1, text, unix_len + 1, NULL), WARPCORE_RESULT_OK);
    CHECK(strcmp(text, unix_address) == 0);
    CHECK_RESULT(warpcore_server_listener_address(server, 3, text, sizeof text, &needed), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_server_listener_address(server, UINT32_MAX, text, sizeof text, NULL),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_server_listener_address(NULL, 0, text, sizeof text, NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_server_listener_address(server, 0, NULL, 8, NULL), WARPCORE_RESULT_NULL_ARGUMENT);

    struct stat st;
    CHECK(stat(sock, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0600);

    /* Requests on each listener, each peer as it should be. */
    char body[512];
    unix_get(sock, body, sizeof body);
    CHECK(strcmp(body, "unix:") == 0);
    unix_get(handed_path, body, sizeof body);
    CHECK(strcmp(body, "unix:") == 0);
    char reply[1024];
    CHECK(http_exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply, sizeof reply) > 0);
    CHECK(strstr(reply, "\r\n\r\n127.0.0.1") != NULL);
    CHECK(atomic_load(&unix_peers) == 2 && atomic_load(&tcp_peers) == 1);

    /* Reload without the Unix path: its file goes, the rest stays. */
    warpcore_config *fewer = bare_config();
    CHECK_RESULT(warpcore_config_set_listen(fewer, (const uint8_t *)"127.0.0.1:0", 11), WARPCORE_RESULT_OK);
    CHECK_RESULT(add(fewer, fd_address), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_reload(server, fewer), WARPCORE_RESULT_OK);
    CHECK(warpcore_server_listener_count(server) == 2);
    CHECK(warpcore_server_port(server) == port);
    CHECK(stat(sock, &st) != 0);
    unix_get(handed_path, body, sizeof body);
    CHECK(strcmp(body, "unix:") == 0);

    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    /* After shutdown: still readable, and a reload is refused. */
    CHECK(warpcore_server_listener_count(server) == 2);
    CHECK_RESULT(warpcore_server_listener_address(server, 0, text, sizeof text, NULL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_server_reload(server, fewer), WARPCORE_RESULT_SHUTTING_DOWN);
    warpcore_server_free(server);
    warpcore_config_free(fewer);
    /* The server owned the handed-in descriptor and closed it. */
    CHECK(fcntl(handed, F_GETFD) == -1 && errno == EBADF);
    unlink(handed_path);
    rmdir(dir);
}

/* A relative unix: path: its file is removed at the end even when the
 * program changed its working directory since the start (a daemon's
 * chdir("/")), and a file of the same name in the new directory is left. */
static void relative_path(void) {
    char dir[] = "/tmp/warpcore-abi-rel-XXXXXX", other[] = "/tmp/warpcore-abi-other-XXXXXX";
    CHECK(mkdtemp(dir) != NULL && mkdtemp(other) != NULL);
    char cwd[4096], sock[128], decoy[128];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(sock, sizeof sock, "%s/rel.sock", dir);
    snprintf(decoy, sizeof decoy, "%s/rel.sock", other);
    CHECK(chdir(dir) == 0);
    warpcore_config *config = bare_config();
    CHECK_RESULT(add(config, "unix:rel.sock"), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return;
    struct stat st;
    CHECK(stat(sock, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK(chdir(other) == 0);
    int fd = open(decoy, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    CHECK(stat(sock, &st) != 0 && errno == ENOENT);
    CHECK(stat(decoy, &st) == 0);
    CHECK(chdir(cwd) == 0);
    unlink(decoy);
    rmdir(other);
    rmdir(dir);
}

/* Sizes and forms at the edges of add_listener, and what a failed add or a
 * clear leaves in the config. */
static void edges(void) {
    warpcore_config *config = bare_config();
    CHECK_RESULT(warpcore_config_add_listener(config, NULL, 0), WARPCORE_RESULT_INVALID_ADDRESS);
    CHECK_RESULT(warpcore_config_add_listener(config, (const uint8_t *)"fd://3", SIZE_MAX),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(add(config, "fd://2147483648"), WARPCORE_RESULT_INVALID_ADDRESS);
    CHECK_RESULT(add(config, "fd://99999999999999999999"), WARPCORE_RESULT_INVALID_ADDRESS);
    CHECK_RESULT(add(config, "fd:// 3"), WARPCORE_RESULT_INVALID_ADDRESS);
    CHECK_RESULT(add(config, "unix:/tmp/with\0nul"), WARPCORE_RESULT_OK); /* strlen stops at the NUL */
    static const uint8_t nul[] = {'u', 'n', 'i', 'x', ':', '/', 'a', 0, 'b'};
    CHECK_RESULT(warpcore_config_add_listener(config, nul, sizeof nul), WARPCORE_RESULT_INVALID_ADDRESS);
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 07777, 4294967294LL, 4294967294LL), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, UINT32_MAX, -1, -1), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 0600, INT64_MIN, INT64_MAX),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    /* Cleared: what was added is gone, an explicit address too. */
    CHECK_RESULT(warpcore_config_clear_listeners(config), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_clear_listeners(config), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_set_listen(config, (const uint8_t *)"127.0.0.1:0", 11), WARPCORE_RESULT_OK);
    CHECK_RESULT(add(config, "nonsense"), WARPCORE_RESULT_INVALID_ADDRESS); /* refused: not kept */
    CHECK_RESULT(warpcore_config_set_unix_socket_mode(config, 0600, -1, -1), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return;
    CHECK(warpcore_server_listener_count(server) == 1);
    char text[64];
    size_t needed = 0;
    memset(text, 'z', sizeof text);
    CHECK_RESULT(warpcore_server_listener_address(server, 0, text, 0, &needed), WARPCORE_RESULT_BUFFER_TOO_SMALL);
    CHECK(text[0] == 'z' && needed > 0);
    CHECK_RESULT(warpcore_server_listener_address(server, 0, NULL, 0, NULL), WARPCORE_RESULT_BUFFER_TOO_SMALL);
    CHECK_RESULT(warpcore_server_listener_address(server, 0, text, needed + 1, NULL), WARPCORE_RESULT_OK);
    CHECK(strlen(text) == needed);
    CHECK_RESULT(warpcore_server_shutdown(server, 0), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
}

/* The number the next descriptor opened gets. */
static int next_descriptor(void) {
    int fd = dup(0);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

/* The descriptor of this process's socket listening at `path`, or -1. */
static int listening_at(const char *path) {
    for (int fd = 3; fd < 4096; fd++) {
        struct sockaddr_un addr;
        socklen_t len = sizeof addr;
        if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0 && addr.sun_family == AF_UNIX &&
            strcmp(addr.sun_path, path) == 0)
            return fd;
    }
    return -1;
}

/* Reloads that fail: nothing changes (count, addresses, files), nothing
 * they bound is left (no descriptor, no socket file), and descriptors
 * handed in stay the embedder's. */
static void failed_reloads(void) {
    char dir[] = "/tmp/warpcore-abi-failed-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char kept[128], fresh[128], kept_address[140], fresh_address[140];
    snprintf(kept, sizeof kept, "%s/kept.sock", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.sock", dir);
    snprintf(kept_address, sizeof kept_address, "unix:%s", kept);
    snprintf(fresh_address, sizeof fresh_address, "unix:%s", fresh);
    warpcore_config *config = bare_config();
    CHECK_RESULT(add(config, kept_address), WARPCORE_RESULT_OK);
    warpcore_server *server = start_server(config);
    if (!server) return;
    int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int handed = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(handed, (struct sockaddr *)&any, sizeof any) == 0 && listen(handed, 8) == 0);
    char file_fd[32], handed_fd[32], own_fd[32], next_fd[32];
    snprintf(file_fd, sizeof file_fd, "fd://%d", file);
    snprintf(handed_fd, sizeof handed_fd, "fd://%d", handed);
    int own = listening_at(kept);
    CHECK(own >= 0);
    snprintf(own_fd, sizeof own_fd, "fd://%d", own);
    int before = next_descriptor();
    for (int round = 0; round < 5; round++) {
        const char *why = "";
        warpcore_result want = WARPCORE_RESULT_INVALID_ADDRESS;
        warpcore_config *next = bare_config();
        CHECK_RESULT(add(next, kept_address), WARPCORE_RESULT_OK);
        CHECK_RESULT(add(next, fresh_address), WARPCORE_RESULT_OK);
        CHECK_RESULT(add(next, handed_fd), WARPCORE_RESULT_OK);
        CHECK_RESULT(add(next, "127.0.0.1:0"), WARPCORE_RESULT_OK);
        switch (round) {
        case 0: /* not a socket */
            CHECK_RESULT(add(next, file_fd), WARPCORE_RESULT_OK);
            why = "not a socket";
            break;
        case 1: /* the server's own socket, by its number */
            CHECK_RESULT(add(next, own_fd), WARPCORE_RESULT_OK);
            why = "already";
            break;
        case 2: /* the number a socket of this very reload takes */
            snprintf(next_fd, sizeof next_fd, "fd://%d", next_descriptor());
            CHECK_RESULT(warpcore_config_clear_listeners(next), WARPCORE_RESULT_OK);
            CHECK_RESULT(add(next, kept_address), WARPCORE_RESULT_OK);
            CHECK_RESULT(add(next, fresh_address), WARPCORE_RESULT_OK);
            CHECK_RESULT(add(next, next_fd), WARPCORE_RESULT_OK);
            why = "already";
            break;
        case 3: /* a path named twice */
            CHECK_RESULT(add(next, fresh_address), WARPCORE_RESULT_OK);
            want = WARPCORE_RESULT_INVALID_ARGUMENT;
            why = "twice";
            break;
        default: /* another worker count */
            CHECK_RESULT(warpcore_config_set_workers(next, 3), WARPCORE_RESULT_OK);
            want = WARPCORE_RESULT_INVALID_ARGUMENT;
            why = "worker count";
            break;
        }
        CHECK_RESULT(warpcore_server_reload(server, next), want);
        if (!strstr(last_error(), why)) {
            fprintf(stderr, "round %d: message \"%s\" lacks \"%s\"\n", round, last_error(), why);
            CHECK(0);
        }
        warpcore_config_free(next);
        struct stat st;
        CHECK(warpcore_server_listener_count(server) == 1);
        CHECK(stat(fresh, &st) != 0 && errno == ENOENT);
        CHECK(next_descriptor() == before); /* nothing it bound is left open */
        CHECK(fcntl(handed, F_GETFD) != -1 && fcntl(file, F_GETFD) != -1);
        char body[512];
        unix_get(kept, body, sizeof body);
        CHECK(strcmp(body, "unix:") == 0);
    }
    CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
    warpcore_server_free(server);
    CHECK(fcntl(handed, F_GETFD) != -1); /* never the server's */
    close(handed);
    close(file);
    rmdir(dir);
}

/* systemd's variables for this process: counts that are not counts are
 * refused (and the variables removed); one socket at descriptor 3 is served
 * and closed by the server. */
static void systemd_ours(void) {
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    warpcore_config *config = bare_config();
    static const char *not_counts[] = {"-1", "65536", "3x", ""};
    for (size_t i = 0; i < sizeof not_counts / sizeof not_counts[0]; i++) {
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", not_counts[i], 1);
        uint32_t count = 99;
        CHECK_RESULT(warpcore_config_add_systemd_listeners(config, &count), WARPCORE_RESULT_INVALID_ARGUMENT);
        CHECK(count == 99); /* not written on an error */
        CHECK(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL);
    }
    setenv("LISTEN_PID", "not a pid", 1);
    setenv("LISTEN_FDS", "1", 1);
    uint32_t count = 99;
    CHECK_RESULT(warpcore_config_add_systemd_listeners(config, &count), WARPCORE_RESULT_OK);
    CHECK(count == 0 && getenv("LISTEN_FDS") != NULL);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    /* Descriptor 3, as systemd passes it (when this process has it free). */
    if (fcntl(3, F_GETFD) == -1) {
        int sock = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        CHECK(bind(sock, (struct sockaddr *)&any, sizeof any) == 0 && listen(sock, 8) == 0);
        if (sock != 3) {
            CHECK(dup2(sock, 3) == 3);
            close(sock);
        }
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_FDNAMES", "app", 1);
        CHECK_RESULT(warpcore_config_add_systemd_listeners(config, &count), WARPCORE_RESULT_OK);
        CHECK(count == 1 && getenv("LISTEN_FDNAMES") == NULL);
        warpcore_server *server = start_server(config);
        if (!server) return;
        CHECK(warpcore_server_listener_count(server) == 1);
        uint16_t port = warpcore_server_port(server);
        char reply[512];
        CHECK(port != 0 && http_exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", reply,
                                         sizeof reply) > 0);
        CHECK_RESULT(warpcore_server_shutdown(server, 1000), WARPCORE_RESULT_OK);
        warpcore_server_free(server);
        CHECK(fcntl(3, F_GETFD) == -1); /* the server's: closed */
    } else {
        fprintf(stderr, "systemd_ours: descriptor 3 is taken here; the socket part is left out\n");
        warpcore_config_free(config);
    }
}

int main(void) {
    bad_forms();
    bad_descriptors();
    systemd_not_ours();
    serving();
    relative_path();
    edges();
    failed_reloads();
    systemd_ours();
    return check_finish("listeners");
}
