/* Helpers shared by the example programs: argument parsing, error handling, waiting, data patterns, statistics. */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *progname = "example";
static const char *usage_text = "";

/* ---- command line --------------------------------------------------------- */

_Noreturn void usage_exit(void)
{
    fprintf(stderr, "usage: %s", usage_text);
    exit(2);
}

void parse_cmdline(int argc, char *argv[], const char *usage, int min_pos, int max_pos, struct cmdline *cl)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    bool have_mode = false;

    progname = slash ? slash + 1 : (argc > 0 ? argv[0] : progname);
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines show up even when a server is killed */
    usage_text = usage;
    memset(cl, 0, sizeof(*cl));

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: %s", usage_text);
            exit(0);
        } else if (strcmp(a, "--server") == 0 || strcmp(a, "--client") == 0) {
            if (have_mode)
                usage_exit();
            cl->mode = a[2] == 's' ? MODE_SERVER : MODE_CLIENT;
            have_mode = true;
        } else if (strncmp(a, "--", 2) == 0) {
            continue; /* a LibOS option such as --catnap: demi_init reads it */
        } else {
            if (cl->npos == (int)(sizeof(cl->pos) / sizeof(cl->pos[0])))
                usage_exit();
            cl->pos[cl->npos++] = a;
        }
    }
    if (!have_mode || cl->npos < min_pos || cl->npos > max_pos)
        usage_exit();
}

uint32_t parse_u32(const char *s, const char *what, uint32_t min, uint32_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "%s: bad %s '%s' (expected %u..%u)\n", progname, what, s, min, max);
        usage_exit();
    }
    return (uint32_t)v;
}

struct sockaddr_in parse_addr(const char *ip, const char *port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)parse_u32(port, "port", 1, 65535));
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        fprintf(stderr, "%s: bad IPv4 address '%s'\n", progname, ip);
        usage_exit();
    }
    return addr;
}

const char *addr_str(const struct sockaddr_in *addr, char *buf, size_t len)
{
    char ip[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof(ip)) == NULL)
        strcpy(ip, "?");
    snprintf(buf, len, "%s:%u", ip, ntohs(addr->sin_port));
    return buf;
}

/* ---- errors --------------------------------------------------------------- */

static void vreport(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

_Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    exit(1);
}

void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
}

void check_rc(int rc, const char *call)
{
    if (rc == 0)
        return;
    /* Name only the function: "demi_pop(&qt, qd)" -> "demi_pop". */
    int namelen = (int)strcspn(call, "(");
    die("%.*s: %s", namelen, call, strerror(rc));
}

/* ---- LibOS set-up and common operations ------------------------------------ */

void init_libos(int argc, char *argv[])
{
    struct demi_args args = { .argc = argc, .argv = argv, .callback = NULL };
    DEMI_CHECK(demi_init(&args));
}

static const char *opcode_name(demi_opcode_t opc)
{
    switch (opc) {
    case DEMI_OPC_PUSH: return "push";
    case DEMI_OPC_POP: return "pop";
    case DEMI_OPC_ACCEPT: return "accept";
    case DEMI_OPC_CONNECT: return "connect";
    case DEMI_OPC_CLOSE: return "close";
    case DEMI_OPC_FAILED: return "failed";
    default: return "invalid";
    }
}

bool wait_for(demi_qresult_t *qr, demi_qtoken_t qt, demi_opcode_t want, const char *what, int timeout_ms)
{
    struct timespec timeout = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000 };
    int rc = demi_wait(qr, qt, timeout_ms > 0 ? &timeout : NULL);
    if (rc == ETIMEDOUT)
        return false;
    check_rc(rc, "demi_wait");
    if (qr->qr_opcode == DEMI_OPC_FAILED)
        die("%s failed: %s", what, strerror((int)qr->qr_ret));
    if (qr->qr_opcode != want)
        die("%s: expected a %s completion, got %s", what, opcode_name(want), opcode_name(qr->qr_opcode));
    return true;
}

void wait_ok(demi_qresult_t *qr, demi_qtoken_t qt, demi_opcode_t want, const char *what, int timeout_s)
{
    if (!wait_for(qr, qt, want, what, timeout_s * 1000))
        die("%s: no progress for %d s, giving up", what, timeout_s);
}

