/*
 * Writes the frame fuzzer's seed corpus (tests/fuzz/corpus/): valid and
 * broken ARP, ICMP, UDP, IPv4 fragments and TCP conversations in the input
 * format of fuzz_frames.h. TCP seeds that need the stack's sequence numbers
 * run the input built so far through the fuzz target and read them from the
 * frames it sends (fuzz_tx_hook): the target is deterministic, so the replay
 * of the finished file meets the same numbers.
 * Usage: fuzz_gen_corpus DIR  (see doc/fuzzing.md). Chain: main -> seeds ->
 * LLVMFuzzerTestOneInput (for TCP numbers) -> files in DIR.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_frames.h"
#include "netstack.h"
#include "prot/arp.h"
#include "prot/cksum.h"
#include "prot/ether.h"
#include "prot/icmp.h"
#include "prot/ipv4.h"
#include "prot/tcp.h"
#include "prot/udp.h"

static const uint8_t mac_us[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t mac_peer[6] = { 0x02, 0, 0, 0, 0, 0x02 };
static const uint8_t mac_other[6] = { 0x02, 0, 0, 0, 0, 0x03 };
static const uint8_t mac_bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
#define IP_US NS_IP4(10, 0, 0, 1)
#define IP_PEER NS_IP4(10, 0, 0, 2)
#define IP_OTHER NS_IP4(10, 0, 0, 3)

/* ---- the input being built */
struct input {
    uint8_t d[1 << 18];
    size_t n;
};

static const char *g_dir;
static int g_files;

static void rec(struct input *in, uint8_t dt, uint8_t act, const uint8_t *frame, size_t len)
{
    if (in->n + 4 + len > sizeof(in->d)) {
        fprintf(stderr, "seed too large\n");
        exit(1);
    }
    uint8_t *p = in->d + in->n;
    p[0] = dt;
    p[1] = act;
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    /* No frame but a length (an action size): zeros, which the stack drops (MAC 0 is not ours). */
    if (len && frame)
        memcpy(p + 4, frame, len);
    else if (len)
        memset(p + 4, 0, len);
    in->n += 4 + len;
}

static void save(const struct input *in, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(in->d, 1, in->n, fp) != in->n || fclose(fp) != 0) {
        perror(path);
        exit(1);
    }
    g_files++;
}

/* ---- frame builders (all checksums right unless a test breaks them afterwards) */
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }

static size_t eth(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    put16(f + 12, type);
    return NS_ETH_HLEN;
}

static size_t arp(uint8_t *f, const uint8_t *edst, uint16_t op, const uint8_t *sha, be32_t spa, const uint8_t *tha,
                  be32_t tpa)
{
    size_t n = eth(f, edst, sha, NS_ETH_TYPE_ARP);
    uint8_t *a = f + n;
    put16(a, NS_ARP_HTYPE_ETHER);
    put16(a + 2, NS_ETH_TYPE_IPV4);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, sha, 6);
    memcpy(a + 14, &spa, 4);
    memcpy(a + 18, tha, 6);
    memcpy(a + 24, &tpa, 4);
    return n + NS_ARP_LEN;
}

struct ipspec {
    be32_t src, dst;
    uint8_t proto;
    uint16_t id;
    uint16_t frag;               /* flags | offset, host order; 0 means DF */
    const uint8_t *opts;
    size_t olen;
    const uint8_t *emac;         /* source MAC; NULL: the peer's */
    const uint8_t *edst;         /* destination MAC; NULL: ours */
};

/* Ethernet + IPv4 around l4[0..len). */
static size_t ip_frame(uint8_t *f, const struct ipspec *s, const uint8_t *l4, size_t len)
{
    size_t n = eth(f, s->edst ? s->edst : mac_us, s->emac ? s->emac : mac_peer, NS_ETH_TYPE_IPV4);
    uint8_t *ip = f + n;
    size_t hlen = NS_IPV4_HLEN + s->olen;
    memset(ip, 0, NS_IPV4_HLEN);
    ip[0] = (uint8_t)(0x40 | (hlen / 4));
    put16(ip + 2, (uint16_t)(hlen + len));
    put16(ip + 4, s->id);
    put16(ip + 6, s->frag ? s->frag : NS_IPV4_DF);
    ip[8] = 64;
    ip[9] = s->proto;
    memcpy(ip + 12, &s->src, 4);
    memcpy(ip + 16, &s->dst, 4);
    if (s->olen)
        memcpy(ip + NS_IPV4_HLEN, s->opts, s->olen);
    be16_t ck = ns_ipv4_cksum(ip, (unsigned)hlen);
    memcpy(ip + 10, &ck, 2);
    memcpy(ip + hlen, l4, len);
    return n + hlen + len;
}

