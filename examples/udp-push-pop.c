/*
 * UDP push-pop: the client sends `count` numbered datagrams with demi_pushto;
 * the server pops and checks them until all have arrived or it has been idle
 * for IDLE_S seconds, then says how many arrived. UDP may drop datagrams, so
 * the client paces itself a little to avoid overrunning the receiver.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PACE_DGRAMS 16     /* client: pause after this many datagrams ... */
#define PACE_BYTES 16384   /* ... or this many bytes, whichever comes first ... */
#define PACE_US 200        /* ... for this long, so the receiver's socket buffer does not overflow */
#define FIRST_WAIT_S 30    /* server: wait this long for the first datagram */
#define IDLE_S 5           /* server: then give up after this long without one */

static const char usage[] =
    "udp-push-pop --server LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT [size] [count]\n"
    "       udp-push-pop --client LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT [size] [count]\n"
    "  the client sends `count` datagrams of `size` bytes (default 64, 1000; size >= 4)\n";

static int run_server(const struct sockaddr_in *local, const struct sockaddr_in *remote, uint32_t size,
                      uint32_t count)
{
    char buf[32];
    bool warned = false;
    uint8_t *seen = calloc(count, 1);
    uint32_t arrived = 0, dups = 0, bad = 0;
    uint64_t bytes = 0, start = 0, last = 0;
    if (seen == NULL)
        die("out of memory");
    int qd = udp_bind(local);
    printf("receiving datagrams on %s\n", addr_str(local, buf, sizeof(buf)));

    while (arrived < count) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        DEMI_CHECK(demi_pop(&qt, qd));
        int wait_s = arrived + dups + bad == 0 ? FIRST_WAIT_S : IDLE_S;
        if (!wait_for(&qr, qt, DEMI_OPC_POP, "pop", wait_s * 1000)) {
            warn("no datagram for %d s, giving up", wait_s);
            break; /* the pending pop is cancelled by demi_close below */
        }
        last = now_ns();
        if (start == 0)
            start = last;

        demi_sgarray_t sga = qr.qr_value.sga;
        struct sockaddr_in from = sga.sga_addr;
        uint32_t seq;
        const char *why = check_datagram(sga_data(&sga), sga_len(&sga), size, &seq);
        if (why == NULL && seq >= count)
            why = "sequence number out of range";
        note_sender(&from, remote, &warned);
        if (why != NULL) {
            warn("bad datagram from %s: %s", addr_str(&from, buf, sizeof(buf)), why);
            bad++;
        } else if (seen[seq]) {
            dups++;
        } else {
            seen[seq] = 1;
            arrived++;
            bytes += size;
        }
        free_sga(&sga);
    }
    printf("%u of %u datagrams arrived (%u duplicates, %u bad)\n", arrived, count, dups, bad);
    if (arrived > 0)
        print_throughput("received", bytes, last - start);

    DEMI_CHECK(demi_close(qd));
    free(seen);
    return arrived == count && bad == 0 ? 0 : 1;
}

static int run_client(const struct sockaddr_in *local, const struct sockaddr_in *remote, uint32_t size,
                      uint32_t count)
{
    const struct timespec pause = { .tv_sec = 0, .tv_nsec = PACE_US * 1000L };
    int qd = udp_bind(local);
    demi_sgarray_t sga = alloc_sga(size);
    uint32_t burst_dgrams = 0, burst_bytes = 0;

    uint64_t start = now_ns();
    for (uint32_t i = 0; i < count; i++) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        fill_datagram(sga_data(&sga), size, i);
        DEMI_CHECK(demi_pushto(&qt, qd, &sga, (const struct sockaddr *)remote, sizeof(*remote)));
        wait_ok(&qr, qt, DEMI_OPC_PUSH, "pushto", OP_TIMEOUT_S); /* the buffer is ours again */
        if (++burst_dgrams >= PACE_DGRAMS || (burst_bytes += size) >= PACE_BYTES) {
            nanosleep(&pause, NULL);
            burst_dgrams = burst_bytes = 0;
        }
    }
    printf("sent %u datagrams of %u bytes\n", count, size);
    print_throughput("sent", (uint64_t)size * count, now_ns() - start);

    free_sga(&sga);
    DEMI_CHECK(demi_close(qd));
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
