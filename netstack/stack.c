/*
 * Stack lifetime, the poll loop, the tx batch and the counters: the top of
 * every chain (LibOS -> ns_poll -> netdev rx_burst -> ns_eth_input ...; and
 * ... -> ns_eth_output -> ns_tx_enqueue -> netdev tx_burst).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void ns_config_defaults(struct ns_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->arp_ttl_ms = NS_ARP_TTL_MS;
    cfg->arp_request_timeout_ms = NS_ARP_REQUEST_TIMEOUT_MS;
    cfg->arp_request_retries = NS_ARP_REQUEST_RETRIES;
    cfg->tcp_cc = NS_CC_CUBIC;
}

static bool mask_contiguous(be32_t m)
{
    uint32_t h = ns_ntoh32(m);
    return h != 0 && (~h & (~h + 1)) == 0;   /* ones then zeros: ~h is 2^k - 1 */
}

int ns_create(const struct ns_config *cfg, struct netdev *dev, uint64_t now_ns, struct netstack **out)
{
    *out = NULL;
    if (!dev || !dev->ops || !dev->ops->rx_burst || !dev->ops->tx_burst || !dev->ops->buf_alloc ||
        !dev->ops->buf_free)
        return -EINVAL;
    if (cfg->ipv4 == 0 || ns_ipv4_is_mcast(cfg->ipv4) || cfg->ipv4 == NS_IPV4_BCAST || !mask_contiguous(cfg->netmask))
        return -EINVAL;
    if (cfg->gateway && (cfg->gateway & cfg->netmask) != (cfg->ipv4 & cfg->netmask))
        return -EINVAL;
    uint32_t dev_mtu = dev->mtu ? dev->mtu : NS_MTU_DEFAULT;
    uint32_t mtu = cfg->mtu ? cfg->mtu : dev_mtu;
    if (mtu < NS_IPV4_MIN_MTU || mtu > dev_mtu || mtu > 65535)
        return -EINVAL;
    if (cfg->n_arp_static > NS_ARP_CACHE_SIZE / 2 || (cfg->n_arp_static && !cfg->arp_static))
        return -EINVAL;
    const uint8_t *mac = cfg->has_mac ? cfg->mac : dev->mac;
    if (ns_eth_is_mcast(mac) || ns_eth_is_zero(mac))
        return -EINVAL;

    struct netstack *ns = calloc(1, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    ns->dev = dev;
    ns->now = now_ns;
    ns->ip = cfg->ipv4;
    ns->mask = cfg->netmask;
    ns->gateway = cfg->gateway;
    memcpy(ns->mac, mac, NS_ETH_ALEN);
    ns->mtu = mtu;
    ns->arp_ttl_ms = cfg->arp_ttl_ms ? cfg->arp_ttl_ms : NS_ARP_TTL_MS;
    ns->arp_timeout_ms = cfg->arp_request_timeout_ms ? cfg->arp_request_timeout_ms : NS_ARP_REQUEST_TIMEOUT_MS;
    ns->arp_retries = cfg->arp_request_retries;
    ns->icmp_tokens = NS_ICMP_ERR_BURST;
    ns->icmp_tokens_at = now_ns;
    ns->next_ephemeral = NS_EPHEMERAL_PORT_MIN;
    ns->reasm.next_deadline = UINT64_MAX;
    ns_tw_init(&ns->tw, now_ns);
    int rc = ns_arp_init(ns, cfg);
    if (rc < 0) {
        free(ns);
        return rc;
    }
    rc = ns_tcp_init(ns, cfg);
    if (rc < 0) {
        ns_arp_fini(ns);
        free(ns);
        return rc;
    }
    *out = ns;
    return 0;
}

static void loopback_free(struct netstack *ns)
{
    while (ns->lo_head) {
        struct nsbuf *b = ns->lo_head;
        ns->lo_head = b->next;
        b->next = NULL;
        ns_buf_put(ns, b);
    }
    ns->lo_tail = NULL;
    ns->lo_count = 0;
}

void ns_loopback_enqueue(struct netstack *ns, struct nsbuf *b)
{
    if (ns->lo_count >= NS_LOOPBACK_QUEUE_MAX) {
        ns->st.ip_loopback_dropped++;
        ns_buf_put(ns, b);
        return;
    }
    /* Our own checksums are right: input need not check them again. */
    b->flags |= NSBUF_LOOPED | NSBUF_RX_IP_CKSUM_GOOD | NSBUF_RX_L4_CKSUM_GOOD;
    b->next = NULL;
    if (ns->lo_tail)
        ns->lo_tail->next = b;
    else
        ns->lo_head = b;
    ns->lo_tail = b;
    ns->lo_count++;
    ns->st.ip_loopback++;
}

/* Input what we sent ourselves, answers to answers included, up to a budget. */
static int loopback_run(struct netstack *ns)
{
    int n = 0;
    while (ns->lo_head && n < NS_RX_BUDGET) {
        struct nsbuf *b = ns->lo_head;
        ns->lo_head = b->next;
        if (!ns->lo_head)
            ns->lo_tail = NULL;
        ns->lo_count--;
        b->next = NULL;
        ns_ipv4_input(ns, b, false);
        n++;
    }
    return n;
}

void ns_destroy(struct netstack *ns)
{
    if (!ns)
        return;
    loopback_free(ns);
    for (uint32_t i = 0; i < ns->ntx; i++)
        ns_buf_put(ns, ns->txq[i]);
    ns->ntx = 0;
    ns_tcp_fini(ns);
    loopback_free(ns);           /* anything tcp_fini sent our own address */
    ns_arp_fini(ns);
    ns_udp_fini(ns);
    ns_ipv4_frag_fini(ns);       /* last: sockets hand its large buffers back first */
    free(ns);
}

struct nsbuf *ns_alloc_tx(struct netstack *ns)
{
    struct nsbuf *b = ns->dev->ops->buf_alloc(ns->dev);
    if (!b) {
        ns->st.tx_nobuf++;
        return NULL;
    }
    if (nsbuf_headroom(b) < NS_HEADROOM_MIN) {
        /* A device with too little headroom is a bug in its setup, not a transient. */
        ns_buf_put(ns, b);
        ns->st.tx_nobuf++;
        return NULL;
    }
    return b;
}

void ns_buf_put(struct netstack *ns, struct nsbuf *b)
{
    if (--b->refcnt != 0)
        return;
    if (b->pool == &ns->reasm.pool)   /* a reassembled datagram too big for a device buffer */
        nsbuf_pool_put(b);
    else
        ns->dev->ops->buf_free(ns->dev, b);
}

void ns_buf_free(struct netstack *ns, struct nsbuf *b)
{
    if (b)
        ns_buf_put(ns, b);
}

void ns_flush(struct netstack *ns)
{
    uint32_t done = 0;
    while (done < ns->ntx) {
        uint16_t n = ns->dev->ops->tx_burst(ns->dev, ns->txq + done, (uint16_t)(ns->ntx - done));
        if (n == 0)
            break;
        ns->st.eth_tx += n;
        done += n;
    }
    /* A full device ring drops what is left, like a full NIC queue would. */
    for (uint32_t i = done; i < ns->ntx; i++) {
        ns->st.tx_dev_full++;
        ns_buf_put(ns, ns->txq[i]);
    }
    ns->ntx = 0;
}

void ns_tx_enqueue(struct netstack *ns, struct nsbuf *frame)
{
    if (ns->ntx == NS_TX_BATCH)
        ns_flush(ns);
    ns->txq[ns->ntx++] = frame;
}

void ns_input(struct netstack *ns, struct nsbuf *frame)
{
    ns->st.eth_rx++;
    ns_eth_input(ns, frame);
}

int ns_poll(struct netstack *ns, uint64_t now_ns)
{
    if (now_ns > ns->now)
        ns->now = now_ns;
    int total = 0;
    struct nsbuf *bufs[NS_RX_BURST];
    while (total < NS_RX_BUDGET) {
        uint16_t n = ns->dev->ops->rx_burst(ns->dev, bufs, NS_RX_BURST);
        for (uint16_t i = 0; i < n; i++)
            ns_input(ns, bufs[i]);
        total += n;
        if (n < NS_RX_BURST)
            break;
    }
    if (ns->now >= ns->next_timer) {
        ns->next_timer = ns->now + NS_TIMER_GRANULARITY_MS * NS_MS;
        ns_arp_timers(ns);
        ns_ipv4_frag_timers(ns);
    }
    ns_tw_run(&ns->tw, ns, ns->now);
    total += loopback_run(ns);
    ns_flush(ns);
    return total;
}

uint64_t ns_next_timer(const struct netstack *ns)
{
    if (ns->lo_head)
        return ns->now;          /* looped-back datagrams wait for the next ns_poll */
    /* The real deadlines (TCP wheel, ARP retries/expiry, reassembly), so an idle
     * stack lets its caller sleep; ns_poll scans ARP at most every tick anyway. */
    uint64_t t = ns_tw_next_ns(&ns->tw);
    for (unsigned i = 0; i < NS_ARP_CACHE_SIZE; i++) {
        const struct ns_arp_entry *e = &ns->arp[i];
        if ((e->state == NS_ARP_INCOMPLETE || e->state == NS_ARP_REACHABLE) && e->deadline < t)
            t = e->deadline;
    }
    if (ns->reasm.next_deadline < t)
        t = ns->reasm.next_deadline;
    return t;
}

#define EV_CAP (sizeof(((struct netstack *)0)->ev) / sizeof(((struct netstack *)0)->ev[0]))

void ns_ev_push(struct netstack *ns, uint8_t proto, int sd)
{
    if (ns->ev_count == EV_CAP)
        return;                  /* cannot happen: each socket is listed at most once */
    ns->ev[(ns->ev_head + ns->ev_count) % EV_CAP] = (struct ns_ev_ref){ proto, sd };
    ns->ev_count++;
}

void ns_ev_unlist(struct netstack *ns, uint8_t proto, int sd)
{
    /* Rare (a socket closed with an unread event): compact the ring without it. */
    uint32_t n = ns->ev_count, w = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct ns_ev_ref r = ns->ev[(ns->ev_head + i) % EV_CAP];
        if (r.proto == proto && r.sd == sd)
            continue;
        ns->ev[(ns->ev_head + w) % EV_CAP] = r;
        w++;
    }
    ns->ev_count = w;
}