static size_t udp(uint8_t *u, be32_t src, be32_t dst, uint16_t sport, uint16_t dport, const uint8_t *data, size_t n)
{
    put16(u, sport);
    put16(u + 2, dport);
    put16(u + 4, (uint16_t)(8 + n));
    put16(u + 6, 0);
    memcpy(u + 8, data, n);
    be16_t ck = ns_cksum_finish(ns_cksum_add(ns_cksum_pseudo(src, dst, NS_IPPROTO_UDP, (uint16_t)(8 + n)), u, 8 + n));
    if (ck == 0)
        ck = 0xffff;
    memcpy(u + 6, &ck, 2);
    return 8 + n;
}

static size_t icmp(uint8_t *c, uint8_t type, uint8_t code, uint32_t rest, const uint8_t *data, size_t n)
{
    c[0] = type;
    c[1] = code;
    put16(c + 2, 0);
    put32(c + 4, rest);
    memcpy(c + 8, data, n);
    be16_t ck = ns_cksum_finish(ns_cksum_add(0, c, 8 + n));
    memcpy(c + 2, &ck, 2);
    return 8 + n;
}

struct tcpspec {
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t win;
    const uint8_t *opts;
    size_t olen;                 /* a multiple of 4 */
};

static size_t tcp(uint8_t *t, be32_t src, be32_t dst, const struct tcpspec *s, const uint8_t *data, size_t n)
{
    size_t hlen = NS_TCP_HLEN + s->olen;
    memset(t, 0, NS_TCP_HLEN);
    put16(t, s->sport);
    put16(t + 2, s->dport);
    put32(t + 4, s->seq);
    put32(t + 8, s->ack);
    t[12] = (uint8_t)((hlen / 4) << 4);
    t[13] = s->flags;
    put16(t + 14, s->win);
    if (s->olen)
        memcpy(t + NS_TCP_HLEN, s->opts, s->olen);
    if (n)
        memcpy(t + hlen, data, n);
    be16_t ck = ns_cksum_finish(
        ns_cksum_add(ns_cksum_pseudo(src, dst, NS_IPPROTO_TCP, (uint16_t)(hlen + n)), t, hlen + n));
    memcpy(t + 16, &ck, 2);
    return hlen + n;
}

static size_t udp_frame(uint8_t *f, uint16_t sport, uint16_t dport, const uint8_t *data, size_t n)
{
    uint8_t l4[2048];
    size_t l = udp(l4, IP_PEER, IP_US, sport, dport, data, n);
    struct ipspec s = { .src = IP_PEER, .dst = IP_US, .proto = NS_IPPROTO_UDP, .id = 1 };
    return ip_frame(f, &s, l4, l);
}

static size_t tcp_frame(uint8_t *f, const struct tcpspec *ts, const uint8_t *data, size_t n)
{
    static uint8_t l4[2048];
    size_t l = tcp(l4, IP_PEER, IP_US, ts, data, n);
    struct ipspec s = { .src = IP_PEER, .dst = IP_US, .proto = NS_IPPROTO_TCP, .id = 2 };
    return ip_frame(f, &s, l4, l);
}

/* ---- what the stack sent: the last TCP segment to each peer port */
struct seen {
    bool valid;
    uint32_t seq, ack, end;      /* end: seq + data + SYN + FIN */
    uint8_t flags;
    uint32_t tsval;
    uint16_t sport;
};
static struct seen g_seen[65536];

