/*
 * libFuzzer target for netstack: raw Ethernet frames and clock steps from the
 * fuzz input go through ns_input/ns_poll into a stack on a fake netdev (no
 * system calls), with the application reading, writing and closing sockets
 * between frames. Aborts on a malformed transmitted frame or when a buffer
 * did not return to the pool after ns_destroy; the sanitizers catch the rest.
 * Chain: LLVMFuzzerTestOneInput -> ns_input -> ns_eth_input -> ... and
 * ns_poll -> timers -> fake_tx (checks every frame the stack sends).
 * Input format and fixed addresses: fuzz_frames.h.
 */
#include "fuzz_frames.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netstack.h"
#include "prot/arp.h"
#include "prot/cksum.h"
#include "prot/ether.h"
#include "prot/icmp.h"
#include "prot/ipv4.h"
#include "prot/tcp.h"
#include "prot/udp.h"

#define POOL_BUFS 512u
#define BUF_SIZE 2048u
#define HEADROOM 128u
#define MAX_TCP 16

static const uint8_t mac_us[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t mac_peer[6] = { 0x02, 0, 0, 0, 0, 0x02 };

struct fuzz {
    struct netdev dev;
    struct nsbuf_pool *pool;
    struct netstack *ns;
    uint64_t now;
    int udp[3];
    int listener;
    int est;                     /* the established connection, -1 once closed */
    int conn;                    /* our SYN_SENT connection */
    int tcp[MAX_TCP];            /* accepted sockets */
    int ntcp;
    bool closing;                /* in world_fini: what is sent now is not the input's doing */
    /* From our SYN-ACK to the set-up handshake. */
    bool seen_synack;
    uint32_t synack_seq, last_tsval;
};

void (*fuzz_tx_hook)(const uint8_t *frame, uint32_t len);

static struct nsbuf_pool g_pool;
static bool g_pool_ready;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_frames: %s\n", what);
    abort();
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* The TSval of a TCP header's timestamp option, 0 without one. */
static uint32_t tcp_tsval(const uint8_t *tcp, unsigned hlen)
{
    const uint8_t *o = tcp + NS_TCP_HLEN, *end = tcp + hlen;
    while (o < end && *o != NS_TCPOPT_EOL) {
        if (*o == NS_TCPOPT_NOP) {
            o++;
            continue;
        }
        if (end - o < 2 || o[1] < 2 || o[1] > end - o)
            break;
        if (o[0] == NS_TCPOPT_TIMESTAMP && o[1] == NS_TCPOLEN_TIMESTAMP)
            return (uint32_t)o[2] << 24 | (uint32_t)o[3] << 16 | (uint32_t)o[4] << 8 | o[5];
        o += o[1];
    }
    return 0;
}

/* Every frame the stack sends must be well formed: the peer is a real host. */
static void check_tx(struct fuzz *f, const struct nsbuf *b)
{
    if (b->len < NS_ETH_HLEN || b->len > NS_ETH_HLEN + 1500u)
        die("transmitted frame of impossible length");
    if (nsbuf_headroom(b) + b->len > b->cap)
        die("transmitted frame beyond its buffer");
    const uint8_t *p = b->data;
    if (memcmp(p + 6, mac_us, 6) != 0)
        die("transmitted frame not from our MAC");
    uint16_t type = get16(p + 12);
    if (type == NS_ETH_TYPE_ARP) {
        if (b->len < NS_ETH_HLEN + NS_ARP_LEN)
            die("short ARP sent");
        return;
    }
    if (type != NS_ETH_TYPE_IPV4)
        die("unknown ethertype sent");
    const struct ns_ipv4_hdr *ip = (const struct ns_ipv4_hdr *)(p + NS_ETH_HLEN);
    uint32_t l3len = b->len - NS_ETH_HLEN;
    if (l3len < NS_IPV4_HLEN || ns_ipv4_version(ip) != 4 || ns_ipv4_hlen(ip) < NS_IPV4_HLEN ||
        ns_ipv4_hlen(ip) > l3len)
        die("bad IPv4 header sent");
    unsigned hlen = ns_ipv4_hlen(ip);
    uint32_t tot = ns_ntoh16(ip->total_len);
    /* Short frames are padded to the Ethernet minimum. */
    if (tot < hlen || (tot != l3len && !(b->len == NS_ETH_MIN_FRAME && tot < l3len)))
        die("IPv4 total length does not match the frame");
    if (ns_ipv4_cksum(ip, hlen) != 0)
        die("bad IPv4 header checksum sent");
    const uint8_t *l4 = (const uint8_t *)ip + hlen;
    uint32_t l4len = tot - hlen;
    if (ip->proto == NS_IPPROTO_ICMP) {
        if (l4len < NS_ICMP_HLEN || ns_cksum_finish(ns_cksum_add(0, l4, l4len)) != 0)
            die("bad ICMP sent");
    } else if (ip->proto == NS_IPPROTO_UDP || ip->proto == NS_IPPROTO_TCP) {
        uint32_t min = ip->proto == NS_IPPROTO_UDP ? NS_UDP_HLEN : NS_TCP_HLEN;
        if (l4len < min)
            die("short L4 header sent");
        uint32_t sum = ns_cksum_pseudo(ip->src, ip->dst, ip->proto, (uint16_t)l4len);
        if (ns_cksum_finish(ns_cksum_add(sum, l4, l4len)) != 0)
            die("bad L4 checksum sent");
        if (ip->proto == NS_IPPROTO_TCP) {
            const struct ns_tcp_hdr *t = (const struct ns_tcp_hdr *)l4;
            if (ns_tcp_hlen(t) < NS_TCP_HLEN || ns_tcp_hlen(t) > l4len)
                die("bad TCP header length sent");
            if (t->dport == ns_hton16(FUZZ_EST_PORT) && !f->seen_synack &&
                (t->flags & (NS_TCP_SYN | NS_TCP_ACK)) == (NS_TCP_SYN | NS_TCP_ACK)) {
                f->seen_synack = true;
                f->synack_seq = ns_ntoh32(t->seq);
                f->last_tsval = tcp_tsval(l4, ns_tcp_hlen(t));
            }
        }
    }
}

static uint16_t fake_rx(struct netdev *d, struct nsbuf **bufs, uint16_t n)
{
    (void)d;
    (void)bufs;
    (void)n;
    return 0;                    /* frames come through ns_input */
}

static uint16_t fake_tx(struct netdev *d, struct nsbuf **bufs, uint16_t n)
{
    struct fuzz *f = d->priv;
    for (uint16_t i = 0; i < n; i++) {
        check_tx(f, bufs[i]);
        if (fuzz_tx_hook && !f->closing)
            fuzz_tx_hook(bufs[i]->data, bufs[i]->len);
        if (--bufs[i]->refcnt == 0)
            nsbuf_pool_put(bufs[i]);
    }
    return n;
}

static struct nsbuf *fake_alloc(struct netdev *d)
{
    struct fuzz *f = d->priv;
    return nsbuf_pool_get(f->pool);
}

static void fake_free(struct netdev *d, struct nsbuf *b)
{
    (void)d;
    if (b->pool != &g_pool)
        die("a foreign buffer given to the device");
    nsbuf_pool_put(b);
}

static const struct netdev_ops fake_ops = {
    .rx_burst = fake_rx, .tx_burst = fake_tx, .buf_alloc = fake_alloc, .buf_free = fake_free,
};

/* Recompute the IPv4 header checksum and, for an unfragmented datagram, the L4 one. */
static void fix_cksums(uint8_t *p, uint32_t len)
{
    if (len < NS_ETH_HLEN + NS_IPV4_HLEN || get16(p + 12) != NS_ETH_TYPE_IPV4)
        return;
    struct ns_ipv4_hdr *ip = (struct ns_ipv4_hdr *)(p + NS_ETH_HLEN);
    unsigned hlen = ns_ipv4_hlen(ip);
    uint32_t tot = ns_ntoh16(ip->total_len);
    if (hlen < NS_IPV4_HLEN || NS_ETH_HLEN + hlen > len)
        return;
    ip->cksum = 0;
    ip->cksum = ns_ipv4_cksum(ip, hlen);
    if (tot < hlen || NS_ETH_HLEN + tot > len || (ns_ntoh16(ip->frag_off) & (NS_IPV4_MF | NS_IPV4_OFFMASK)))
        return;
    uint8_t *l4 = (uint8_t *)ip + hlen;
    uint32_t l4len = tot - hlen;
    be16_t *ck = NULL;
    uint32_t sum = 0;
    if (ip->proto == NS_IPPROTO_ICMP && l4len >= NS_ICMP_HLEN) {
        ck = (be16_t *)(void *)(l4 + 2);
    } else if (ip->proto == NS_IPPROTO_UDP && l4len >= NS_UDP_HLEN) {
        ck = (be16_t *)(void *)(l4 + 6);
        sum = ns_cksum_pseudo(ip->src, ip->dst, ip->proto, (uint16_t)l4len);
    } else if (ip->proto == NS_IPPROTO_TCP && l4len >= NS_TCP_HLEN) {
        ck = (be16_t *)(void *)(l4 + 16);
        sum = ns_cksum_pseudo(ip->src, ip->dst, ip->proto, (uint16_t)l4len);
    }
    if (!ck)
        return;
    memset(ck, 0, 2);
    be16_t v = ns_cksum_finish(ns_cksum_add(sum, l4, l4len));
    if (ip->proto == NS_IPPROTO_UDP && v == 0)
        v = 0xffff;
    memcpy(ck, &v, 2);
}

static void input(struct fuzz *f, const uint8_t *frame, uint32_t len, bool fix)
{
    struct nsbuf *b = nsbuf_pool_get(f->pool);
    if (!b)
        return;                  /* the stack holds the whole pool: a leak shows at the end */
    if (len > nsbuf_tailroom(b))
        len = nsbuf_tailroom(b);
    uint8_t *p = nsbuf_append(b, len);
    if (len)
        memcpy(p, frame, len);
    if (fix)
        fix_cksums(p, len);
    ns_input(f->ns, b);
}

/* A TCP segment from the peer's FUZZ_EST_PORT to our listener (set-up handshake). */
static void peer_segment(struct fuzz *f, uint8_t flags, uint32_t seq, uint32_t ack, bool syn_opts)
{
    uint8_t fr[NS_ETH_HLEN + NS_IPV4_HLEN + 40];
    uint32_t optlen = syn_opts ? 20 : 12;
    uint32_t tcplen = NS_TCP_HLEN + optlen, tot = NS_IPV4_HLEN + tcplen;
    memset(fr, 0, sizeof(fr));
    memcpy(fr, mac_us, 6);
    memcpy(fr + 6, mac_peer, 6);
    fr[12] = 0x08;
    struct ns_ipv4_hdr *ip = (struct ns_ipv4_hdr *)(fr + NS_ETH_HLEN);
    ip->ver_ihl = 0x45;
    ip->total_len = ns_hton16((uint16_t)tot);
    ip->frag_off = ns_hton16(NS_IPV4_DF);
    ip->ttl = 64;
    ip->proto = NS_IPPROTO_TCP;
    ip->src = NS_IP4(10, 0, 0, 2);
    ip->dst = NS_IP4(10, 0, 0, 1);
    struct ns_tcp_hdr *t = (struct ns_tcp_hdr *)(fr + NS_ETH_HLEN + NS_IPV4_HLEN);
    t->sport = ns_hton16(FUZZ_EST_PORT);
    t->dport = ns_hton16(FUZZ_LISTEN_PORT);
    t->seq = ns_hton32(seq);
    t->ack = ns_hton32(ack);
    t->data_off = (uint8_t)((tcplen / 4) << 4);
    t->flags = flags;
    t->window = ns_hton16(65535);
    uint8_t *o = (uint8_t *)(t + 1);
    if (syn_opts) {
        /* MSS 1460, SACK permitted, timestamps, window scale 7. */
        const uint8_t so[20] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7 };
        memcpy(o, so, 20);
        o += 8;
    } else {
        const uint8_t ao[12] = { 1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0 };
        memcpy(o, ao, 12);
        o += 4;
    }
    uint32_t tsval = FUZZ_PEER_TSVAL, tsecr = f->last_tsval;
    uint8_t ts[8] = { (uint8_t)(tsval >> 24), (uint8_t)(tsval >> 16), (uint8_t)(tsval >> 8), (uint8_t)tsval,
                      (uint8_t)(tsecr >> 24), (uint8_t)(tsecr >> 16), (uint8_t)(tsecr >> 8), (uint8_t)tsecr };
    memcpy(o, ts, 8);
    input(f, fr, NS_ETH_HLEN + tot, true);
}

