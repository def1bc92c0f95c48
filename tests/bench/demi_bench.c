/*
 * demi-bench: 64 B TCP ping-pong latency and 64 KiB stream throughput over
 * 127.0.0.1, for catnap (demi_push/pop/wait) and for plain blocking Linux
 * sockets with the same loop shape. Server and client of each backend run in
 * two forked processes, so the two ends never share a LibOS instance; the
 * parent never brings a LibOS up. Prints one "RESULT" line per backend for
 * scripts/bench.sh to parse.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>

enum { PIN_NONE, PIN_SPLIT, PIN_SAME };
static const char *const pin_names[] = {"none", "split", "same"};

/* ---- options and results ------------------------------------------------------ */

static struct {
    uint32_t iters;      /* measured ping-pong round trips */
    uint32_t warmup;     /* round trips before measuring */
    uint32_t msg;        /* ping-pong message size */
    uint64_t tput_bytes; /* bytes streamed for throughput */
    uint32_t chunk;      /* bytes per push / send */
    int timeout_s;       /* whole run of one backend */
    int pin;             /* PIN_NONE, PIN_SPLIT (server and client on two CPUs) or PIN_SAME (one CPU) */
} opt = {
    .iters = 20000,
    .warmup = 2000,
    .msg = 64,
    .tput_bytes = 2ull << 30,
    .chunk = 64u << 10,
    .timeout_s = 120,
};

/* What the client sends back to the parent through a pipe. */
struct result {
    int ok;
    double p50_us, p90_us, p99_us, p999_us, mean_us, min_us;
    double lat_cpu;     /* client CPU seconds per wall second during the ping-pong */
    double tput_mbps;   /* MB/s, 1 MB = 10^6 bytes */
    double tput_s;
    double tput_cpu;    /* client CPU seconds per wall second during the stream */
    char err[200];
};

static int result_fd = -1; /* client's end of the result pipe */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* End a child with a message (and, in the client, a failed result for the parent). */
__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    struct result r;
    memset(&r, 0, sizeof(r));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.err, sizeof(r.err), fmt, ap);
    va_end(ap);
    fprintf(stderr, "demi-bench [%d]: %s\n", (int)getpid(), r.err);
    if (result_fd >= 0) {
        ssize_t n = write(result_fd, &r, sizeof(r));
        (void)n;
    }
    _exit(1);
}

#define DEMI_OK(call)                                                                      \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ != 0)                                                                      \
            fail("%s: %s", #call, strerror(rc_));                                          \
    } while (0)

#define SYS_OK(cond, what)                                                                 \
    do {                                                                                   \
        if (!(cond))                                                                       \
            fail("%s: %s", what, strerror(errno));                                         \
    } while (0)

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof(a);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)n);
    if (i >= n)
        i = n - 1;
    return (double)sorted[i] / 1e3;
}

static void fill_latency(struct result *r, uint64_t *s, size_t n)
{
    qsort(s, n, sizeof(*s), cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)s[i];
    r->mean_us = sum / (double)n / 1e3;
    r->min_us = (double)s[0] / 1e3;
    r->p50_us = pct_us(s, n, 0.50);
    r->p90_us = pct_us(s, n, 0.90);
    r->p99_us = pct_us(s, n, 0.99);
    r->p999_us = pct_us(s, n, 0.999);
}

/* Both roles of one backend: the ping-pong connection first, then the stream connection. */
struct backend {
    const char *name;
    void (*server)(uint16_t port, int ready_fd);
    void (*client)(uint16_t port, struct result *r);
};

/* ---- Linux sockets ------------------------------------------------------------- */

static void lx_nodelay(int fd)
{
    int one = 1;
    SYS_OK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0, "TCP_NODELAY");
}

static void lx_send_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        SYS_OK(n > 0, "send");
        buf += n;
        len -= (size_t)n;
    }
}

static void lx_recv_all(int fd, uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        SYS_OK(n >= 0, "recv");
        if (n == 0)
            fail("recv: end of stream with %zu bytes to go", len);
        buf += n;
        len -= (size_t)n;
    }
}