static void hook(const uint8_t *fr, uint32_t len)
{
    if (len < NS_ETH_HLEN + 40 || fr[12] != 0x08 || fr[13] != 0 || fr[NS_ETH_HLEN + 9] != NS_IPPROTO_TCP)
        return;
    const uint8_t *ip = fr + NS_ETH_HLEN;
    unsigned ihl = (ip[0] & 0xfu) * 4u, tot = (unsigned)(ip[2] << 8 | ip[3]);
    const uint8_t *t = ip + ihl;
    unsigned thl = (t[12] >> 4) * 4u, dlen = tot - ihl - thl;
    struct seen *s = &g_seen[t[2] << 8 | t[3]];
    s->valid = true;
    s->sport = (uint16_t)(t[0] << 8 | t[1]);
    s->seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 | (uint32_t)t[6] << 8 | t[7];
    s->ack = (uint32_t)t[8] << 24 | (uint32_t)t[9] << 16 | (uint32_t)t[10] << 8 | t[11];
    s->flags = t[13];
    s->end = s->seq + dlen + !!(s->flags & NS_TCP_SYN) + !!(s->flags & NS_TCP_FIN);
    for (const uint8_t *o = t + 20; o + 10 <= t + thl;) {
        if (*o == NS_TCPOPT_NOP) {
            o++;
            continue;
        }
        if (*o == NS_TCPOPT_EOL || o[1] < 2)
            break;
        if (o[0] == NS_TCPOPT_TIMESTAMP)
            s->tsval = (uint32_t)o[2] << 24 | (uint32_t)o[3] << 16 | (uint32_t)o[4] << 8 | o[5];
        o += o[1];
    }
}

/* Run the input so far; afterwards g_seen tells what the stack last sent to each peer port. */
static void learn(const struct input *in)
{
    memset(g_seen, 0, sizeof(g_seen));
    fuzz_tx_hook = hook;
    LLVMFuzzerTestOneInput(in->d, in->n);
    fuzz_tx_hook = NULL;
}

/* A peer conversation from port `port` to ours, with timestamps echoing ours. */
struct conv {
    uint16_t port, dport;
    uint32_t snd, rcv;           /* the peer's next sequence number and what it acknowledges */
    uint32_t tsval;
};

static size_t ts_opts(uint8_t *o, uint32_t tsval, uint32_t tsecr)
{
    o[0] = NS_TCPOPT_NOP;
    o[1] = NS_TCPOPT_NOP;
    o[2] = NS_TCPOPT_TIMESTAMP;
    o[3] = NS_TCPOLEN_TIMESTAMP;
    put32(o + 4, tsval);
    put32(o + 8, tsecr);
    return 12;
}

static void conv_seg(struct input *in, struct conv *c, uint8_t dt, uint8_t act, uint8_t flags, const uint8_t *data,
                     size_t n)
{
    uint8_t o[12], f[2048];
    c->tsval += 10;
    struct tcpspec s = { .sport = c->port, .dport = c->dport, .seq = c->snd, .ack = c->rcv, .flags = flags,
                         .win = 65535, .opts = o, .olen = ts_opts(o, c->tsval, g_seen[c->port].tsval) };
    rec(in, dt, act, f, tcp_frame(f, &s, data, n));
    c->snd += (uint32_t)n + !!(flags & NS_TCP_SYN) + !!(flags & NS_TCP_FIN);
}

/* Learn where the stack is and acknowledge everything it sent to this conversation. */
static void conv_sync(struct input *in, struct conv *c)
{
    learn(in);
    if (g_seen[c->port].valid)
        c->rcv = g_seen[c->port].end;
}

static const uint8_t syn_opts_all[20] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7 };

/* A new connection from the peer's port to our listener, through the handshake. */
static void conv_open(struct input *in, struct conv *c, uint16_t port)
{
    uint8_t f[2048];
    c->port = port;
    c->dport = FUZZ_LISTEN_PORT;
    c->snd = 0x10000000u + port;
    c->tsval = 100;
    struct tcpspec s = { .sport = port, .dport = FUZZ_LISTEN_PORT, .seq = c->snd, .flags = NS_TCP_SYN, .win = 65535,
                         .opts = syn_opts_all, .olen = sizeof(syn_opts_all) };
    rec(in, 1, 0, f, tcp_frame(f, &s, NULL, 0));
    c->snd++;
    conv_sync(in, c);
    conv_seg(in, c, 1, FUZZ_ACT_TCP_RECV, NS_TCP_ACK, NULL, 0);
}

/* The set-up's established connection (fuzz_frames.h), as the peer sees it. */
static void conv_est(struct input *in, struct conv *c)
{
    c->port = FUZZ_EST_PORT;
    c->dport = FUZZ_LISTEN_PORT;
    c->snd = FUZZ_PEER_ISN + 1;
    c->tsval = FUZZ_PEER_TSVAL;
    conv_sync(in, c);
}