int ns_events(struct netstack *ns, struct ns_event *out, int n)
{
    int k = 0;
    while (k < n && ns->ev_count) {
        struct ns_ev_ref r = ns->ev[ns->ev_head];
        ns->ev_head = (uint32_t)((ns->ev_head + 1) % EV_CAP);
        ns->ev_count--;
        bool live = false;
        uint32_t ev;
        if (r.proto == NS_PROTO_TCP) {
            ev = ns_tcp_events_of(ns, r.sd, &live);
        } else {
            struct ns_udp_sock *u = &ns->udp[r.sd];
            live = u->used && u->ev_dirty;
            u->ev_dirty = false;
            ev = NS_EV_OUT | (u->rx_head || u->err ? NS_EV_IN : 0) | (u->err ? NS_EV_ERR : 0);
        }
        if (!live)
            continue;
        out[k++] = (struct ns_event){ .proto = r.proto, .sd = r.sd, .events = ev };
    }
    return k;
}

void ns_stats_get(const struct netstack *ns, struct ns_stats *out) { *out = ns->st; }

static const char *const stat_names[] = {
#define NS_STATS_NAME(name, what) #name,
    NS_STATS_LIST(NS_STATS_NAME)
#undef NS_STATS_NAME
};
static const char *const stat_help[] = {
#define NS_STATS_HELP(name, what) what,
    NS_STATS_LIST(NS_STATS_HELP)
#undef NS_STATS_HELP
};
_Static_assert(sizeof(stat_names) / sizeof(stat_names[0]) == NS_STATS_COUNT, "one name per counter");

const char *ns_stats_name(size_t i) { return i < NS_STATS_COUNT ? stat_names[i] : NULL; }
const char *ns_stats_help(size_t i) { return i < NS_STATS_COUNT ? stat_help[i] : NULL; }

uint64_t ns_stats_value(const struct ns_stats *s, size_t i)
{
    uint64_t v = 0;
    if (i < NS_STATS_COUNT)
        memcpy(&v, (const char *)s + i * sizeof(uint64_t), sizeof(v));
    return v;
}
