/*
 * IPv4 reassembly (RFC 791 3.2, RFC 1122 3.3.2, RFC 815's idea of tracking
 * what is still missing, kept here as sorted received ranges). Chain:
 * ns_eth_input -> ns_ipv4_input (header checks) -> ns_ipv4_frag_input ->
 * [copy into the datagram's large buffer] -> when whole: ns_ipv4_deliver ->
 * icmp/udp/tcp; ns_poll -> ns_ipv4_frag_timers -> ns_icmp_send_error
 * (time exceeded, code 1).
 *
 * Every fragment is copied into a large buffer from a pool the stack owns
 * (allocated once, at the first fragment) and its device buffer is freed at
 * once: a fragment flood can never drain the device's receive pool. A whole
 * datagram that fits a device buffer is copied into one, so large buffers
 * stay with sockets only for datagrams bigger than a device buffer.
 *
 * Policy on bad input: a fragment all of whose bytes were already received
 * is a duplicate and ignored (first copy wins, as Linux); any partial overlap
 * discards the whole datagram (RFC 5722's rule for IPv6, the safe choice:
 * no ambiguity about which bytes are delivered). Fragments that disagree on
 * the end, make the datagram larger than NS_IP_REASM_MAX_SIZE (65535 at most)
 * or split it into too many pieces also discard it.
 */
#include <string.h>

#include "internal.h"

#define PAYLOAD_OFF NS_IPV4_MAX_HLEN /* payload start in a large buffer; the header goes before it */
#define MAX_PAYLOAD (NS_IP_REASM_MAX_SIZE - NS_IPV4_HLEN)

_Static_assert(NS_IP_REASM_MAX_SIZE >= NS_IPV4_MIN_MTU && NS_IP_REASM_MAX_SIZE <= 65535,
               "NS_IP_REASM_MAX_SIZE must be 68..65535");
_Static_assert(NS_IP_REASM_MAX_RANGES >= 1, "NS_IP_REASM_MAX_RANGES must be positive");

static void update_next_deadline(struct ns_reasm_table *t)
{
    uint64_t d = UINT64_MAX;
    for (int i = 0; i < NS_IP_REASM_MAX_DATAGRAMS; i++)
        if (t->q[i].used && t->q[i].deadline < d)
            d = t->q[i].deadline;
    t->next_deadline = d;
}

/* Forget q; its buffer goes back to the pool unless the caller took it. */
static void reasm_release(struct netstack *ns, struct ns_reasm *q)
{
    if (q->buf)
        nsbuf_pool_put(q->buf);
    q->buf = NULL;
    q->used = false;
    ns->reasm.nactive--;
    update_next_deadline(&ns->reasm);
}

static struct ns_reasm *reasm_find(struct netstack *ns, const struct ns_ipv4_hdr *ip)
{
    for (int i = 0; i < NS_IP_REASM_MAX_DATAGRAMS; i++) {
        struct ns_reasm *q = &ns->reasm.q[i];
        /* RFC 791: a datagram is identified by source, destination, protocol and ID. */
        if (q->used && q->id == ip->id && q->src == ip->src && q->dst == ip->dst && q->proto == ip->proto)
            return q;
    }
    return NULL;
}

static struct ns_reasm *oldest(struct netstack *ns)
{
    struct ns_reasm *o = NULL;
    for (int i = 0; i < NS_IP_REASM_MAX_DATAGRAMS; i++) {
        struct ns_reasm *q = &ns->reasm.q[i];
        if (q->used && (!o || q->deadline < o->deadline))
            o = q;
    }
    return o;
}

static struct ns_reasm *reasm_create(struct netstack *ns, const struct ns_ipv4_hdr *ip)
{
    struct ns_reasm_table *t = &ns->reasm;
    if (!t->pool_ready) {
        if (nsbuf_pool_init(&t->pool, NS_IP_REASM_BUFS, PAYLOAD_OFF + MAX_PAYLOAD, PAYLOAD_OFF) < 0) {
            ns->st.ip_reasm_nomem++;
            return NULL;
        }
        t->pool_ready = true;
    }
    /* When full, the oldest incomplete datagram makes room: refusing newcomers
     * instead would let a few stray fragments block reassembly for the whole
     * timeout. Buffers held by sockets are not ours to take. */
    struct nsbuf *buf = NULL;
    while (t->nactive == NS_IP_REASM_MAX_DATAGRAMS || !(buf = nsbuf_pool_get(&t->pool))) {
        struct ns_reasm *o = oldest(ns);
        if (!o) {
            ns->st.ip_reasm_nomem++;
            return NULL;
        }
        ns->st.ip_reasm_evicted++;
        reasm_release(ns, o);
    }
    struct ns_reasm *q = NULL;
    for (int i = 0; i < NS_IP_REASM_MAX_DATAGRAMS && !q; i++)
        if (!t->q[i].used)
            q = &t->q[i];
    memset(q, 0, sizeof(*q) - sizeof(q->ranges));
    q->used = true;
    q->src = ip->src;
    q->dst = ip->dst;
    q->id = ip->id;
    q->proto = ip->proto;
    q->buf = buf;
    q->deadline = ns->now + (uint64_t)NS_IP_REASM_TIMEOUT_MS * NS_MS;
    t->nactive++;
    if (q->deadline < t->next_deadline)
        t->next_deadline = q->deadline;
    return q;
}

