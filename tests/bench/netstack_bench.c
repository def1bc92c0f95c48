/*
 * netstack-bench: two netstacks in one thread over an in-memory link with no loss, to measure
 * what the stack itself costs: 64 B request-response round trips per second, one-way bulk
 * throughput, and ns of stack work per segment: the measured loops do nothing but ns_* calls
 * and a clock read per polling round, so their CPU time minus the clock reads and minus the
 * link's callbacks (which run inside ns_poll; their per-frame cost is measured alone in the
 * same run) is the stack's work. Prints "key value" lines
 * for scripts/bench-netstack.sh; --smoke runs a few iterations only (ctest).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netstack.h"

#define POOL_BUFS 8192
#define BUF_SIZE 2048
#define HEADROOM 128
#define RING 8192                /* frames in flight per direction; far above any window here */

struct ring {
    struct nsbuf *f[RING];
    uint32_t head, tail;
};

struct side {
    struct netdev dev;
    struct ring *rx;             /* frames for this side */
    struct ring *peer_rx;        /* where this side's frames go */
    uint64_t frames_tx;
};

static struct nsbuf_pool pool;
static struct ring rings[2];
static struct side sides[2];
static uint64_t link_copies;     /* frames the link had to copy (the stack still held them) */

/* ---- the link: a frame the stack no longer references moves as is (as a NIC's DMA would
 * land it in the peer's memory); one the stack still holds (retransmission queue) is copied. */

static uint16_t link_rx(struct netdev *d, struct nsbuf **bufs, uint16_t n)
{
    struct ring *r = ((struct side *)d->priv)->rx;
    uint16_t i = 0;
    while (i < n && r->head != r->tail)
        bufs[i++] = r->f[r->head++ % RING];
    return i;
}

static uint16_t link_tx(struct netdev *d, struct nsbuf **bufs, uint16_t n)
{
    struct side *s = d->priv;
    struct ring *r = s->peer_rx;
    uint16_t i;
    for (i = 0; i < n && r->tail - r->head < RING; i++) {
        struct nsbuf *b = bufs[i];
        if (b->refcnt > 1) {
            struct nsbuf *c = nsbuf_pool_get(&pool);
            if (!c)
                break;
            memcpy(nsbuf_append(c, b->len), b->data, b->len);
            b->refcnt--;
            b = c;
            link_copies++;
        }
        r->f[r->tail++ % RING] = b;
        s->frames_tx++;
    }
    return i;
}

static struct nsbuf *link_alloc(struct netdev *d)
{
    (void)d;
    return nsbuf_pool_get(&pool);
}

static void link_free(struct netdev *d, struct nsbuf *b)
{
    (void)d;
    nsbuf_pool_put(b);
}

static const struct netdev_ops link_ops = {
    .rx_burst = link_rx, .tx_burst = link_tx, .buf_alloc = link_alloc, .buf_free = link_free,
};

/* ---- timing */

static uint64_t clock_calls;     /* mono_ns() calls inside measured loops (driver work, not stack) */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU cost of one mono_ns(), which the loops call once per polling round. */
static double clock_ns(void)
{
    enum { N = 200000 };
    volatile uint64_t sink = 0;
    uint64_t c0 = cpu_ns();
    for (int i = 0; i < N; i++)
        sink += mono_ns();
    (void)sink;
    return (double)(cpu_ns() - c0) / N;
}

/* Link baseline: per frame what the link's callbacks do inside a run (buf_alloc, tx_burst
 * into the ring, rx_burst out of it, buf_free), in bursts of 32 as the stack calls them,
 * in CPU time; with `held` the sender keeps a reference, so tx_burst copies the frame. */
static double link_ns_per_frame(uint32_t len, int held)
{
    enum { N = 320000, BURST = 32 };
    struct nsbuf *b[BURST], *keep[BURST];
    uint64_t c0 = cpu_ns();
    for (int i = 0; i < N / BURST; i++) {
        for (int k = 0; k < BURST; k++) {
            b[k] = link_alloc(&sides[0].dev);
            nsbuf_append(b[k], len);
            if (held) {
                b[k]->refcnt++;
                keep[k] = b[k];
            }
        }
        link_tx(&sides[0].dev, b, BURST);
        uint16_t n = link_rx(&sides[1].dev, b, BURST);
        for (uint16_t k = 0; k < n; k++)
            link_free(&sides[1].dev, b[k]);
        if (held)
            for (int k = 0; k < BURST; k++)
                link_free(&sides[0].dev, keep[k]);
    }
    double ns = (double)(cpu_ns() - c0) / N;
    sides[0].frames_tx = 0;
    link_copies = 0;
    return held ? ns - link_ns_per_frame(len, 0) : ns;  /* held: the copy's extra cost only */
}