static void lx_server(uint16_t port, int ready_fd)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    SYS_OK(lfd >= 0, "socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = loopback(port);
    SYS_OK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
    SYS_OK(listen(lfd, 16) == 0, "listen");
    char c = 1;
    SYS_OK(write(ready_fd, &c, 1) == 1, "ready");

    /* Ping-pong: echo whatever arrives until end of stream. */
    int fd = accept(lfd, NULL, NULL);
    SYS_OK(fd >= 0, "accept");
    lx_nodelay(fd);
    uint8_t *buf = malloc(opt.chunk);
    if (buf == NULL)
        fail("out of memory");
    for (;;) {
        ssize_t n = recv(fd, buf, opt.msg, 0);
        if (n < 0 && errno == EINTR)
            continue;
        SYS_OK(n >= 0, "recv");
        if (n == 0)
            break;
        lx_send_all(fd, buf, (size_t)n);
    }
    close(fd);

    /* Stream: an 8-byte length, that many bytes, then a 1-byte acknowledgement. */
    fd = accept(lfd, NULL, NULL);
    SYS_OK(fd >= 0, "accept");
    lx_nodelay(fd);
    uint64_t total;
    lx_recv_all(fd, (uint8_t *)&total, sizeof(total));
    uint64_t got = 0;
    while (got < total) {
        ssize_t n = recv(fd, buf, opt.chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        SYS_OK(n > 0, "recv (stream)");
        got += (uint64_t)n;
    }
    lx_send_all(fd, (const uint8_t *)&c, 1);
    /* Wait for the client to close so the ack is not cut off. */
    while (recv(fd, &c, 1, 0) < 0 && errno == EINTR) {
    }
    close(fd);
    close(lfd);
    free(buf);
}

static int lx_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    SYS_OK(fd >= 0, "socket");
    struct sockaddr_in a = loopback(port);
    SYS_OK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
    lx_nodelay(fd);
    return fd;
}

static void lx_client(uint16_t port, struct result *r)
{
    uint64_t *samples = calloc(opt.iters, sizeof(*samples));
    uint8_t *buf = malloc(opt.chunk);
    if (samples == NULL || buf == NULL)
        fail("out of memory");
    memset(buf, 0xa5, opt.chunk);

    int fd = lx_connect(port);
    uint8_t in[4096];
    double c0 = 0, w0 = 0;
    for (uint32_t i = 0; i < opt.warmup + opt.iters; i++) {
        if (i == opt.warmup) {
            c0 = cpu_s();
            w0 = (double)now_ns() / 1e9;
        }
        uint64_t t0 = now_ns();
        lx_send_all(fd, buf, opt.msg);
        lx_recv_all(fd, in, opt.msg);
        uint64_t t1 = now_ns();
        if (i >= opt.warmup)
            samples[i - opt.warmup] = t1 - t0;
    }
    r->lat_cpu = (cpu_s() - c0) / ((double)now_ns() / 1e9 - w0);
    close(fd);
    fill_latency(r, samples, opt.iters);

    fd = lx_connect(port);
    uint64_t total = opt.tput_bytes;
    double tc0 = cpu_s();
    uint64_t t0 = now_ns();
    lx_send_all(fd, (const uint8_t *)&total, sizeof(total));
    for (uint64_t sent = 0; sent < total;) {
        size_t n = total - sent < opt.chunk ? (size_t)(total - sent) : opt.chunk;
        lx_send_all(fd, buf, n);
        sent += n;
    }
    lx_recv_all(fd, in, 1);
    uint64_t t1 = now_ns();
    r->tput_s = (double)(t1 - t0) / 1e9;
    r->tput_mbps = (double)total / 1e6 / r->tput_s;
    r->tput_cpu = (cpu_s() - tc0) / r->tput_s;
    close(fd);
    free(samples);
    free(buf);
    r->ok = 1;
}

/* ---- catnap through demi_* ------------------------------------------------------- */

