/*
 * TLS listeners through the C API (WARPCORE_0.3, and
 * warpcore_tls_set_require_sni_match of WARPCORE_0.4), under AddressSanitizer:
 * every warpcore_tls_* call's misuse answered with its documented code (bad
 * PEM, a missing key, a key of another certificate, unreadable files, NULLs,
 * unknown modes and versions, ALPN other than http/1.1), a setup freed after
 * it was added (the config keeps its copy), a server served over TLS (curl
 * as the client) whose request view shows TLS, SNI and ALPN, a certificate
 * file broken before start refused with WARPCORE_RESULT_TLS and a message
 * naming it, a reload that installs new certificates and one whose files are
 * broken (refused, the old ones serving on), the TLS counters at the end
 * of warpcore_stats, and a reload that refuses clients asking for no name
 * (curl to the IP address) while localhost is served. Certificates are made at test time with openssl(1).
 */
#define _POSIX_C_SOURCE 200809L
#include <sys/stat.h>

#include "check.h"

static char dir[256];

static void path_of(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

/* An ECDSA P-256 certificate for localhost: NAME.pem and NAME.key. */
static int make_cert(const char *name) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost "
             "-keyout %s/%s.key -out %s/%s.pem >/dev/null 2>&1",
             dir, name, dir, name);
    return system(cmd) == 0;
}

