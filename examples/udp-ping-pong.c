/*
 * UDP ping-pong: the client sends numbered datagrams with demi_pushto and
 * waits for each to come back; the server pops them and sends each back to
 * its sender (sga_addr). Measures latency.
 *
 * Datagrams can be lost, so nothing waits forever: the client resends after
 * RESEND_MS without an answer (ignoring late answers to earlier copies by
 * their sequence number), and the server gives up when idle.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

#define RESEND_MS 1000     /* client: resend when no answer came within this */
#define MAX_TRIES 5        /* client: sends of one datagram before giving up */
#define FIRST_WAIT_S 30    /* server: wait this long for the first datagram */
#define IDLE_S 5           /* server: then give up after this long without one */

static const char usage[] =
    "udp-ping-pong --server LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT [size] [count]\n"
    "       udp-ping-pong --client LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT [size] [count]\n"
    "  `count` round trips of `size`-byte datagrams (default 64, 1000; size >= 4)\n";

static int run_server(const struct sockaddr_in *local, const struct sockaddr_in *remote, uint32_t size,
                      uint32_t count)
{
    char buf[32];
    bool warned = false;
    uint32_t echoed = 0;
    int qd = udp_bind(local);
    printf("echoing datagrams on %s\n", addr_str(local, buf, sizeof(buf)));

    for (;;) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        DEMI_CHECK(demi_pop(&qt, qd));
        int wait_s = echoed == 0 ? FIRST_WAIT_S : IDLE_S;
        if (!wait_for(&qr, qt, DEMI_OPC_POP, "pop", wait_s * 1000)) {
            warn("no datagram for %d s after %u echoed, giving up", wait_s, echoed);
            DEMI_CHECK(demi_close(qd)); /* also cancels the pending pop */
            return 1;
        }

        demi_sgarray_t sga = qr.qr_value.sga;
        struct sockaddr_in from = sga.sga_addr;
        uint32_t seq;
        const char *bad = check_datagram(sga_data(&sga), sga_len(&sga), size, &seq);
        if (bad != NULL) {
            warn("dropping a datagram from %s: %s", addr_str(&from, buf, sizeof(buf)), bad);
            free_sga(&sga);
            continue;
        }
        note_sender(&from, remote, &warned);

        /* Send the popped buffer straight back to whoever sent it. */
        DEMI_CHECK(demi_pushto(&qt, qd, &sga, (const struct sockaddr *)&from, sizeof(from)));
        wait_ok(&qr, qt, DEMI_OPC_PUSH, "pushto", OP_TIMEOUT_S);
        free_sga(&sga);
        echoed++;
        if (seq == count - 1)
            break; /* the client's last datagram */
    }
    printf("echoed %u datagrams of %u bytes\n", echoed, size);
    DEMI_CHECK(demi_close(qd));
    return 0;
}

static void send_datagram(int qd, const demi_sgarray_t *sga, const struct sockaddr_in *to)
{
    demi_qtoken_t qt;
    demi_qresult_t qr;
    DEMI_CHECK(demi_pushto(&qt, qd, sga, (const struct sockaddr *)to, sizeof(*to)));
    wait_ok(&qr, qt, DEMI_OPC_PUSH, "pushto", OP_TIMEOUT_S);
}

static int run_client(const struct sockaddr_in *local, const struct sockaddr_in *remote, uint32_t size,
                      uint32_t count)
{
    int qd = udp_bind(local);
    demi_sgarray_t sga = alloc_sga(size);
    uint64_t *lat = malloc(count * sizeof(*lat));
    uint32_t resends = 0, stale = 0;
    if (lat == NULL)
        die("out of memory");

    for (uint32_t i = 0; i < count; i++) {
        fill_datagram(sga_data(&sga), size, i);
        uint64_t t0 = now_ns();
        send_datagram(qd, &sga, remote);

        for (int tries = 1;;) {
            demi_qtoken_t qt;
            demi_qresult_t qr;
            DEMI_CHECK(demi_pop(&qt, qd));
            /* A timed-out pop stays pending: keep waiting on the same token after resending. */
            while (!wait_for(&qr, qt, DEMI_OPC_POP, "pop", RESEND_MS)) {
                if (tries == MAX_TRIES)
                    die("no answer to datagram %u after %d sends", i, tries);
                tries++;
                resends++;
                send_datagram(qd, &sga, remote);
            }

            uint32_t seq;
            const char *bad = check_datagram(sga_data(&qr.qr_value.sga), sga_len(&qr.qr_value.sga), size, &seq);
            free_sga(&qr.qr_value.sga);
            if (bad != NULL)
                die("answer to datagram %u: %s", i, bad);
            if (seq == i)
                break;
            if (seq > i)
                die("answer to datagram %u carries sequence number %u", i, seq);
            stale++; /* a late answer to an earlier copy */
        }
        lat[i] = now_ns() - t0;
    }
    printf("%u round trips of %u bytes (%u resends, %u stale answers)\n", count, size, resends, stale);
    print_latency("round trip", lat, count);

    free_sga(&sga);
    DEMI_CHECK(demi_close(qd));
    free(lat);
    return 0;
}

int main(int argc, char *argv[])
{
    struct cmdline cl;
    parse_cmdline(argc, argv, usage, 4, 6, &cl);
    struct sockaddr_in local = parse_addr(cl.pos[0], cl.pos[1]);
    struct sockaddr_in remote = parse_addr(cl.pos[2], cl.pos[3]);
    uint32_t size = cl.npos > 4 ? parse_u32(cl.pos[4], "size", 4, 65507) : 64;
    uint32_t count = cl.npos > 5 ? parse_u32(cl.pos[5], "count", 1, 100000000) : 1000;

    init_libos(argc, argv);
    return cl.mode == MODE_SERVER ? run_server(&local, &remote, size, count)
                                  : run_client(&local, &remote, size, count);
}
