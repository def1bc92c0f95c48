/* ipc-pingpong: 64 B round trips between two pinned processes over TCP through a LibOS (catloop, catnap), over kernel TCP or over a Unix domain socket, for scripts/bench-ipc.sh's one table. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>

#define MSG 64u

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "ipc-pingpong: %s: %s\n", what, strerror(rc));
    exit(1);
}

static void pin(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(n > 1 ? cpu : 0, &s);
    sched_setaffinity(0, sizeof(s), &s);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- demi: TCP through the LibOS named on the command line ------------------------- */

static void demi_up(const char *libos)
{
    setenv("DEMI_LIBOS", libos, 1);
    char a0[] = "ipc-pingpong";
    char *argv[] = {a0, NULL};
    struct demi_args args;
    memset(&args, 0, sizeof(args));
    args.argc = 1;
    args.argv = argv;
    int rc = demi_init(&args);
    if (rc)
        die("demi_init", rc);
}

static void demi_push_all(int qd, demi_sgarray_t *sga)
{
    demi_qtoken_t qt;
    demi_qresult_t qr;
    int rc = demi_push(&qt, qd, sga);
    if (rc || (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_PUSH)
        die("push", rc ? rc : (int)qr.qr_ret);
}

/* A stream may split a message: pop until MSG bytes came. */
static void demi_pop_msg(int qd)
{
    uint32_t got = 0;
    while (got < MSG) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        int rc = demi_pop(&qt, qd);
        if (rc || (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_POP)
            die("pop", rc ? rc : (int)qr.qr_ret);
        uint32_t n = qr.qr_value.sga.sga_segs[0].sgaseg_len;
        demi_sgafree(&qr.qr_value.sga);
        if (n == 0)
            die("pop", ECONNRESET);
        got += n;
    }
}

/* ---- kernel sockets: blocking read/write ----------------------------------------------- */

static void k_write(int fd)
{
    char b[MSG];
    memset(b, 'p', sizeof(b));
    size_t off = 0;
    while (off < MSG) {
        ssize_t n = write(fd, b + off, MSG - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write", errno);
        off += (size_t)n;
    }
}

static void k_read(int fd)
{
    char b[MSG];
    size_t off = 0;
    while (off < MSG) {
        ssize_t n = read(fd, b + off, MSG - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("read", n == 0 ? ECONNRESET : errno);
        off += (size_t)n;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ipc-pingpong demi:LIBOS|tcp|unix ITERS [WARMUP [SAMPLES_FILE]]\n");
        return 2;
    }
    const char *mode = argv[1];
    int iters = atoi(argv[2]);
    int warm = argc > 3 ? atoi(argv[3]) : iters / 10;
    const char *samples = argc > 4 ? argv[4] : NULL;
    bool use_demi = strncmp(mode, "demi:", 5) == 0;
    bool use_unix = strcmp(mode, "unix") == 0;
    if (iters <= 0 || warm < 0 || (!use_demi && !use_unix && strcmp(mode, "tcp") != 0))
        return 2;
    int total = iters + warm;
    uint16_t port = (uint16_t)(20000 + getpid() % 20000);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    /* Abstract name: nothing to clean up on the file system. */
    snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "demi-ipc-pingpong-%d", (int)getpid());
    socklen_t sun_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sun.sun_path + 1));

    int ready[2];
    if (pipe(ready) < 0)
        die("pipe", errno);
    /* Kernel sockets: the listener exists before fork, so the client can connect at once. */
    int lfd = -1;
    if (!use_demi) {
        lfd = socket(use_unix ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
        int one = 1;
        if (!use_unix)
            setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (lfd < 0 || bind(lfd, use_unix ? (struct sockaddr *)&sun : (struct sockaddr *)&sin,
                            use_unix ? sun_len : sizeof(sin)) < 0 || listen(lfd, 4) < 0)
            die("listen", errno);
    }
    fflush(stdout);
    pid_t srv = fork();
    if (srv < 0)
        die("fork", errno);
    if (srv == 0) {
        pin(1);
        if (use_demi) {
            demi_up(mode + 5);
            int l, c, rc;
            demi_qtoken_t qt;
            demi_qresult_t qr;
            if ((rc = demi_socket(&l, AF_INET, SOCK_STREAM, 0)) ||
                (rc = demi_bind(l, (struct sockaddr *)&sin, sizeof(sin))) || (rc = demi_listen(l, 4)))
                die("listen", rc);
            if (write(ready[1], "x", 1) != 1)
                die("ready", errno);
            if ((rc = demi_accept(&qt, l)) || (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_ACCEPT)
                die("accept", rc ? rc : (int)qr.qr_ret);
            c = qr.qr_value.ares.qd;
            demi_sgarray_t sga = demi_sgaalloc(MSG);
            for (int i = 0; i < total; i++) {
                demi_pop_msg(c);
                demi_push_all(c, &sga);
            }
            demi_sgafree(&sga);
            demi_close(c);
            demi_close(l);
        } else {
            if (write(ready[1], "x", 1) != 1)
                die("ready", errno);
            int c = accept(lfd, NULL, NULL);
            if (c < 0)
                die("accept", errno);
            int one = 1;
            if (!use_unix)
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            for (int i = 0; i < total; i++) {
                k_read(c);
                k_write(c);
            }
            close(c);
        }
        _exit(0);
    }
    pin(0);
    char x;
    if (read(ready[0], &x, 1) != 1)
        die("server did not start", EIO);
    uint64_t *rtt = calloc((size_t)total, sizeof(*rtt));
    if (rtt == NULL)
        die("calloc", ENOMEM);
    if (use_demi) {
        demi_up(mode + 5);
        int c, rc;
        demi_qtoken_t qt;
        demi_qresult_t qr;
        if ((rc = demi_socket(&c, AF_INET, SOCK_STREAM, 0)) ||
            (rc = demi_connect(&qt, c, (struct sockaddr *)&sin, sizeof(sin))) || (rc = demi_wait(&qr, qt, NULL)) ||
            qr.qr_opcode != DEMI_OPC_CONNECT)
            die("connect", rc ? rc : (int)qr.qr_ret);
        demi_sgarray_t sga = demi_sgaalloc(MSG);
        memset(sga.sga_segs[0].sgaseg_buf, 'p', MSG);
        for (int i = 0; i < total; i++) {
            uint64_t t0 = now_ns();
            demi_push_all(c, &sga);
            demi_pop_msg(c);
            rtt[i] = now_ns() - t0;
        }
        demi_sgafree(&sga);
        demi_close(c);
    } else {
        close(lfd);
        int c = socket(use_unix ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, use_unix ? (struct sockaddr *)&sun : (struct sockaddr *)&sin,
                             use_unix ? sun_len : sizeof(sin)) < 0)
            die("connect", errno);
        int one = 1;
        if (!use_unix)
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        for (int i = 0; i < total; i++) {
            uint64_t t0 = now_ns();
            k_write(c);
            k_read(c);
            rtt[i] = now_ns() - t0;
        }
        close(c);
    }
    int st;
    waitpid(srv, &st, 0);
    uint64_t *r = rtt + warm;
    qsort(r, (size_t)iters, sizeof(*r), cmp_u64);
    printf("%s 64 B ping-pong: p50 %.2f us, p99 %.2f us (%d round trips after %d warm-up)\n", mode, r[iters / 2] / 1e3,
           r[(size_t)iters * 99 / 100] / 1e3, iters, warm);
    printf("result: p50=%llu p99=%llu\n", (unsigned long long)r[iters / 2],
           (unsigned long long)r[(size_t)iters * 99 / 100]);
    if (samples != NULL) {
        FILE *f = fopen(samples, "w");
        if (f == NULL)
            die(samples, errno);
        size_t step = iters > 20000 ? (size_t)iters / 20000 : 1;
        for (size_t i = 0; i < (size_t)iters; i += step)
            fprintf(f, "%llu\n", (unsigned long long)r[i]);
        fclose(f);
    }
    free(rtt);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