static uint8_t g_data[65536];

/* ---- the seeds */
static void seeds_arp(void)
{
    struct input in = { .n = 0 };
    uint8_t f[128];
    rec(&in, 0, 0, f, arp(f, mac_bcast, NS_ARP_OP_REQUEST, mac_other, IP_OTHER, (const uint8_t[6]){ 0 }, IP_US));
    save(&in, "arp-request");
    in.n = 0;
    rec(&in, 0, 0, f, arp(f, mac_us, NS_ARP_OP_REPLY, mac_other, IP_OTHER, mac_us, IP_US));
    rec(&in, 0, FUZZ_ACT_MISC, f, arp(f, mac_bcast, NS_ARP_OP_REQUEST, mac_other, IP_OTHER, mac_bcast, IP_OTHER));
    rec(&in, 0, 0, f, arp(f, mac_bcast, NS_ARP_OP_REPLY, mac_other, IP_PEER, mac_bcast, IP_PEER));
    save(&in, "arp-reply-gratuitous-static-conflict");
    in.n = 0;
    /* A datagram to an unresolved neighbour, then its reply; then the cache ages out. */
    uint8_t l4[64], g[128];
    size_t n = icmp(l4, NS_ICMP_ECHO_REQUEST, 0, 0x00070001, g_data, 16);
    struct ipspec s = { .src = IP_OTHER, .dst = IP_US, .proto = NS_IPPROTO_ICMP, .id = 9, .emac = mac_other };
    rec(&in, 0, 0, g, ip_frame(g, &s, l4, n));
    rec(&in, 5, 0, f, arp(f, mac_us, NS_ARP_OP_REPLY, mac_other, IP_OTHER, mac_us, IP_US));
    rec(&in, 200, 0, NULL, 0);
    rec(&in, 0, 0, g, ip_frame(g, &s, l4, n));
    rec(&in, 100, 0, NULL, 0);
    save(&in, "arp-resolve-and-expire");
}

static void seeds_icmp_udp(void)
{
    struct input in = { .n = 0 };
    uint8_t f[2048], l4[2048];
    struct ipspec s = { .src = IP_PEER, .dst = IP_US, .proto = NS_IPPROTO_ICMP, .id = 3 };
    rec(&in, 0, 0, f, ip_frame(f, &s, l4, icmp(l4, NS_ICMP_ECHO_REQUEST, 0, 0x12340001, g_data, 56)));
    rec(&in, 1, FUZZ_ACT_MISC, f, ip_frame(f, &s, l4, icmp(l4, NS_ICMP_ECHO_REPLY, 0, 0x00010000, g_data, 0)));
    rec(&in, 0, 0, f, ip_frame(f, &s, l4, icmp(l4, 13, 0, 0, g_data, 12)));
    save(&in, "icmp-echo-and-reply");

    in.n = 0;
    rec(&in, 0, FUZZ_ACT_UDP_RECV, f, udp_frame(f, 1234, 7, (const uint8_t *)"hello", 5));
    rec(&in, 0, 0, f, udp_frame(f, 1234, 5353, g_data, 300));
    rec(&in, 0, FUZZ_ACT_UDP_RECV, f, udp_frame(f, 9999, 49152, g_data, 20));
    save(&in, "udp-bound-ports");

    in.n = 0;
    rec(&in, 0, 0, f, udp_frame(f, 1234, 9, g_data, 10));
    s.dst = NS_IP4(10, 0, 0, 255);
    s.edst = mac_bcast;
    s.proto = NS_IPPROTO_UDP;
    rec(&in, 0, 0, f, ip_frame(f, &s, l4, udp(l4, IP_PEER, s.dst, 1234, 9, g_data, 10)));
    save(&in, "udp-unbound-port-and-broadcast");

    /* Our datagram to 9999 answered by port unreachable quoting it. */
    in.n = 0;
    rec(&in, 0, FUZZ_ACT_UDP_SEND, NULL, 0);
    uint8_t q[28];
    struct ipspec qs = { .src = IP_US, .dst = IP_PEER, .proto = NS_IPPROTO_UDP };
    uint8_t tmp[64];
    size_t ql = ip_frame(tmp, &qs, l4, udp(l4, IP_US, IP_PEER, 49152, 9999, NULL, 0));
    memcpy(q, tmp + NS_ETH_HLEN, ql - NS_ETH_HLEN);
    s = (struct ipspec){ .src = IP_PEER, .dst = IP_US, .proto = NS_IPPROTO_ICMP, .id = 4 };
    rec(&in, 1, FUZZ_ACT_UDP_RECV | FUZZ_ACT_UDP_SEND, f,
        ip_frame(f, &s, l4, icmp(l4, NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_PORT, 0, q, 28)));
    save(&in, "udp-connected-port-unreachable");
}