/* ---- setup */

static struct netstack *ns[2];
static uint64_t now;

static void die(const char *what, int rc)
{
    fprintf(stderr, "netstack-bench: %s: %d (%s)\n", what, rc, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static void setup(void)
{
    if (nsbuf_pool_init(&pool, POOL_BUFS, BUF_SIZE, HEADROOM) != 0)
        die("pool", -ENOMEM);
    for (int i = 0; i < 2; i++) {
        sides[i].dev.ops = &link_ops;
        uint8_t mac[6] = {0x02, 0, 0, 0, 0, (uint8_t)(i + 1)};
        memcpy(sides[i].dev.mac, mac, 6);
        sides[i].dev.mtu = 1500;
        sides[i].dev.priv = &sides[i];
        sides[i].rx = &rings[i];
        sides[i].peer_rx = &rings[1 - i];
    }
    now = mono_ns();
    for (int i = 0; i < 2; i++) {
        struct ns_config c;
        ns_config_defaults(&c);
        c.ipv4 = NS_IP4(10, 0, 0, i + 1);
        c.netmask = NS_IP4(255, 255, 255, 0);
        struct ns_arp_static peer = {.ip = NS_IP4(10, 0, 0, 2 - i)};
        memcpy(peer.mac, sides[1 - i].dev.mac, 6);
        c.arp_static = &peer;
        c.n_arp_static = 1;
        memset(c.isn_secret, 0x11 * (i + 1), sizeof(c.isn_secret));
        int rc = ns_create(&c, &sides[i].dev, now, &ns[i]);
        if (rc)
            die("ns_create", rc);
    }
}

static void poll_both(void)
{
    now = mono_ns();
    clock_calls++;
    ns_poll(ns[0], now);
    ns_poll(ns[1], now);
}

/* A connected pair: client on side 0, server on side 1. */
static void connect_pair(uint16_t port, int *cli, int *srv)
{
    int l = ns_tcp_socket(ns[1]);
    if (l == -ENOSYS) {
        fprintf(stderr, "netstack-bench: TCP not implemented in this build\n");
        exit(77);
    }
    if (l < 0)
        die("socket", l);
    struct ns_sockaddr a = {.addr = NS_IP4(10, 0, 0, 2), .port = ns_hton16(port)};
    int rc = ns_tcp_bind(ns[1], l, &a);
    if (rc)
        die("bind", rc);
    if ((rc = ns_tcp_listen(ns[1], l, 4)))
        die("listen", rc);
    *cli = ns_tcp_socket(ns[0]);
    if (*cli < 0)
        die("socket", *cli);
    int one = 1;
    ns_tcp_setsockopt(ns[0], *cli, NS_TCP_NODELAY, one);
    rc = ns_tcp_connect(ns[0], *cli, &a);
    if (rc != -EINPROGRESS)
        die("connect", rc);
    *srv = -1;
    for (int i = 0; i < 1000 && *srv < 0; i++) {
        poll_both();
        struct ns_sockaddr peer;
        *srv = ns_tcp_accept(ns[1], l, &peer);
    }
    if (*srv < 0)
        die("accept", *srv);
    ns_tcp_setsockopt(ns[1], *srv, NS_TCP_NODELAY, one);
    for (int i = 0; i < 100 && !(ns_tcp_events(ns[0], *cli) & NS_EV_OUT); i++)
        poll_both();
    ns_tcp_close(ns[1], l);
}

static uint64_t frames_total(void) { return sides[0].frames_tx + sides[1].frames_tx; }

struct link_cost {
    double frame_ns;             /* per frame moved */
    double copy_ns;              /* extra per frame copied */
};

struct result {
    double wall_s;
    double cpu_s;                /* this thread's CPU time: wall minus time the machine gave others */
    double stack_ns;             /* inside ns_* minus link baseline */
    double link_ns;
    double clock_ns;             /* spent reading the clock */
    uint64_t frames;
    uint64_t ops;                /* round trips or bytes */
};

/* Run `fn` for its iterations, measuring. */
static struct result measure(void (*fn)(int, int, uint64_t), int cli, int srv, uint64_t n, struct link_cost lc,
                             double clock_cost)
{
    struct result r;
    uint64_t f0 = frames_total(), cp0 = link_copies, k0 = clock_calls;
    uint64_t t0 = mono_ns(), c0 = cpu_ns();
    fn(cli, srv, n);
    r.wall_s = (double)(mono_ns() - t0) / 1e9;
    r.cpu_s = (double)(cpu_ns() - c0) / 1e9;
    r.frames = frames_total() - f0;
    /* The loops do nothing but ns_* calls and one clock read per polling round: the loop's CPU
     * time (which, unlike wall time, excludes what the shared machine gave to others) minus the
     * clock reads and the link's callbacks is the stack's work. */
    r.clock_ns = clock_cost * (double)(clock_calls - k0);
    double stack_total_ns = r.cpu_s * 1e9 - r.clock_ns;
    r.link_ns = lc.frame_ns * (double)r.frames + lc.copy_ns * (double)(link_copies - cp0);
    r.stack_ns = stack_total_ns - r.link_ns;
    r.ops = n;
    return r;
}

static void rr_loop(int cli, int srv, uint64_t n)
{
    char req[64], resp[64], buf[64];
    memset(req, 'q', sizeof(req));
    memset(resp, 'r', sizeof(resp));
    for (uint64_t i = 0; i < n; i++) {
        int rc = ns_tcp_send(ns[0], cli, req, sizeof(req));
        if (rc != 64)
            die("rr send", rc);
        size_t got = 0;
        while (got < 64) {
            poll_both();
            rc = ns_tcp_recv(ns[1], srv, buf, 64 - got);
            if (rc > 0)
                got += (size_t)rc;
            else if (rc != -EAGAIN)
                die("rr server recv", rc);
        }
        rc = ns_tcp_send(ns[1], srv, resp, sizeof(resp));
        if (rc != 64)
            die("rr server send", rc);
        got = 0;
        while (got < 64) {
            poll_both();
            rc = ns_tcp_recv(ns[0], cli, buf, 64 - got);
            if (rc > 0)
                got += (size_t)rc;
            else if (rc != -EAGAIN)
                die("rr client recv", rc);
        }
    }
}

static void bulk_loop(int cli, int srv, uint64_t bytes)
{
    static char out[65536], in[65536];
    memset(out, 'b', sizeof(out));
    uint64_t sent = 0, rcvd = 0;
    while (rcvd < bytes) {
        if (sent < bytes) {
            size_t len = bytes - sent < sizeof(out) ? (size_t)(bytes - sent) : sizeof(out);
            int rc = ns_tcp_send(ns[0], cli, out, len);
            if (rc > 0)
                sent += (uint64_t)rc;
            else if (rc != -EAGAIN)
                die("bulk send", rc);
        }
        poll_both();
        for (;;) {
            int rc = ns_tcp_recv(ns[1], srv, in, sizeof(in));
            if (rc == -EAGAIN)
                break;
            if (rc <= 0)
                die("bulk recv", rc);
            rcvd += (uint64_t)rc;
        }
    }
}

int main(int argc, char **argv)
{
    uint64_t rr_n = 200000, bulk_bytes = 2048ull << 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            rr_n = 200;
            bulk_bytes = 1u << 20;
        } else if (strcmp(argv[i], "--rr") == 0 && i + 1 < argc) {
            rr_n = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--bulk-mib") == 0 && i + 1 < argc) {
            bulk_bytes = strtoull(argv[++i], NULL, 10) << 20;
        } else {
            fprintf(stderr, "usage: netstack-bench [--smoke] [--rr ROUND_TRIPS] [--bulk-mib MIB]\n");
            return 2;
        }
    }
    if (rr_n == 0 || bulk_bytes == 0) {
        fprintf(stderr, "netstack-bench: counts must be positive\n");
        return 2;
    }

    setup();
    double clock_cost = clock_ns();
    struct link_cost link_small = {link_ns_per_frame(64 + 66, 0), link_ns_per_frame(64 + 66, 1)};
    struct link_cost link_large = {link_ns_per_frame(1514, 0), link_ns_per_frame(1514, 1)};

    int cli, srv;
    connect_pair(5001, &cli, &srv);
    rr_loop(cli, srv, rr_n / 10 + 1);  /* warm-up */
    struct result rr = measure(rr_loop, cli, srv, rr_n, link_small, clock_cost);

    int bcli, bsrv;
    connect_pair(5002, &bcli, &bsrv);
    bulk_loop(bcli, bsrv, bulk_bytes / 8);  /* warm-up: cwnd and caches */
    struct result bulk = measure(bulk_loop, bcli, bsrv, bulk_bytes, link_large, clock_cost);

    struct ns_stats st[2];
    ns_stats_get(ns[0], &st[0]);
    ns_stats_get(ns[1], &st[1]);

    printf("clock_read_ns %.1f\n", clock_cost);
    printf("link_ns_per_frame_64 %.1f\n", link_small.frame_ns);
    printf("link_ns_per_frame_1514 %.1f\n", link_large.frame_ns);
    printf("link_copy_ns_1514 %.1f\n", link_large.copy_ns);
    printf("link_copies %llu\n", (unsigned long long)link_copies);
    printf("rr_per_sec %.0f\n", (double)rr.ops / rr.wall_s);
    printf("rr_per_cpu_sec %.0f\n", (double)rr.ops / rr.cpu_s);
    printf("rr_cpu_share %.2f\n", rr.cpu_s / rr.wall_s);
    printf("rr_frames_per_rt %.2f\n", (double)rr.frames / (double)rr.ops);
    printf("rr_stack_ns_per_rt %.1f\n", rr.stack_ns / (double)rr.ops);
    printf("rr_stack_ns_per_frame %.1f\n", rr.stack_ns / (double)rr.frames);
    printf("rr_link_ns_per_rt %.1f\n", rr.link_ns / (double)rr.ops);
    printf("rr_clock_ns_per_rt %.1f\n", rr.clock_ns / (double)rr.ops);
    printf("bulk_gbps %.2f\n", (double)bulk.ops * 8 / bulk.wall_s / 1e9);
    printf("bulk_gbps_per_cpu %.2f\n", (double)bulk.ops * 8 / bulk.cpu_s / 1e9);
    printf("bulk_cpu_share %.2f\n", bulk.cpu_s / bulk.wall_s);
    printf("bulk_frames %llu\n", (unsigned long long)bulk.frames);
    printf("bulk_stack_ns_per_frame %.1f\n", bulk.stack_ns / (double)bulk.frames);
    printf("bulk_stack_ns_per_kib %.1f\n", bulk.stack_ns / ((double)bulk.ops / 1024));
    printf("bulk_link_ns_per_frame %.1f\n", bulk.link_ns / (double)bulk.frames);
    uint64_t tx = 0, rtx = 0;
    for (size_t i = 0; i < NS_STATS_COUNT; i++) {
        const char *name = ns_stats_name(i);
        if (strcmp(name, "eth_tx") == 0)
            tx = ns_stats_value(&st[0], i) + ns_stats_value(&st[1], i);
        if (strcmp(name, "tcp_retransmits") == 0)
            rtx = ns_stats_value(&st[0], i) + ns_stats_value(&st[1], i);
    }
    printf("eth_tx %llu\n", (unsigned long long)tx);
    printf("tcp_retransmits %llu\n", (unsigned long long)rtx);

    ns_tcp_close(ns[0], cli);
    ns_tcp_close(ns[1], srv);
    ns_tcp_close(ns[0], bcli);
    ns_tcp_close(ns[1], bsrv);
    for (int i = 0; i < 50; i++)
        poll_both();
    ns_destroy(ns[0]);
    ns_destroy(ns[1]);
    for (int i = 0; i < 2; i++)
        while (rings[i].head != rings[i].tail)
            nsbuf_pool_put(rings[i].f[rings[i].head++ % RING]);
    if (pool.in_use != 0) {
        fprintf(stderr, "netstack-bench: %u buffers leaked\n", pool.in_use);
        return 1;
    }
    nsbuf_pool_fini(&pool);
    return 0;
}