static void dm_init(void)
{
    setenv("DEMI_LIBOS", "catnap", 1);
    char arg0[] = "demi-bench";
    char *argv[] = {arg0, NULL};
    struct demi_args args;
    memset(&args, 0, sizeof(args));
    args.argc = 1;
    args.argv = argv;
    DEMI_OK(demi_init(&args));
}

static void dm_nodelay(int qd)
{
    int one = 1;
    DEMI_OK(demi_setsockopt(qd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
}

/* Wait (forever: the parent's timeout kills a stuck child) for an operation of kind want. */
static void dm_wait(demi_qresult_t *qr, demi_qtoken_t qt, demi_opcode_t want, const char *what)
{
    DEMI_OK(demi_wait(qr, qt, NULL));
    if (qr->qr_opcode != want)
        fail("%s: opcode %d, qr_ret %s", what, (int)qr->qr_opcode, strerror((int)qr->qr_ret));
}

static void dm_push(int qd, demi_sgarray_t *sga)
{
    demi_qtoken_t qt;
    demi_qresult_t qr;
    DEMI_OK(demi_push(&qt, qd, sga));
    dm_wait(&qr, qt, DEMI_OPC_PUSH, "push");
}

/* Pop once; returns the popped sga (the caller frees it). */
static demi_sgarray_t dm_pop(int qd)
{
    demi_qtoken_t qt;
    demi_qresult_t qr;
    DEMI_OK(demi_pop(&qt, qd));
    dm_wait(&qr, qt, DEMI_OPC_POP, "pop");
    return qr.qr_value.sga;
}

/* Pop until len bytes have arrived (copied into dst if not NULL). */
static void dm_pop_exact(int qd, uint8_t *dst, size_t len)
{
    size_t got = 0;
    while (got < len) {
        demi_sgarray_t s = dm_pop(qd);
        uint32_t n = s.sga_segs[0].sgaseg_len;
        if (n == 0)
            fail("pop: end of stream with %zu bytes to go", len - got);
        if (got + n > len)
            fail("pop: %zu bytes more than expected", got + n - len);
        if (dst != NULL)
            memcpy(dst + got, s.sga_segs[0].sgaseg_buf, n);
        got += n;
        DEMI_OK(demi_sgafree(&s));
    }
}

static demi_sgarray_t dm_alloc(size_t len)
{
    demi_sgarray_t s = demi_sgaalloc(len);
    if (s.sga_numsegs != 1)
        fail("demi_sgaalloc(%zu) failed", len);
    memset(s.sga_segs[0].sgaseg_buf, 0xa5, len);
    s.sga_segs[0].sgaseg_len = (uint32_t)len;
    return s;
}

static int dm_accept(int lqd)
{
    demi_qtoken_t qt;
    demi_qresult_t qr;
    DEMI_OK(demi_accept(&qt, lqd));
    dm_wait(&qr, qt, DEMI_OPC_ACCEPT, "accept");
    dm_nodelay(qr.qr_value.ares.qd);
    return qr.qr_value.ares.qd;
}

static void dm_server(uint16_t port, int ready_fd)
{
    dm_init();
    int lqd;
    DEMI_OK(demi_socket(&lqd, AF_INET, SOCK_STREAM, 0));
    int one = 1;
    DEMI_OK(demi_setsockopt(lqd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
    struct sockaddr_in a = loopback(port);
    DEMI_OK(demi_bind(lqd, (const struct sockaddr *)&a, sizeof(a)));
    DEMI_OK(demi_listen(lqd, 16));
    char c = 1;
    SYS_OK(write(ready_fd, &c, 1) == 1, "ready");

    /* Ping-pong: push back each popped sga until end of stream. */
    int qd = dm_accept(lqd);
    for (;;) {
        demi_sgarray_t s = dm_pop(qd);
        if (s.sga_segs[0].sgaseg_len == 0) {
            DEMI_OK(demi_sgafree(&s));
            break;
        }
        dm_push(qd, &s);
        DEMI_OK(demi_sgafree(&s));
    }
    DEMI_OK(demi_close(qd));

    /* Stream: an 8-byte length, that many bytes, then a 1-byte acknowledgement. */
    qd = dm_accept(lqd);
    /* A pop hands out whatever the stream holds: the header may come with data behind it. */
    uint8_t hdr[sizeof(uint64_t)];
    size_t hlen = 0;
    uint64_t total = UINT64_MAX, got = 0;
    while (got < total) {
        demi_sgarray_t s = dm_pop(qd);
        uint32_t n = s.sga_segs[0].sgaseg_len;
        if (n == 0)
            fail("stream ended after %" PRIu64 " bytes", got);
        uint32_t h = 0;
        if (hlen < sizeof(hdr)) {
            h = n < sizeof(hdr) - hlen ? n : (uint32_t)(sizeof(hdr) - hlen);
            memcpy(hdr + hlen, s.sga_segs[0].sgaseg_buf, h);
            hlen += h;
            if (hlen == sizeof(hdr))
                memcpy(&total, hdr, sizeof(total));
        }
        got += n - h;
        DEMI_OK(demi_sgafree(&s));
    }
    if (got != total)
        fail("stream: %" PRIu64 " bytes for %" PRIu64, got, total);
    demi_sgarray_t ack = dm_alloc(1);
    dm_push(qd, &ack);
    DEMI_OK(demi_sgafree(&ack));
    /* Wait for the client to close so the ack is not cut off. */
    demi_sgarray_t s = dm_pop(qd);
    DEMI_OK(demi_sgafree(&s));
    DEMI_OK(demi_close(qd));
    DEMI_OK(demi_close(lqd));
}

static int dm_connect(uint16_t port)
{
    int qd;
    DEMI_OK(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
    struct sockaddr_in a = loopback(port);
    demi_qtoken_t qt;
    demi_qresult_t qr;
    DEMI_OK(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)));
    dm_wait(&qr, qt, DEMI_OPC_CONNECT, "connect");
    dm_nodelay(qd);
    return qd;
}

static void dm_client(uint16_t port, struct result *r)
{
    dm_init();
    uint64_t *samples = calloc(opt.iters, sizeof(*samples));
    if (samples == NULL)
        fail("out of memory");

    int qd = dm_connect(port);
    /* One sga reused for every ping: a push completes before the next one starts. */
    demi_sgarray_t ping = dm_alloc(opt.msg);
    double c0 = 0, w0 = 0;
    for (uint32_t i = 0; i < opt.warmup + opt.iters; i++) {
        if (i == opt.warmup) {
            c0 = cpu_s();
            w0 = (double)now_ns() / 1e9;
        }
        uint64_t t0 = now_ns();
        dm_push(qd, &ping);
        dm_pop_exact(qd, NULL, opt.msg);
        uint64_t t1 = now_ns();
        if (i >= opt.warmup)
            samples[i - opt.warmup] = t1 - t0;
    }
    r->lat_cpu = (cpu_s() - c0) / ((double)now_ns() / 1e9 - w0);
    DEMI_OK(demi_sgafree(&ping));
    DEMI_OK(demi_close(qd));
    fill_latency(r, samples, opt.iters);

    qd = dm_connect(port);
    uint64_t total = opt.tput_bytes;
    demi_sgarray_t hdr = dm_alloc(sizeof(total));
    memcpy(hdr.sga_segs[0].sgaseg_buf, &total, sizeof(total));
    demi_sgarray_t chunk = dm_alloc(opt.chunk);
    double tc0 = cpu_s();
    uint64_t t0 = now_ns();
    dm_push(qd, &hdr);
    for (uint64_t sent = 0; sent < total;) {
        uint32_t n = total - sent < opt.chunk ? (uint32_t)(total - sent) : opt.chunk;
        chunk.sga_segs[0].sgaseg_len = n;
        dm_push(qd, &chunk);
        sent += n;
    }
    dm_pop_exact(qd, NULL, 1);
    uint64_t t1 = now_ns();
    r->tput_s = (double)(t1 - t0) / 1e9;
    r->tput_mbps = (double)total / 1e6 / r->tput_s;
    r->tput_cpu = (cpu_s() - tc0) / r->tput_s;
    chunk.sga_segs[0].sgaseg_len = opt.chunk;
    DEMI_OK(demi_sgafree(&chunk));
    DEMI_OK(demi_sgafree(&hdr));
    DEMI_OK(demi_close(qd));
    free(samples);
    r->ok = 1;
}

/* ---- driver ----------------------------------------------------------------------- */

static const struct backend backends[] = {
    {"linux", lx_server, lx_client},
    {"catnap", dm_server, dm_client},
};

static const struct backend *find_backend(const char *name)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (strcmp(backends[i].name, name) == 0)
            return &backends[i];
    return NULL;
}

/* Wait for pid until deadline; kill it (by PID) past the deadline. Returns its status or -1. */
static int reap(pid_t pid, uint64_t deadline)
{
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ns() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            return -1;
        }
        usleep(5000);
    }
}