/* UDP datagram of n data bytes to port 7, cut in pieces of `piece`, sent in the given order. */
static void frag_seed(const char *name, size_t n, size_t piece, const int *order, int norder, uint8_t last_dt,
                      uint16_t extra_off)
{
    struct input in = { .n = 0 };
    static uint8_t l4[70000];
    uint8_t f[2048];
    size_t len = udp(l4, IP_PEER, IP_US, 1234, 7, g_data, n);
    int nfr = (int)((len + piece - 1) / piece);
    for (int k = 0; k < norder; k++) {
        int i = order[k] < 0 ? nfr + order[k] : order[k];
        if (i < 0 || i >= nfr)
            continue;
        size_t off = (size_t)i * piece, l = len - off < piece ? len - off : piece;
        struct ipspec s = { .src = IP_PEER, .dst = IP_US, .proto = NS_IPPROTO_UDP, .id = 77,
                            .frag = (uint16_t)((i + 1 < nfr ? NS_IPV4_MF : 0) | ((off + extra_off * (k == norder - 1)) / 8)) };
        rec(&in, k == norder - 1 ? last_dt : 0, FUZZ_ACT_UDP_RECV, f, ip_frame(f, &s, l4 + off, l));
    }
    save(&in, name);
}

static void seeds_frag(void)
{
    int inorder[64], reverse[64];
    for (int i = 0; i < 64; i++) {
        inorder[i] = i;
        reverse[i] = 63 - i;
    }
    frag_seed("ip-frag-in-order", 3000, 1480, inorder, 3, 0, 0);
    frag_seed("ip-frag-reverse-small-pieces", 1000, 256, reverse + 60, 4, 0, 0);
    int dup[] = { 0, 0, 2, 1, 1 };
    frag_seed("ip-frag-duplicates", 3000, 1480, dup, 5, 0, 0);
    int missing[] = { 0, 2 };
    frag_seed("ip-frag-missing-timeout", 3000, 1000, missing, 2, 200, 0);
    int overl[] = { 0, 1 };
    frag_seed("ip-frag-overlap", 3000, 1000, overl, 2, 0, 8);
    frag_seed("ip-frag-64k", 65507, 1480, inorder, 45, 0, 0);

    struct input in = { .n = 0 };
    uint8_t f[2048];
    struct ipspec s = { .src = IP_PEER, .dst = IP_US, .proto = NS_IPPROTO_ICMP, .id = 5, .frag = 8191 };
    rec(&in, 0, 0, f, ip_frame(f, &s, g_data, 100));
    s.frag = NS_IPV4_MF | 1;
    rec(&in, 0, 0, f, ip_frame(f, &s, g_data, 13));
    s.frag = NS_IPV4_MF;
    rec(&in, 0, 0, f, ip_frame(f, &s, g_data, 0));
    save(&in, "ip-frag-ping-of-death-bad-lengths");
}