static void world_init(struct fuzz *f)
{
    memset(f, 0, sizeof(*f));
    if (!g_pool_ready) {
        if (nsbuf_pool_init(&g_pool, POOL_BUFS, BUF_SIZE, HEADROOM) < 0)
            die("pool");
        g_pool_ready = true;
    }
    f->pool = &g_pool;
    f->dev.ops = &fake_ops;
    memcpy(f->dev.mac, mac_us, 6);
    f->dev.mtu = 1500;
    f->dev.priv = f;
    f->now = FUZZ_T0_NS;
    f->listener = f->est = f->conn = -1;
    for (int i = 0; i < 3; i++)
        f->udp[i] = -1;

    struct ns_config cfg;
    ns_config_defaults(&cfg);
    cfg.ipv4 = NS_IP4(10, 0, 0, 1);
    cfg.netmask = NS_IP4(255, 255, 255, 0);
    cfg.gateway = NS_IP4(10, 0, 0, 254);
    struct ns_arp_static st = { .ip = NS_IP4(10, 0, 0, 2) };
    memcpy(st.mac, mac_peer, 6);
    cfg.arp_static = &st;
    cfg.n_arp_static = 1;
    if (ns_create(&cfg, &f->dev, f->now, &f->ns) < 0)
        die("ns_create");

    struct ns_sockaddr a = { .addr = 0, .port = ns_hton16(7) };
    f->udp[0] = ns_udp_socket(f->ns);
    ns_udp_bind(f->ns, f->udp[0], &a);
    a.port = ns_hton16(5353);
    f->udp[1] = ns_udp_socket(f->ns);
    ns_udp_bind(f->ns, f->udp[1], &a);
    struct ns_sockaddr peer = { .addr = NS_IP4(10, 0, 0, 2), .port = ns_hton16(9999) };
    f->udp[2] = ns_udp_socket(f->ns);
    ns_udp_connect(f->ns, f->udp[2], &peer);

    int sd = ns_tcp_socket(f->ns);
    if (sd < 0)
        return;                  /* TCP not built in */
    a.port = ns_hton16(FUZZ_LISTEN_PORT);
    if (ns_tcp_bind(f->ns, sd, &a) < 0 || ns_tcp_listen(f->ns, sd, 8) < 0)
        die("tcp listen");
    f->listener = sd;
    peer_segment(f, NS_TCP_SYN, FUZZ_PEER_ISN, 0, true);
    ns_poll(f->ns, f->now);
    if (!f->seen_synack)
        die("no SYN-ACK to the set-up handshake");
    f->now += 1000000;           /* 1 ms of RTT */
    peer_segment(f, NS_TCP_ACK, FUZZ_PEER_ISN + 1, f->synack_seq + 1, false);
    ns_poll(f->ns, f->now);
    f->est = ns_tcp_accept(f->ns, f->listener, NULL);
    if (f->est < 0)
        die("set-up handshake did not establish");

    f->conn = ns_tcp_socket(f->ns);
    peer.port = ns_hton16(FUZZ_CONNECT_PORT);
    if (f->conn < 0 || ns_tcp_connect(f->ns, f->conn, &peer) != -EINPROGRESS)
        die("tcp connect");
    ns_poll(f->ns, f->now);
}