int tcp_connect(const struct sockaddr_in *addr)
{
    int qd;
    demi_qtoken_t qt;
    demi_qresult_t qr;
    char buf[32], what[64];

    DEMI_CHECK(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
    DEMI_CHECK(demi_connect(&qt, qd, (const struct sockaddr *)addr, sizeof(*addr)));
    snprintf(what, sizeof(what), "connect to %s", addr_str(addr, buf, sizeof(buf)));
    wait_ok(&qr, qt, DEMI_OPC_CONNECT, what, OP_TIMEOUT_S);
    return qd;
}

int tcp_listen(const struct sockaddr_in *addr, int backlog)
{
    int qd;
    DEMI_CHECK(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
    DEMI_CHECK(demi_bind(qd, (const struct sockaddr *)addr, sizeof(*addr)));
    DEMI_CHECK(demi_listen(qd, backlog));
    return qd;
}

int tcp_accept(int listen_qd, struct sockaddr_in *peer)
{
    demi_qtoken_t qt;
    demi_qresult_t qr;
    DEMI_CHECK(demi_accept(&qt, listen_qd));
    wait_ok(&qr, qt, DEMI_OPC_ACCEPT, "accept", 0);
    *peer = qr.qr_value.ares.addr;
    return qr.qr_value.ares.qd;
}

int udp_bind(const struct sockaddr_in *addr)
{
    int qd;
    DEMI_CHECK(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0));
    DEMI_CHECK(demi_bind(qd, (const struct sockaddr *)addr, sizeof(*addr)));
    return qd;
}

void recv_exact(int qd, uint8_t *dst, size_t len)
{
    size_t got = 0;
    while (got < len) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        DEMI_CHECK(demi_pop(&qt, qd));
        wait_ok(&qr, qt, DEMI_OPC_POP, "pop", OP_TIMEOUT_S);

        demi_sgarray_t *sga = &qr.qr_value.sga;
        size_t n = sga_len(sga);
        if (n == 0)
            die("peer closed the connection after %zu of %zu bytes", got, len);
        if (n > len - got)
            die("peer sent %zu bytes more than the %zu expected", n - (len - got), len);
        got += sga_copy(dst + got, sga);
        free_sga(sga);
    }
}

demi_sgarray_t alloc_sga(size_t size)
{
    demi_sgarray_t sga = demi_sgaalloc(size);
    if (sga.sga_numsegs == 0)
        die("demi_sgaalloc: cannot allocate %zu bytes", size);
    return sga;
}

void free_sga(demi_sgarray_t *sga)
{
    DEMI_CHECK(demi_sgafree(sga));
}

size_t sga_len(const demi_sgarray_t *sga)
{
    size_t n = 0;
    for (uint32_t i = 0; i < sga->sga_numsegs; i++)
        n += sga->sga_segs[i].sgaseg_len;
    return n;
}

void note_sender(const struct sockaddr_in *from, const struct sockaddr_in *expected, bool *warned)
{
    char a[32], b[32];
    if (*warned || (from->sin_addr.s_addr == expected->sin_addr.s_addr && from->sin_port == expected->sin_port))
        return;
    warn("datagram from %s, expected %s; accepting it anyway", addr_str(from, a, sizeof(a)),
         addr_str(expected, b, sizeof(b)));
    *warned = true;
}

size_t sga_copy(uint8_t *dst, const demi_sgarray_t *sga)
{
    size_t n = 0;
    for (uint32_t i = 0; i < sga->sga_numsegs; i++) {
        memcpy(dst + n, sga->sga_segs[i].sgaseg_buf, sga->sga_segs[i].sgaseg_len);
        n += sga->sga_segs[i].sgaseg_len;
    }
    return n;
}

/* ---- test data --------------------------------------------------------------- */

void fill_pattern(uint8_t *buf, size_t len, uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern_byte(offset + i);
}

long check_pattern(const uint8_t *buf, size_t len, uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != pattern_byte(offset + i))
            return (long)i;
    return -1;
}

void fill_datagram(uint8_t *buf, size_t size, uint32_t seq)
{
    uint32_t be = htonl(seq);
    memcpy(buf, &be, sizeof(be));
    fill_pattern(buf + 4, size - 4, (uint64_t)seq * size + 4);
}

const char *check_datagram(const uint8_t *buf, size_t len, size_t size, uint32_t *seq)
{
    uint32_t be;
    if (len != size)
        return "wrong length";
    memcpy(&be, buf, sizeof(be));
    if (check_pattern(buf + 4, size - 4, (uint64_t)ntohl(be) * size + 4) >= 0)
        return "corrupt contents";
    *seq = ntohl(be);
    return NULL;
}

/* ---- time and statistics --------------------------------------------------- */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static uint64_t percentile(const uint64_t *sorted, size_t n, unsigned p)
{
    size_t rank = (n * p + 99) / 100; /* ceil(n * p / 100) */
    return sorted[rank > 0 ? rank - 1 : 0];
}

void print_latency(const char *label, uint64_t *samples_ns, size_t n)
{
    if (n == 0) {
        printf("%s: no samples\n", label);
        return;
    }
    qsort(samples_ns, n, sizeof(samples_ns[0]), cmp_u64);
    printf("%s: n=%zu min %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n", label, n,
           samples_ns[0] / 1e3, percentile(samples_ns, n, 50) / 1e3,
           percentile(samples_ns, n, 99) / 1e3, samples_ns[n - 1] / 1e3);
}

void print_throughput(const char *label, uint64_t bytes, uint64_t elapsed_ns)
{
    double s = elapsed_ns > 0 ? elapsed_ns / 1e9 : 1e-9;
    printf("%s: %llu bytes in %.1f ms, %.1f MB/s (%.3f Gbit/s)\n", label, (unsigned long long)bytes,
           elapsed_ns / 1e6, bytes / s / 1e6, bytes * 8 / s / 1e9);
}