static void seeds_tcp(void)
{
    struct input in = { .n = 0 };
    uint8_t f[2048];
    struct conv c;

    /* A SYN with every option, then a flood of SYNs from many ports. */
    struct tcpspec s = { .sport = 41000, .dport = FUZZ_LISTEN_PORT, .seq = 777, .flags = NS_TCP_SYN, .win = 1024,
                         .opts = syn_opts_all, .olen = sizeof(syn_opts_all) };
    rec(&in, 0, FUZZ_ACT_TCP_RECV, f, tcp_frame(f, &s, NULL, 0));
    save(&in, "tcp-syn-to-listener");
    for (uint16_t p = 0; p < 40; p++) {
        s.sport = (uint16_t)(42000 + p);
        rec(&in, 0, 0, f, tcp_frame(f, &s, NULL, 0));
    }
    rec(&in, 200, FUZZ_ACT_TCP_RECV, NULL, 0);
    save(&in, "tcp-syn-flood");

    /* SYN to a closed port (RST expected), and a stray ACK. */
    in.n = 0;
    s.dport = 81;
    rec(&in, 0, 0, f, tcp_frame(f, &s, NULL, 0));
    s.flags = NS_TCP_ACK;
    s.olen = 0;
    rec(&in, 0, 0, f, tcp_frame(f, &s, g_data, 10));
    save(&in, "tcp-closed-port");

    /* A full conversation: handshake, data both ways, FIN from the peer, our close. */
    in.n = 0;
    conv_open(&in, &c, 40002);
    conv_seg(&in, &c, 1, FUZZ_ACT_TCP_RECV, NS_TCP_ACK | NS_TCP_PSH, (const uint8_t *)"GET / HTTP/1.0\r\n\r\n", 18);
    rec(&in, 0, FUZZ_ACT_TCP_SEND, NULL, 100);
    conv_sync(&in, &c);
    conv_seg(&in, &c, 1, 0, NS_TCP_ACK, NULL, 0);
    conv_seg(&in, &c, 1, FUZZ_ACT_TCP_RECV, NS_TCP_ACK | NS_TCP_FIN, NULL, 0);
    rec(&in, 1, FUZZ_ACT_TCP_CLOSE, NULL, 0);
    conv_sync(&in, &c);
    conv_seg(&in, &c, 1, 0, NS_TCP_ACK, NULL, 0);
    rec(&in, 255, 0, NULL, 0);
    save(&in, "tcp-handshake-data-fin");

    /* The established connection: in-order data, a hole and SACK-able out-of-order data, then RST. */
    in.n = 0;
    conv_est(&in, &c);
    conv_seg(&in, &c, 0, 0, NS_TCP_ACK | NS_TCP_PSH, g_data, 1000);
    uint32_t hole = c.snd;
    c.snd += 500;
    conv_seg(&in, &c, 0, 0, NS_TCP_ACK, g_data, 700);
    uint32_t after = c.snd;
    c.snd = hole;
    conv_seg(&in, &c, 5, FUZZ_ACT_TCP_RECV, NS_TCP_ACK, g_data, 500);
    c.snd = after;
    save(&in, "tcp-est-out-of-order");
    conv_seg(&in, &c, 1, 0, NS_TCP_RST, NULL, 0);
    rec(&in, 0, FUZZ_ACT_TCP_RECV, NULL, 0);
    save(&in, "tcp-est-rst");

    /* RST and SYN outside / inside the window: challenge ACKs (RFC 5961). */
    in.n = 0;
    conv_est(&in, &c);
    c.snd += 100000;
    conv_seg(&in, &c, 0, 0, NS_TCP_RST, NULL, 0);
    c.snd -= 100000 - 10;
    conv_seg(&in, &c, 0, 0, NS_TCP_RST, NULL, 0);
    c.snd -= 10;
    conv_seg(&in, &c, 0, 0, NS_TCP_SYN, NULL, 0);
    save(&in, "tcp-est-rst-syn-window-checks");

    /* Our data, lost: retransmissions, then SACK blocks and duplicate ACKs from the peer. */
    in.n = 0;
    conv_est(&in, &c);
    uint32_t una = c.rcv, mss = 1448;    /* 1460 less the timestamp option */
    rec(&in, 0, FUZZ_ACT_TCP_SEND, NULL, 1400);
    rec(&in, 0, FUZZ_ACT_TCP_SEND, NULL, 1400);
    conv_sync(&in, &c);
    {
        uint8_t o[40];
        size_t k = ts_opts(o, c.tsval + 5, g_seen[c.port].tsval);
        o[k++] = NS_TCPOPT_NOP;
        o[k++] = NS_TCPOPT_NOP;
        o[k++] = NS_TCPOPT_SACK;
        o[k++] = 18;
        put32(o + k, una + 2 * mss);
        put32(o + k + 4, una + 4 * mss);
        put32(o + k + 8, una + 5 * mss);
        put32(o + k + 12, una + 7 * mss);
        k += 16;
        /* A new ACK for the first segment, then three duplicates with SACK blocks: fast retransmit. */
        for (int i = 0; i < 4; i++) {
            struct tcpspec d = { .sport = c.port, .dport = c.dport, .seq = c.snd, .ack = una + mss, .flags = NS_TCP_ACK,
                                 .win = 65535, .opts = o, .olen = i == 0 ? 12 : k };
            rec(&in, 1, 0, f, tcp_frame(f, &d, NULL, 0));
        }
    }
    rec(&in, 250, 0, NULL, 0);
    rec(&in, 250, 0, NULL, 0);
    save(&in, "tcp-est-sack-dupacks-rto");

    /* A zero window from the peer, probes, then the window opens. */
    in.n = 0;
    conv_est(&in, &c);
    {
        uint8_t o[12];
        struct tcpspec z = { .sport = c.port, .dport = c.dport, .seq = c.snd, .ack = c.rcv, .flags = NS_TCP_ACK,
                             .win = 0, .opts = o, .olen = ts_opts(o, c.tsval + 1, g_seen[c.port].tsval) };
        rec(&in, 0, FUZZ_ACT_TCP_SEND, f, tcp_frame(f, &z, NULL, 0));
        rec(&in, 200, 0, NULL, 0);
        z.win = 65535;
        rec(&in, 0, FUZZ_ACT_TCP_SEND, f, tcp_frame(f, &z, NULL, 0));
    }
    save(&in, "tcp-est-zero-window");

    /* Every TCP option, good and malformed, on the established connection. */
    in.n = 0;
    conv_est(&in, &c);
    {
        static const uint8_t optsets[][40] = {
            { 2, 4, 0x02, 0x18, 3, 3, 14, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0 },   /* MSS WS SACK-perm TS */
            { 5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1 },                                   /* SACK 1 block */
            { 5, 34, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 8, 1, 1 },
            { 8, 10, 0, 0, 0, 9 },                                                     /* truncated TS */
            { 2, 0, 0, 0 },                                                            /* length 0 */
            { 2, 1, 0, 0 },                                                            /* length 1 */
            { 99, 2, 0, 0 },                                                           /* unknown kind */
            { 30, 40, 0, 0 },                                                          /* length past the header */
            { 0, 2, 4, 2 },                                                            /* EOL first */
            { 1, 1, 1, 1, 1, 1, 1, 1 },                                                /* NOPs */
            { 3, 3, 200, 0 },                                                          /* window scale > 14 */
            { 28, 4, 0, 0 },                                                           /* user timeout */
        };
        static const size_t optlens[] = { 20, 12, 36, 8, 4, 4, 4, 4, 4, 8, 4, 4 };
        for (size_t i = 0; i < sizeof(optlens) / sizeof(optlens[0]); i++) {
            struct tcpspec d = { .sport = c.port, .dport = c.dport, .seq = c.snd, .ack = c.rcv,
                                 .flags = (uint8_t)(i == 0 ? NS_TCP_SYN : NS_TCP_ACK), .win = 1000,
                                 .opts = optsets[i], .olen = optlens[i] };
            rec(&in, 0, 0, f, tcp_frame(f, &d, g_data, i * 3));
        }
    }
    save(&in, "tcp-options-every-kind");

    /* Our connect() answered: SYN-ACK, data, FIN; and another variant answered by RST. */
    in.n = 0;
    learn(&in);
    if (g_seen[FUZZ_CONNECT_PORT].valid) {
        struct seen sy = g_seen[FUZZ_CONNECT_PORT];
        c = (struct conv){ .port = FUZZ_CONNECT_PORT, .dport = sy.sport, .snd = 5555, .rcv = sy.seq + 1, .tsval = 1 };
        struct tcpspec sa = { .sport = c.port, .dport = c.dport, .seq = c.snd, .ack = c.rcv,
                              .flags = NS_TCP_SYN | NS_TCP_ACK, .win = 65535, .opts = syn_opts_all,
                              .olen = sizeof(syn_opts_all) };
        rec(&in, 1, FUZZ_ACT_TCP_SEND, f, tcp_frame(f, &sa, NULL, 0));
        c.snd++;
        conv_sync(&in, &c);
        conv_seg(&in, &c, 1, FUZZ_ACT_TCP_RECV, NS_TCP_ACK | NS_TCP_PSH, g_data, 300);
        conv_seg(&in, &c, 1, FUZZ_ACT_TCP_RECV | FUZZ_ACT_TCP_CLOSE, NS_TCP_ACK | NS_TCP_FIN, NULL, 0);
        save(&in, "tcp-connect-synack-data-fin");
        in.n = 0;
        struct tcpspec r = { .sport = c.port, .dport = c.dport, .seq = 0, .ack = sy.seq + 1,
                             .flags = NS_TCP_RST | NS_TCP_ACK, .win = 0 };
        rec(&in, 1, FUZZ_ACT_TCP_RECV | FUZZ_ACT_MISC, f, tcp_frame(f, &r, NULL, 0));
        save(&in, "tcp-connect-refused");
    }

    /* Our close first: FIN_WAIT, TIME_WAIT, and a long idle period with keepalive. */
    in.n = 0;
    conv_est(&in, &c);
    rec(&in, 0, FUZZ_ACT_TCP_SHUT | FUZZ_ACT_MISC, NULL, 1);
    conv_sync(&in, &c);
    conv_seg(&in, &c, 1, 0, NS_TCP_ACK, NULL, 0);
    conv_seg(&in, &c, 1, FUZZ_ACT_TCP_RECV, NS_TCP_ACK | NS_TCP_FIN, NULL, 0);
    for (int i = 0; i < 10; i++)
        rec(&in, 255, 0, NULL, 0);
    save(&in, "tcp-est-active-close-time-wait");
}

