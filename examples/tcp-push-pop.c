/*
 * TCP push-pop: the client streams `count` messages of `size` bytes, the
 * server pops and checks every byte of the stream. Measures throughput.
 *
 * The client keeps up to WINDOW pushes in flight (each with its own buffer,
 * which must not be touched until its push completes) and refills whichever
 * completes first.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 8

static const char usage[] =
    "tcp-push-pop --server ADDR PORT [size] [count]\n"
    "       tcp-push-pop --client ADDR PORT [size] [count]\n"
    "  the client sends `count` messages of `size` bytes (default 64, 1000); the server checks them\n";

static int run_server(const struct sockaddr_in *local, uint64_t total)
{
    char buf[32];
    struct sockaddr_in peer;
    int listen_qd = tcp_listen(local, 1);
    printf("waiting on %s\n", addr_str(local, buf, sizeof(buf)));
    int qd = tcp_accept(listen_qd, &peer);
    printf("connection from %s\n", addr_str(&peer, buf, sizeof(buf)));
    DEMI_CHECK(demi_close(listen_qd));

    uint64_t got = 0, start = 0;
    while (got < total) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        DEMI_CHECK(demi_pop(&qt, qd));
        wait_ok(&qr, qt, DEMI_OPC_POP, "pop", OP_TIMEOUT_S);
        if (start == 0)
            start = now_ns();

        demi_sgarray_t *sga = &qr.qr_value.sga;
        size_t n = sga_len(sga);
        if (n == 0)
            die("peer closed the connection after %llu of %llu bytes", (unsigned long long)got,
                (unsigned long long)total);
        if (n > total - got)
            die("peer sent more than the %llu bytes expected", (unsigned long long)total);
        for (uint32_t s = 0; s < sga->sga_numsegs; s++) {
            const demi_sgaseg_t *seg = &sga->sga_segs[s];
            long bad = check_pattern(seg->sgaseg_buf, seg->sgaseg_len, got);
            if (bad >= 0)
                die("wrong byte at stream offset %llu", (unsigned long long)(got + bad));
            got += seg->sgaseg_len;
        }
        free_sga(sga);
    }
    print_throughput("received", got, now_ns() - start);

    DEMI_CHECK(demi_close(qd));
    return 0;
}

static int run_client(const struct sockaddr_in *remote, uint32_t size, uint32_t count)
{
    int qd = tcp_connect(remote);
    int window = count < WINDOW ? (int)count : WINDOW;
    demi_sgarray_t sgas[WINDOW];
    demi_qtoken_t qts[WINDOW];  /* pushes in flight ... */
    int slot[WINDOW];           /* ... and the buffer each one uses */
    int inflight = 0;
    uint32_t started = 0, done = 0;

    for (int i = 0; i < window; i++)
        sgas[i] = alloc_sga(size);

    uint64_t start = now_ns();
    /* Fill the window. */
    for (int i = 0; i < window; i++) {
        fill_pattern(sga_data(&sgas[i]), size, (uint64_t)started * size);
        DEMI_CHECK(demi_push(&qts[inflight], qd, &sgas[i]));
        slot[inflight++] = i;
        started++;
    }
    /* Reuse each buffer as soon as its push completes. */
    while (done < count) {
        demi_qresult_t qr;
        int i;
        struct timespec timeout = { .tv_sec = OP_TIMEOUT_S, .tv_nsec = 0 };
        int rc = demi_wait_any(&qr, &i, qts, inflight, &timeout);
        if (rc == ETIMEDOUT)
            die("push: no progress for %d s, giving up", OP_TIMEOUT_S);
        check_rc(rc, "demi_wait_any");
        if (qr.qr_opcode == DEMI_OPC_FAILED)
            die("push failed: %s", strerror((int)qr.qr_ret));
        done++;

        if (started < count) {
            demi_sgarray_t *sga = &sgas[slot[i]];
            fill_pattern(sga_data(sga), size, (uint64_t)started * size);
            DEMI_CHECK(demi_push(&qts[i], qd, sga));
            started++;
        } else {
            inflight--;
            qts[i] = qts[inflight];
            slot[i] = slot[inflight];
        }
    }
    print_throughput("sent", (uint64_t)size * count, now_ns() - start);

    for (int i = 0; i < window; i++)
        free_sga(&sgas[i]);
    DEMI_CHECK(demi_close(qd));
    return 0;
}

int main(int argc, char *argv[])
{
    struct cmdline cl;
    parse_cmdline(argc, argv, usage, 2, 4, &cl);
    struct sockaddr_in addr = parse_addr(cl.pos[0], cl.pos[1]);
    uint32_t size = cl.npos > 2 ? parse_u32(cl.pos[2], "size", 1, 1 << 24) : 64;
    uint32_t count = cl.npos > 3 ? parse_u32(cl.pos[3], "count", 1, 100000000) : 1000;

    init_libos(argc, argv);
    return cl.mode == MODE_SERVER ? run_server(&addr, (uint64_t)size * count) : run_client(&addr, size, count);
}
