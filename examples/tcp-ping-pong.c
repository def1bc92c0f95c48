/*
 * TCP ping-pong: the client sends `size` bytes, the server sends the same
 * `size` bytes back, `count` times over one connection. Measures latency.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "tcp-ping-pong --server ADDR PORT [size] [count]\n"
    "       tcp-ping-pong --client ADDR PORT [size] [count]\n"
    "  one connection, `count` round trips of `size` bytes (default 64, 1000)\n";

static int run_server(const struct sockaddr_in *local, uint32_t size, uint32_t count)
{
    char buf[32];
    struct sockaddr_in peer;
    int listen_qd = tcp_listen(local, 1);
    printf("waiting on %s\n", addr_str(local, buf, sizeof(buf)));
    int qd = tcp_accept(listen_qd, &peer);
    printf("connection from %s\n", addr_str(&peer, buf, sizeof(buf)));
    DEMI_CHECK(demi_close(listen_qd));

    /* One buffer: the ping is reassembled into it, then pushed back as the pong. */
    demi_sgarray_t sga = alloc_sga(size);
    for (uint32_t i = 0; i < count; i++) {
        demi_qtoken_t qt;
        demi_qresult_t qr;

        recv_exact(qd, sga_data(&sga), size);
        long bad = check_pattern(sga_data(&sga), size, (uint64_t)i * size);
        if (bad >= 0)
            die("ping %u: wrong byte at offset %ld", i, bad);
        DEMI_CHECK(demi_push(&qt, qd, &sga));
        wait_ok(&qr, qt, DEMI_OPC_PUSH, "push", OP_TIMEOUT_S);
    }
    printf("answered %u pings of %u bytes\n", count, size);

    free_sga(&sga);
    DEMI_CHECK(demi_close(qd));
    return 0;
}

static int run_client(const struct sockaddr_in *remote, uint32_t size, uint32_t count)
{
    int qd = tcp_connect(remote);
    demi_sgarray_t sga = alloc_sga(size);
    uint8_t *pong = malloc(size);
    uint64_t *lat = malloc(count * sizeof(*lat));
    if (pong == NULL || lat == NULL)
        die("out of memory");

    for (uint32_t i = 0; i < count; i++) {
        demi_qtoken_t qt;
        demi_qresult_t qr;

        fill_pattern(sga_data(&sga), size, (uint64_t)i * size);
        uint64_t t0 = now_ns();
        DEMI_CHECK(demi_push(&qt, qd, &sga));
        wait_ok(&qr, qt, DEMI_OPC_PUSH, "push", OP_TIMEOUT_S);
        recv_exact(qd, pong, size);
        lat[i] = now_ns() - t0;

        long bad = check_pattern(pong, size, (uint64_t)i * size);
        if (bad >= 0)
            die("pong %u: wrong byte at offset %ld", i, bad);
    }
    printf("%u iterations of %u bytes\n", count, size);
    print_latency("round trip", lat, count);

    free_sga(&sga);
    DEMI_CHECK(demi_close(qd));
    free(pong);
    free(lat);
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
    return cl.mode == MODE_SERVER ? run_server(&addr, size, count) : run_client(&addr, size, count);
}