static void seeds_malformed(void)
{
    struct input in = { .n = 0 };
    uint8_t f[2048], g[2048];
    size_t n = udp_frame(f, 1234, 7, g_data, 40);
    for (size_t cut = 0; cut < n; cut += 9)
        rec(&in, 0, 0, f, cut);                           /* truncated at many lengths */
    memcpy(g, f, n);
    g[NS_ETH_HLEN] = 0x44;                                /* IHL 4 */
    rec(&in, 0, 0, g, n);
    memcpy(g, f, n);
    g[NS_ETH_HLEN] = 0x4f;                                /* IHL beyond the frame */
    rec(&in, 0, FUZZ_ACT_FIX_CKSUM, g, 40);
    memcpy(g, f, n);
    put16(g + NS_ETH_HLEN + 2, 1500);                     /* total length beyond the frame */
    rec(&in, 0, FUZZ_ACT_FIX_CKSUM, g, n);
    memcpy(g, f, n);
    put16(g + NS_ETH_HLEN + 20 + 4, 400);                 /* UDP length beyond the datagram */
    rec(&in, 0, FUZZ_ACT_FIX_CKSUM, g, n);
    memcpy(g, f, n);
    g[NS_ETH_HLEN + 10] ^= 0xff;                          /* IP checksum */
    rec(&in, 0, 0, g, n);
    memcpy(g, f, n);
    g[n - 1] ^= 0xff;                                     /* UDP checksum */
    rec(&in, 0, 0, g, n);
    memcpy(g, f, n);
    put16(g + 12, NS_ETH_TYPE_VLAN);
    rec(&in, 0, 0, g, n);
    put16(g + 12, NS_ETH_TYPE_IPV6);
    rec(&in, 0, 0, g, n);
    struct tcpspec s = { .sport = FUZZ_EST_PORT, .dport = FUZZ_LISTEN_PORT, .seq = 1, .flags = NS_TCP_ACK, .win = 1 };
    n = tcp_frame(f, &s, g_data, 20);
    memcpy(g, f, n);
    g[NS_ETH_HLEN + 20 + 12] = 0xf0;                      /* TCP data offset 60 > segment */
    rec(&in, 0, FUZZ_ACT_FIX_CKSUM, g, n);
    g[NS_ETH_HLEN + 20 + 12] = 0x10;                      /* data offset 4 */
    rec(&in, 0, FUZZ_ACT_FIX_CKSUM, g, n);
    rec(&in, 0, 0, g, 0);                                 /* empty frame */
    save(&in, "malformed-lengths");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    if (mkdir(g_dir, 0755) < 0 && errno != EEXIST) {
        perror(g_dir);
        return 1;
    }
    for (size_t i = 0; i < sizeof(g_data); i++)
        g_data[i] = (uint8_t)(i * 7 + 3);
    seeds_arp();
    seeds_icmp_udp();
    seeds_frag();
    struct input probe = { .n = 0 };
    learn(&probe);
    if (g_seen[FUZZ_EST_PORT].valid)
        seeds_tcp();
    else
        fprintf(stderr, "TCP not built in: no TCP seeds\n");
    seeds_malformed();
    printf("wrote %d seed(s) to %s\n", g_files, g_dir);
    return 0;
}