static void write_file(const char *name, const char *text) {
    char path[512];
    path_of(path, sizeof path, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void copy_file(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp %s/%s %s/%s", dir, from, dir, to);
    CHECK(system(cmd) == 0);
}

static char *read_all(const char *name, size_t *len) {
    char path[512];
    path_of(path, sizeof path, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(65536);
    *len = fread(buf, 1, 65535, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static warpcore_result add_files(warpcore_tls *tls, const char *cert, const char *key) {
    char c[512], k[512];
    path_of(c, sizeof c, cert);
    path_of(k, sizeof k, key);
    return warpcore_tls_add_cert_files(tls, (const uint8_t *)c, strlen(c), (const uint8_t *)k, strlen(k));
}

static void misuse(void) {
    CHECK_RESULT(warpcore_tls_new(NULL), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_tls_free(NULL);
    warpcore_tls *tls = NULL;
    CHECK_RESULT(warpcore_tls_new(&tls), WARPCORE_RESULT_OK);

    /* Files. */
    CHECK_RESULT(add_files(NULL, "a.pem", "a.key"), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_add_cert_files(tls, NULL, 3, (const uint8_t *)"x", 1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_add_cert_files(tls, (const uint8_t *)"x", 1, NULL, 3), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_add_cert_files(tls, (const uint8_t *)"", 0, (const uint8_t *)"x", 1),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(add_files(tls, "missing.pem", "a.key"), WARPCORE_RESULT_TLS);
    CHECK(strstr(last_error(), "missing.pem") != NULL);
    CHECK_RESULT(add_files(tls, "garbage.pem", "a.key"), WARPCORE_RESULT_TLS);
    CHECK(strstr(last_error(), "no certificate") != NULL);
    /* The key file holds a certificate, no key. */
    CHECK_RESULT(add_files(tls, "a.pem", "a.pem"), WARPCORE_RESULT_TLS);
    CHECK(strstr(last_error(), "no private key") != NULL);
    /* Another certificate's key. */
    CHECK_RESULT(add_files(tls, "a.pem", "b.key"), WARPCORE_RESULT_TLS);
    CHECK(strstr(last_error(), "is not the private key") != NULL);

    /* Memory. */
    size_t cert_len = 0, key_len = 0, other_len = 0;
    char *cert = read_all("a.pem", &cert_len), *key = read_all("a.key", &key_len), *other = read_all("b.key", &other_len);
    CHECK(cert && key && other);
    CHECK_RESULT(warpcore_tls_add_cert_pem(NULL, (const uint8_t *)cert, cert_len, (const uint8_t *)key, key_len),
                 WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_add_cert_pem(tls, NULL, 5, (const uint8_t *)key, key_len), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_add_cert_pem(tls, (const uint8_t *)"junk", 4, (const uint8_t *)key, key_len),
                 WARPCORE_RESULT_TLS);
    CHECK_RESULT(warpcore_tls_add_cert_pem(tls, (const uint8_t *)cert, cert_len, NULL, 0), WARPCORE_RESULT_TLS);
    CHECK_RESULT(warpcore_tls_add_cert_pem(tls, (const uint8_t *)cert, cert_len, (const uint8_t *)other, other_len),
                 WARPCORE_RESULT_TLS);

    /* A setup without a certificate cannot make a listener. */
    warpcore_config *config = NULL;
    CHECK_RESULT(warpcore_config_new(&config), WARPCORE_RESULT_OK);
    static const char address[] = "127.0.0.1:0";
    CHECK_RESULT(warpcore_config_add_tls_listener(config, (const uint8_t *)address, sizeof address - 1, tls),
                 WARPCORE_RESULT_TLS);
    CHECK_RESULT(warpcore_tls_add_cert_pem(tls, (const uint8_t *)cert, cert_len, (const uint8_t *)key, key_len),
                 WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_add_tls_listener(NULL, (const uint8_t *)address, sizeof address - 1, tls),
                 WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_add_tls_listener(config, (const uint8_t *)address, sizeof address - 1, NULL),
                 WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_add_tls_listener(config, NULL, 4, tls), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_config_add_tls_listener(config, (const uint8_t *)"nohost", 6, tls),
                 WARPCORE_RESULT_INVALID_ADDRESS);

    /* ALPN. */
    warpcore_str h2[] = {wstr("h2"), wstr("http/1.1")};
    CHECK_RESULT(warpcore_tls_set_alpn(tls, h2, 2), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_alpn(tls, h2 + 1, 1), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_alpn(tls, NULL, 2), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_str null_name = {NULL, 3};
    CHECK_RESULT(warpcore_tls_set_alpn(tls, &null_name, 1), WARPCORE_RESULT_NULL_ARGUMENT);
    warpcore_str empty = {NULL, 0};
    CHECK_RESULT(warpcore_tls_set_alpn(tls, &empty, 1), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_alpn(NULL, h2 + 1, 1), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_alpn(tls, NULL, 0), WARPCORE_RESULT_OK);

    /* Client certificates. */
    CHECK_RESULT(warpcore_tls_set_client_auth_pem(tls, 7, (const uint8_t *)cert, cert_len),
                 WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_client_auth_pem(tls, WARPCORE_TLS_CLIENT_AUTH_REQUIRED, (const uint8_t *)"x", 1),
                 WARPCORE_RESULT_TLS);
    CHECK_RESULT(warpcore_tls_set_client_auth_pem(tls, WARPCORE_TLS_CLIENT_AUTH_REQUIRED, NULL, 4),
                 WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_client_auth_pem(tls, WARPCORE_TLS_CLIENT_AUTH_NONE, NULL, 0), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_client_auth_pem(NULL, WARPCORE_TLS_CLIENT_AUTH_NONE, NULL, 0),
                 WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_client_auth_file(tls, WARPCORE_TLS_CLIENT_AUTH_OPTIONAL, (const uint8_t *)"/nonexistent", 12),
                 WARPCORE_RESULT_TLS);
    CHECK_RESULT(warpcore_tls_set_client_auth_file(tls, WARPCORE_TLS_CLIENT_AUTH_OPTIONAL, NULL, 4),
                 WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_client_auth_file(tls, 3, NULL, 0), WARPCORE_RESULT_INVALID_ARGUMENT);

    /* The rest. */
    CHECK_RESULT(warpcore_tls_set_min_version(tls, 0x0302), WARPCORE_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_min_version(tls, 0x0304), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_min_version(tls, 0x0303), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_min_version(NULL, 0x0303), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_session_tickets(NULL, true), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_ktls(NULL, true), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_require_sni_match(NULL, true), WARPCORE_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(warpcore_tls_set_require_sni_match(tls, true), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_require_sni_match(tls, false), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_session_tickets(tls, false), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_ktls(tls, false), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_add_cert_files(tls, (const uint8_t *)"/nonexistent", 12, (const uint8_t *)"/x", 2),
                 WARPCORE_RESULT_TLS);
    CHECK(strcmp(warpcore_result_str(WARPCORE_RESULT_TLS), "unknown result code") != 0);
    warpcore_config_free(config);
    warpcore_tls_free(tls);
    free(cert);
    free(key);
    free(other);
}

static void tls_handler(void *userdata, const warpcore_request *req, warpcore_response *res) {
    (void)userdata;
    char text[256];
    int n = snprintf(text, sizeof text, "tls=%d version=%04x sni=%.*s alpn=%.*s certs=%zu", req->tls,
                     (unsigned)req->tls_version, (int)req->tls_sni.len, (const char *)req->tls_sni.ptr,
                     (int)req->tls_alpn.len, (const char *)req->tls_alpn.ptr, req->tls_peer_cert_count);
    warpcore_respond(res, 200, NULL, 0, (const uint8_t *)text, (size_t)n);
}

static void run_curl(const char *cmd, char *out, size_t cap) {
    out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) return;
    size_t got = fread(out, 1, cap - 1, p);
    out[got] = 0;
    pclose(p);
}

/* GET / with curl over TLS to localhost:port, trusting NAME.pem; the body, or "". */
static void curl_get(uint16_t port, const char *trust, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 10 --cacert %s/%s.pem --resolve localhost:%u:127.0.0.1 https://localhost:%u/",
             dir, trust, (unsigned)port, (unsigned)port);
    run_curl(cmd, out, cap);
}

/* GET https://127.0.0.1:port/ (no SNI: curl sends none for an address), not verifying. */
static void curl_get_by_address(uint16_t port, char *out, size_t cap) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -s -k --max-time 10 https://127.0.0.1:%u/", (unsigned)port);
    run_curl(cmd, out, cap);
}

static void serve(void) {
    warpcore_tls *tls = NULL;
    CHECK_RESULT(warpcore_tls_new(&tls), WARPCORE_RESULT_OK);
    copy_file("a.pem", "live.pem");
    copy_file("a.key", "live.key");
    CHECK_RESULT(add_files(tls, "live.pem", "live.key"), WARPCORE_RESULT_OK);
    warpcore_config *config = local_config(2, tls_handler, NULL);
    static const char address[] = "127.0.0.1:0";
    /* The listen address becomes TLS. */
    CHECK_RESULT(warpcore_config_add_tls_listener(config, (const uint8_t *)address, sizeof address - 1, tls),
                 WARPCORE_RESULT_OK);
    /* The config keeps its copy. */
    warpcore_tls_free(tls);

    /* A certificate file broken before start. */
    write_file("live.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    warpcore_server *server = NULL;
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_TLS);
    CHECK(strstr(last_error(), "live.key") != NULL);
    CHECK(server == NULL);
    copy_file("a.key", "live.key");
    CHECK_RESULT(warpcore_server_start(config, &server), WARPCORE_RESULT_OK);
    if (!server) {
        warpcore_config_free(config);
        return;
    }
    CHECK(warpcore_server_listener_count(server) == 1);
    uint16_t port = warpcore_server_port(server);
    char body[512];
    curl_get(port, "a", body, sizeof body);
    CHECK(strcmp(body, "tls=1 version=0304 sni=localhost alpn=http/1.1 certs=0") == 0);
    if (strcmp(body, "tls=1 version=0304 sni=localhost alpn=http/1.1 certs=0") != 0) fprintf(stderr, "got: %s\n", body);

    /* Broken files at reload: refused, the old certificate serves on. */
    write_file("live.pem", "garbage\n");
    CHECK_RESULT(warpcore_server_reload(server, config), WARPCORE_RESULT_TLS);
    CHECK(strstr(last_error(), "live.pem") != NULL);
    curl_get(port, "a", body, sizeof body);
    CHECK(strncmp(body, "tls=1", 5) == 0);
    /* New files at reload: the new certificate serves. */
    copy_file("b.pem", "live.pem");
    copy_file("b.key", "live.key");
    CHECK_RESULT(warpcore_server_reload(server, config), WARPCORE_RESULT_OK);
    curl_get(port, "b", body, sizeof body);
    CHECK(strncmp(body, "tls=1", 5) == 0);
    curl_get(port, "a", body, sizeof body);
    CHECK(body[0] == 0); /* a's certificate is no longer presented */

    warpcore_stats stats = WARPCORE_STATS_INIT;
    CHECK_RESULT(warpcore_server_stats(server, &stats), WARPCORE_RESULT_OK);
    CHECK(stats.size == sizeof stats);
    CHECK(stats.tls_handshakes == 3);
    CHECK(stats.tls_handshake_failures == 1);
    CHECK(stats.tls_kernel <= stats.tls_handshakes);

    /* Names required: a client that asks for none is refused, localhost is served. */
    curl_get_by_address(port, body, sizeof body);
    CHECK(strncmp(body, "tls=1 version=0304 sni= ", 24) == 0);
    CHECK_RESULT(warpcore_tls_new(&tls), WARPCORE_RESULT_OK);
    CHECK_RESULT(add_files(tls, "live.pem", "live.key"), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_tls_set_require_sni_match(tls, true), WARPCORE_RESULT_OK);
    CHECK_RESULT(warpcore_config_add_tls_listener(config, (const uint8_t *)address, sizeof address - 1, tls),
                 WARPCORE_RESULT_OK);
    warpcore_tls_free(tls);
    CHECK_RESULT(warpcore_server_reload(server, config), WARPCORE_RESULT_OK);
    curl_get_by_address(port, body, sizeof body);
    CHECK(body[0] == 0);
    curl_get(port, "b", body, sizeof body);
    CHECK(strncmp(body, "tls=1 version=0304 sni=localhost", 32) == 0);
    CHECK_RESULT(warpcore_server_stats(server, &stats), WARPCORE_RESULT_OK);
    CHECK(stats.tls_handshake_failures == 2);

    warpcore_server_shutdown(server, 1000);
    /* After shutdown a reload is refused, TLS or not. */
    CHECK_RESULT(warpcore_server_reload(server, config), WARPCORE_RESULT_SHUTTING_DOWN);
    warpcore_server_free(server);
    warpcore_config_free(config);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/warpcore-abi-tls-%d", (int)getpid());
    mkdir(dir, 0700);
    if (!make_cert("a") || !make_cert("b")) {
        fprintf(stderr, "openssl(1) could not make test certificates\n");
        return 1;
    }
    write_file("garbage.pem", "not a certificate\n");
    misuse();
    serve();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_finish("tls");
}