/* The first two CPUs this process may run on (cpu[1] == -1 if there is only one). */
static void pick_cpus(int cpu[2])
{
    cpu_set_t set;
    cpu[0] = cpu[1] = -1;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return;
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &set))
            cpu[k++] = c;
}

/* Fork a role, pinned to `cpu` unless it is -1. */
static pid_t spawn(void (*fn)(void *), void *arg, int cpu)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            if (sched_setaffinity(0, sizeof(set), &set) < 0)
                fail("sched_setaffinity(cpu %d): %s", cpu, strerror(errno));
        }
        fn(arg);
        _exit(0);
    }
    return pid;
}

struct role_arg {
    const struct backend *b;
    uint16_t port;
    int ready[2];
    int results[2];
};

static void server_main(void *p)
{
    struct role_arg *a = p;
    close(a->ready[0]);
    close(a->results[0]);
    close(a->results[1]);
    a->b->server(a->port, a->ready[1]);
}

static void client_main(void *p)
{
    struct role_arg *a = p;
    close(a->ready[1]);
    close(a->results[0]);
    result_fd = a->results[1];
    /* The server writes one byte once it listens. */
    struct pollfd pfd = {a->ready[0], POLLIN, 0};
    char c;
    if (poll(&pfd, 1, 10000) != 1 || read(a->ready[0], &c, 1) != 1)
        fail("the server did not come up");
    struct result r;
    memset(&r, 0, sizeof(r));
    a->b->client(a->port, &r);
    if (write(result_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
        fail("result pipe: %s", strerror(errno));
}

static int run_backend(const struct backend *b, struct result *r)
{
    struct role_arg a = {.b = b};
    a.port = free_port();
    if (a.port == 0 || pipe(a.ready) < 0 || pipe(a.results) < 0) {
        fprintf(stderr, "demi-bench: set-up failed: %s\n", strerror(errno));
        return -1;
    }
    uint64_t deadline = now_ns() + (uint64_t)opt.timeout_s * 1000000000ull;
    int cpu[2];
    pick_cpus(cpu);
    int scpu = -1, ccpu = -1;
    if (opt.pin == PIN_SPLIT) {
        scpu = cpu[0];
        ccpu = cpu[1];
    } else if (opt.pin == PIN_SAME) {
        scpu = ccpu = cpu[0];
    }
    pid_t srv = spawn(server_main, &a, scpu);
    pid_t cli = srv > 0 ? spawn(client_main, &a, ccpu) : -1;
    close(a.ready[0]);
    close(a.ready[1]);
    close(a.results[1]);

    memset(r, 0, sizeof(*r));
    size_t got = 0;
    while (cli > 0 && got < sizeof(*r)) {
        uint64_t now = now_ns();
        if (now >= deadline)
            break;
        struct pollfd pfd = {a.results[0], POLLIN, 0};
        int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = read(a.results[0], (char *)r + got, sizeof(*r) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(a.results[0]);
    int cst = cli > 0 ? reap(cli, deadline) : -1;
    int sst = srv > 0 ? reap(srv, deadline + 5000000000ull) : -1;
    bool ok = got == sizeof(*r) && r->ok && cst == 0 && sst == 0;
    if (!ok) {
        fprintf(stderr, "demi-bench: %s failed (client status %d, server status %d)%s%s\n", b->name, cst, sst,
                r->err[0] ? ": " : "", r->err);
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: demi-bench [--backend linux|catnap|both|catnap,linux] [--iters N] [--warmup N]\n"
            "                  [--msg BYTES] [--tput-mib MIB] [--chunk BYTES] [--timeout S]\n"
            "                  [--pin none|split|same]\n"
            "Runs 64 B TCP ping-pong latency and 64 KiB stream throughput over 127.0.0.1,\n"
            "server and client in separate processes, for each backend in the order given.\n"
            "--pin split puts server and client on two different CPUs, --pin same on one CPU,\n"
            "--pin none (default) leaves placement to the scheduler. Exit code 77: the\n"
            "placement asked for is impossible here (one CPU).\n");
}

static uint64_t num(const char *s, const char *what, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "demi-bench: bad %s '%s' (%" PRIu64 "..%" PRIu64 ")\n", what, s, min, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *order = "linux,catnap";
    static const struct option longopts[] = {
        {"backend", required_argument, NULL, 'b'}, {"iters", required_argument, NULL, 'n'},
        {"warmup", required_argument, NULL, 'w'},  {"msg", required_argument, NULL, 'm'},
        {"tput-mib", required_argument, NULL, 't'}, {"chunk", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 'T'}, {"help", no_argument, NULL, 'h'},
        {"pin", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b': order = strcmp(optarg, "both") == 0 ? "linux,catnap" : optarg; break;
        case 'n': opt.iters = (uint32_t)num(optarg, "--iters", 1, 100000000); break;
        case 'w': opt.warmup = (uint32_t)num(optarg, "--warmup", 0, 100000000); break;
        case 'm': opt.msg = (uint32_t)num(optarg, "--msg", 1, 4096); break;
        case 't': opt.tput_bytes = num(optarg, "--tput-mib", 1, 1u << 20) << 20; break;
        case 'c': opt.chunk = (uint32_t)num(optarg, "--chunk", 4096, 1u << 20); break;
        case 'T': opt.timeout_s = (int)num(optarg, "--timeout", 1, 3600); break;
        case 'p':
            for (opt.pin = 0; opt.pin < 3 && strcmp(optarg, pin_names[opt.pin]) != 0; opt.pin++) {
            }
            if (opt.pin == 3) {
                fprintf(stderr, "demi-bench: bad --pin '%s' (none, split, same)\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (opt.msg > opt.chunk)
        opt.chunk = opt.msg;
    signal(SIGPIPE, SIG_IGN);
    if (opt.pin == PIN_SPLIT) {
        int cpu[2];
        pick_cpus(cpu);
        if (cpu[1] < 0) {
            fprintf(stderr, "demi-bench: --pin split needs two CPUs, this process may use one\n");
            return 77;
        }
    }

    char *list = strdup(order);
    int rc = 0;
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        const struct backend *b = find_backend(name);
        if (b == NULL) {
            fprintf(stderr, "demi-bench: unknown backend '%s' (linux, catnap)\n", name);
            free(list);
            return 2;
        }
        struct result r;
        if (run_backend(b, &r) < 0) {
            rc = 1;
            continue;
        }
        printf("RESULT pin=%s backend=%s iters=%u msg=%u lat_p50_us=%.2f lat_p90_us=%.2f lat_p99_us=%.2f "
               "lat_p999_us=%.2f lat_mean_us=%.2f lat_min_us=%.2f lat_client_cpu=%.2f "
               "tput_bytes=%" PRIu64 " chunk=%u tput_MBps=%.1f tput_s=%.3f tput_client_cpu=%.2f\n",
               pin_names[opt.pin], b->name, opt.iters, opt.msg, r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.mean_us, r.min_us,
               r.lat_cpu, opt.tput_bytes, opt.chunk, r.tput_mbps, r.tput_s, r.tput_cpu);
        fflush(stdout);
    }
    free(list);
    return rc;
}