static void world_fini(struct fuzz *f)
{
    /* FUZZ_STATS=1: print the counters each input moved (to check what a seed exercises). */
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FUZZ_STATS") != NULL;
    if (verbose) {
        struct ns_stats st;
        ns_stats_get(f->ns, &st);
        for (size_t i = 0; i < NS_STATS_COUNT; i++)
            if (ns_stats_value(&st, i))
                fprintf(stderr, "  %s %llu\n", ns_stats_name(i), (unsigned long long)ns_stats_value(&st, i));
    }
    f->closing = true;
    for (int i = 0; i < 3; i++)
        if (f->udp[i] >= 0)
            ns_udp_close(f->ns, f->udp[i]);
    for (int i = 0; i < f->ntcp; i++)
        ns_tcp_close(f->ns, f->tcp[i]);
    if (f->est >= 0)
        ns_tcp_close(f->ns, f->est);
    if (f->conn >= 0)
        ns_tcp_close(f->ns, f->conn);
    if (f->listener >= 0)
        ns_tcp_close(f->ns, f->listener);
    ns_poll(f->ns, f->now);
    ns_destroy(f->ns);
    f->ns = NULL;
    if (g_pool.in_use != 0) {
        fprintf(stderr, "fuzz_frames: %u buffer(s) not back in the pool after ns_destroy\n", g_pool.in_use);
        abort();
    }
}