/* Record [start, end), which overlaps nothing received; merges with neighbours.
 * -1 when it would need more than NS_IP_REASM_MAX_RANGES ranges. */
static int range_add(struct ns_reasm *q, uint32_t start, uint32_t end)
{
    uint32_t i = 0;
    while (i < q->nranges && q->ranges[i].end <= start)
        i++;
    /* ranges[i] (if any) starts at or after end; ranges[i-1] ends at or before start. */
    bool join_prev = i > 0 && q->ranges[i - 1].end == start;
    bool join_next = i < q->nranges && q->ranges[i].start == end;
    if (join_prev && join_next) {
        q->ranges[i - 1].end = q->ranges[i].end;
        memmove(&q->ranges[i], &q->ranges[i + 1], (q->nranges - i - 1) * sizeof(q->ranges[0]));
        q->nranges--;
    } else if (join_prev) {
        q->ranges[i - 1].end = end;
    } else if (join_next) {
        q->ranges[i].start = start;
    } else {
        if (q->nranges == NS_IP_REASM_MAX_RANGES)
            return -1;
        memmove(&q->ranges[i + 1], &q->ranges[i], (q->nranges - i) * sizeof(q->ranges[0]));
        q->ranges[i].start = start;
        q->ranges[i].end = end;
        q->nranges++;
    }
    return 0;
}

/* 1: every byte of [start, end) was received; -1: some were and some not; 0: none. */
static int range_overlap(const struct ns_reasm *q, uint32_t start, uint32_t end)
{
    for (uint32_t i = 0; i < q->nranges; i++) {
        if (q->ranges[i].end <= start || q->ranges[i].start >= end)
            continue;
        /* Ranges never touch, so containment in one range is the only full cover. */
        return q->ranges[i].start <= start && q->ranges[i].end >= end ? 1 : -1;
    }
    return 0;
}

static void reasm_complete(struct netstack *ns, struct ns_reasm *q)
{
    uint32_t tot = q->hlen + q->total;
    if (tot > NS_IP_REASM_MAX_SIZE) {
        /* The first fragment's options came last and pushed the total over. */
        ns->st.ip_reasm_too_big++;
        reasm_release(ns, q);
        return;
    }
    struct nsbuf *big = q->buf;
    uint8_t *hdr = big->base + PAYLOAD_OFF - q->hlen;
    bool l2_mcast = q->l2_mcast;
    q->buf = NULL;
    reasm_release(ns, q);

    struct ns_ipv4_hdr *ip = (struct ns_ipv4_hdr *)hdr;
    ip->total_len = ns_hton16((uint16_t)tot);
    ip->frag_off = 0;            /* a whole datagram now: ICMP errors about it are allowed again */
    ip->cksum = 0;
    ip->cksum = ns_ipv4_cksum(ip, ns_ipv4_hlen(ip));
    big->data = hdr;
    big->len = tot;
    big->flags = 0;              /* a device's L4 checksum verdict on one fragment says nothing */

    struct nsbuf *out = big;
    struct nsbuf *small = ns->dev->ops->buf_alloc(ns->dev);
    if (small) {
        uint8_t *p = nsbuf_append(small, tot);
        if (p) {
            memcpy(p, hdr, tot);
            nsbuf_pool_put(big);
            out = small;
        } else {
            ns_buf_put(ns, small);
        }
    }
    ns->st.ip_reasm_ok++;
    ns_ipv4_deliver(ns, out, l2_mcast);
}

