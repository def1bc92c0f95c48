/*
 * catloop-bench: 64 B TCP ping-pong round trip (p50/p99) between two processes on a given LibOS, e.g. catloop vs
 * catnap (kernel loopback); with "connect" as fourth argument instead, the time from connect to its completion
 * against a listener that has been idle (asleep) for 2 ms before each connection.
 * Usage: catloop-bench [libos] [iterations] [port] [connect]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "catloop-bench: %s: %s\n", what, strerror(rc));
    exit(1);
}

static void init(const char *libos)
{
    setenv("DEMI_LIBOS", libos, 1);
    char a0[] = "catloop-bench";
    char *argv[] = {a0, NULL};
    struct demi_args args = {0};
    args.argc = 1;
    args.argv = argv;
    int rc = demi_init(&args);
    if (rc)
        die("demi_init", rc);
}

/* Push len bytes, then pop until len bytes came back. */
static void push(int qd, demi_sgarray_t *sga)
{
    demi_qtoken_t qt;
    demi_qresult_t qr;
    int rc = demi_push(&qt, qd, sga);
    if (rc || (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_PUSH)
        die("push", rc ? rc : (int)qr.qr_ret);
}

static void pop_n(int qd, uint32_t len)
{
    uint32_t got = 0;
    while (got < len) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        int rc = demi_pop(&qt, qd);
        if (rc || (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_POP)
            die("pop", rc ? rc : (int)qr.qr_ret);
        if (qr.qr_value.sga.sga_segs[0].sgaseg_len == 0)
            die("pop", ECONNRESET);
        got += qr.qr_value.sga.sga_segs[0].sgaseg_len;
        demi_sgafree(&qr.qr_value.sga);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *libos = argc > 1 ? argv[1] : "catloop";
    int iters = argc > 2 ? atoi(argv[2]) : 100000;
    int port = argc > 3 && atoi(argv[3]) > 0 ? atoi(argv[3]) : 20000 + getpid() % 20000;
    bool setup = argc > 4 && strcmp(argv[4], "connect") == 0;
    if (setup && iters > 10000)
        iters = 10000; /* 2 ms idle each */
    const uint32_t size = 64;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ready[2];
    if (iters <= 0 || pipe(ready) < 0)
        return 2;
    pid_t srv = fork();
    if (srv == 0) {
        init(libos);
        int l, c;
        demi_qtoken_t qt;
        demi_qresult_t qr;
        int rc = demi_socket(&l, AF_INET, SOCK_STREAM, 0);
        if (rc || (rc = demi_bind(l, (struct sockaddr *)&a, sizeof(a))) || (rc = demi_listen(l, 4)))
            die("listen", rc);
        if (write(ready[1], "x", 1) != 1)
            die("ready", errno);
        if ((rc = demi_accept(&qt, l)) || (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_ACCEPT)
            die("accept", rc ? rc : (int)qr.qr_ret);
        c = qr.qr_value.ares.qd;
        if (setup) {
            /* One accept pending at a time, as a server's; each connection closed once the next arrives. */
            for (int i = 1; i < iters + 10; i++) {
                if ((rc = demi_accept(&qt, l)) || (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_ACCEPT)
                    die("accept", rc ? rc : (int)qr.qr_ret);
                demi_close(c);
                c = qr.qr_value.ares.qd;
            }
            demi_close(c);
            demi_close(l);
            _exit(0);
        }
        demi_sgarray_t sga = demi_sgaalloc(size);
        for (int i = 0; i < iters + 1000; i++) {
            pop_n(c, size);
            push(c, &sga);
        }
        demi_sgafree(&sga);
        demi_close(c);
        demi_close(l);
        _exit(0);
    }
    char x;
    if (read(ready[0], &x, 1) != 1)
        return 1;
    init(libos);
    int c, rc;
    demi_qtoken_t qt;
    demi_qresult_t qr;
    uint64_t *rtt = calloc((size_t)iters, sizeof(*rtt));
    if (rtt == NULL)
        return 1;
    if (setup) {
        for (int i = 0; i < iters + 10; i++) {
            struct timespec idle = {0, 2000000};
            nanosleep(&idle, NULL);
            uint64_t t0 = now_ns();
            if ((rc = demi_socket(&c, AF_INET, SOCK_STREAM, 0)) ||
                (rc = demi_connect(&qt, c, (struct sockaddr *)&a, sizeof(a))) || (rc = demi_wait(&qr, qt, NULL)) ||
                qr.qr_opcode != DEMI_OPC_CONNECT)
                die("connect", rc ? rc : (int)qr.qr_ret);
            if (i >= 10)
                rtt[i - 10] = now_ns() - t0;
            demi_close(c);
        }
        qsort(rtt, (size_t)iters, sizeof(*rtt), cmp_u64);
        printf("%-8s connect to an idle listener: p50 %.1f us  p99 %.1f us  (%d connections)\n", libos,
               rtt[iters / 2] / 1000.0, rtt[(size_t)iters * 99 / 100] / 1000.0, iters);
        free(rtt);
        int st;
        waitpid(srv, &st, 0);
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
    }
    if ((rc = demi_socket(&c, AF_INET, SOCK_STREAM, 0)) || (rc = demi_connect(&qt, c, (struct sockaddr *)&a, sizeof(a))) ||
        (rc = demi_wait(&qr, qt, NULL)) || qr.qr_opcode != DEMI_OPC_CONNECT)
        die("connect", rc ? rc : (int)qr.qr_ret);
    demi_sgarray_t sga = demi_sgaalloc(size);
    memset(sga.sga_segs[0].sgaseg_buf, 'p', size);
    for (int i = 0; i < iters + 1000; i++) {
        uint64_t t0 = now_ns();
        push(c, &sga);
        pop_n(c, size);
        if (i >= 1000)
            rtt[i - 1000] = now_ns() - t0;
    }
    qsort(rtt, (size_t)iters, sizeof(*rtt), cmp_u64);
    printf("%-8s 64 B ping-pong: p50 %.2f us  p99 %.2f us  (%d round trips)\n", libos, rtt[iters / 2] / 1000.0,
           rtt[(size_t)iters * 99 / 100] / 1000.0, iters);
    demi_sgafree(&sga);
    demi_close(c);
    int st;
    waitpid(srv, &st, 0);
    free(rtt);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