static void app_actions(struct fuzz *f, uint8_t act, const uint8_t *frame, uint32_t len)
{
    struct netstack *ns = f->ns;
    static uint8_t buf[70000];
    if (act & FUZZ_ACT_UDP_RECV) {
        for (int i = 0; i < 3; i++) {
            struct nsbuf *b = NULL;
            struct ns_sockaddr src;
            if (ns_udp_recv_buf(ns, f->udp[i], &b, &src) >= 0 && b)
                ns_buf_free(ns, b);
            while (ns_udp_recvfrom(ns, f->udp[i], buf, (i == 1 ? 10 : sizeof(buf)), &src) >= 0) {
            }
        }
    }
    if (act & FUZZ_ACT_UDP_SEND) {
        struct ns_sockaddr peer = { .addr = NS_IP4(10, 0, 0, 2), .port = ns_hton16(9999) };
        ns_udp_sendto(ns, f->udp[0], frame, len > 1472 ? 1472 : len, &peer);
        ns_udp_sendto(ns, f->udp[2], frame, len > 100 ? 100 : len, NULL);
    }
    if (f->listener < 0)
        return;
    if (act & FUZZ_ACT_TCP_RECV) {
        int sd;
        while (f->ntcp < MAX_TCP && (sd = ns_tcp_accept(ns, f->listener, NULL)) >= 0)
            f->tcp[f->ntcp++] = sd;
        int socks[MAX_TCP + 2], n = 0;
        for (int i = 0; i < f->ntcp; i++)
            socks[n++] = f->tcp[i];
        if (f->est >= 0)
            socks[n++] = f->est;
        if (f->conn >= 0)
            socks[n++] = f->conn;
        for (int i = 0; i < n; i++) {
            struct nsbuf *b = NULL;
            if (ns_tcp_recv_buf(ns, socks[i], &b) >= 0 && b)
                ns_buf_free(ns, b);
            while (ns_tcp_recv(ns, socks[i], buf, 3000) > 0) {
            }
        }
    }
    if (act & FUZZ_ACT_TCP_SEND) {
        uint32_t n = len ? len : 1;
        if (f->est >= 0)
            ns_tcp_send(ns, f->est, buf, n * 7 > sizeof(buf) ? sizeof(buf) : n * 7);
        if (f->conn >= 0)
            ns_tcp_send(ns, f->conn, buf, n);
        for (int i = 0; i < f->ntcp; i++)
            ns_tcp_send(ns, f->tcp[i], buf, n);
    }
    if ((act & FUZZ_ACT_TCP_SHUT) && f->est >= 0)
        ns_tcp_shutdown(ns, f->est, len % 3);
    if (act & FUZZ_ACT_TCP_CLOSE) {
        if (f->ntcp > 0) {
            ns_tcp_close(ns, f->tcp[--f->ntcp]);
        } else if (f->est >= 0) {
            if (len & 1)
                ns_tcp_setsockopt(ns, f->est, NS_SO_LINGER0, 1);
            ns_tcp_close(ns, f->est);
            f->est = -1;
        }
    }
    if (act & FUZZ_ACT_MISC) {
        struct ns_event ev[8];
        while (ns_events(ns, ev, 8) == 8) {
        }
        struct ns_tcp_info ti;
        if (f->est >= 0) {
            ns_tcp_info(ns, f->est, &ti);
            ns_tcp_setsockopt(ns, f->est, NS_TCP_NODELAY, (int)(len & 1));
            ns_tcp_events(ns, f->est);
        }
        ns_ping_send(ns, NS_IP4(10, 0, 0, 2), 1, (uint16_t)len, frame, len > 64 ? 64 : len);
        struct ns_ping_reply pr;
        while (ns_ping_reply(ns, &pr) == 0) {
        }
        (void)ns_next_timer(ns);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz f;
    world_init(&f);
    while (size >= 4) {
        uint8_t dt = data[0], act = data[1];
        uint32_t len = get16(data + 2);
        data += 4;
        size -= 4;
        if (len > size)
            len = (uint32_t)size;
        f.now += dt < 128 ? (uint64_t)dt * 1000000u : (uint64_t)(dt - 127) * 500000000u;
        if (len)
            input(&f, data, len, act & FUZZ_ACT_FIX_CKSUM);
        ns_poll(f.ns, f.now);
        app_actions(&f, act, data, len);
        ns_poll(f.ns, f.now);
        data += len;
        size -= len;
    }
    world_fini(&f);
    return 0;
}