void ns_ipv4_frag_input(struct netstack *ns, struct nsbuf *b, bool l2_mcast)
{
    const struct ns_ipv4_hdr *ip = (const struct ns_ipv4_hdr *)b->data;
    unsigned hlen = ns_ipv4_hlen(ip);
    uint32_t plen = b->len - hlen;           /* ns_ipv4_input trimmed b to the total length */
    uint16_t fo = ns_ntoh16(ip->frag_off);
    uint32_t start = (uint32_t)(fo & NS_IPV4_OFFMASK) * 8u, end = start + plen;
    bool more = fo & NS_IPV4_MF;
    struct ns_reasm *q = NULL;
    ns->st.ip_reasm_frags++;

    if (NS_IP_REASM_MAX_DATAGRAMS == 0)
        goto drop;
    if (plen == 0 || (more && plen % 8 != 0)) {
        ns->st.ip_reasm_bad_len++;
        goto drop;
    }
    q = reasm_find(ns, ip);
    /* "Ping of death": bytes past 65535 (or our smaller limit) cannot belong to a datagram. */
    if (NS_IPV4_HLEN + end > NS_IP_REASM_MAX_SIZE || (start == 0 && hlen + end > NS_IP_REASM_MAX_SIZE) ||
        (q && q->have_first && q->hlen + end > NS_IP_REASM_MAX_SIZE)) {
        ns->st.ip_reasm_too_big++;
        goto drop_datagram;
    }
    if (!q && !(q = reasm_create(ns, ip)))
        goto drop;
    if (q->have_last ? (end > q->total || (!more && end != q->total))
                     : (!more && q->nranges && q->ranges[q->nranges - 1].end > end)) {
        ns->st.ip_reasm_inconsistent++;
        goto drop_datagram;
    }
    int ov = range_overlap(q, start, end);
    if (ov > 0) {
        ns->st.ip_reasm_dup++;
        goto drop;
    }
    if (ov < 0) {
        ns->st.ip_reasm_overlap++;
        goto drop_datagram;
    }
    if (range_add(q, start, end) < 0) {
        ns->st.ip_reasm_too_fragmented++;
        goto drop_datagram;
    }
    memcpy(q->buf->base + PAYLOAD_OFF + start, b->data + hlen, plen);
    if (start == 0) {
        /* RFC 791: the reassembled header is the first fragment's, options included. */
        memcpy(q->buf->base + PAYLOAD_OFF - hlen, ip, hlen);
        q->hlen = (uint8_t)hlen;
        q->have_first = true;
        q->l2_mcast = l2_mcast;
    }
    if (!more) {
        q->have_last = true;
        q->total = end;
    }
    ns_buf_put(ns, b);
    if (q->have_last && q->have_first && q->nranges == 1 && q->ranges[0].start == 0 &&
        q->ranges[0].end == q->total)
        reasm_complete(ns, q);
    return;

drop_datagram:
    if (q)
        reasm_release(ns, q);
drop:
    ns->st.ip_rx_frag_dropped++;
    ns_buf_put(ns, b);
}

void ns_ipv4_frag_timers(struct netstack *ns)
{
    struct ns_reasm_table *t = &ns->reasm;
    if (t->nactive == 0 || ns->now < t->next_deadline)
        return;
    for (int i = 0; i < NS_IP_REASM_MAX_DATAGRAMS; i++) {
        struct ns_reasm *q = &t->q[i];
        if (!q->used || q->deadline > ns->now)
            continue;
        ns->st.ip_reasm_timeout++;
        /* RFC 792 / RFC 1122 3.3.2: time exceeded (code 1) only if fragment zero
         * arrived; it is what gets quoted. ns_icmp_send_error applies the
         * broadcast and rate-limit rules. */
        if (q->have_first) {
            const struct ns_ipv4_hdr *ip = (const struct ns_ipv4_hdr *)(q->buf->base + PAYLOAD_OFF - q->hlen);
            struct ns_rxinfo ri = { .ip = ip, .ip_len = ns_ntoh16(ip->total_len), .l2_mcast = q->l2_mcast,
                                    .ip_bcast = ns_ip_is_bcast(ns, q->dst) };
            ns_icmp_send_error(ns, &ri, NS_ICMP_TIME_EXCEEDED, NS_ICMP_TIMXCEED_REASS);
        }
        reasm_release(ns, q);
    }
}

void ns_ipv4_frag_fini(struct netstack *ns)
{
    struct ns_reasm_table *t = &ns->reasm;
    for (int i = 0; i < NS_IP_REASM_MAX_DATAGRAMS; i++)
        if (t->q[i].used)
            reasm_release(ns, &t->q[i]);
    if (!t->pool_ready)
        return;
    /* A large buffer still out is held by someone who will touch it later (or
     * a leak): keeping its memory allocated turns a use-after-free into a leak
     * that LeakSanitizer reports. */
    if (t->pool.in_use == 0)
        nsbuf_pool_fini(&t->pool);
    t->pool_ready = false;
}
