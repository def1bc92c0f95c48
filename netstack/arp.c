/*
 * ARP (RFC 826): the neighbour cache, requests/replies, and the queue of IP
 * datagrams waiting for resolution. Chains: ns_eth_input -> ns_arp_input;
 * ns_ipv4_output -> ns_arp_output -> ns_eth_output; ns_poll -> ns_arp_timers.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static const uint8_t eth_bcast[NS_ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static bool bogus_ip(be32_t a)
{
    return a == NS_IPV4_BCAST || ns_ipv4_is_mcast(a) || ns_ipv4_is_reserved(a) || ns_ipv4_is_loopback(a);
}

int ns_arp_init(struct netstack *ns, const struct ns_config *cfg)
{
    for (unsigned i = 0; i < cfg->n_arp_static; i++) {
        const struct ns_arp_static *s = &cfg->arp_static[i];
        if (s->ip == 0 || bogus_ip(s->ip) || ns_eth_is_mcast(s->mac) || ns_eth_is_zero(s->mac))
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (ns->arp[j].ip == s->ip)
                return -EINVAL;
        struct ns_arp_entry *e = &ns->arp[i];
        e->state = NS_ARP_STATIC;
        e->ip = s->ip;
        memcpy(e->mac, s->mac, NS_ETH_ALEN);
    }
    return 0;
}

static void drop_pending(struct netstack *ns, struct ns_arp_entry *e, uint64_t *counter)
{
    while (e->pend_head) {
        struct nsbuf *b = e->pend_head;
        e->pend_head = b->next;
        b->next = NULL;
        if (counter)
            (*counter)++;
        ns_buf_put(ns, b);
    }
    ns->arp_npending -= e->npending;
    e->npending = 0;
    e->pend_tail = NULL;
}

void ns_arp_fini(struct netstack *ns)
{
    for (unsigned i = 0; i < NS_ARP_CACHE_SIZE; i++)
        drop_pending(ns, &ns->arp[i], NULL);
}

static struct ns_arp_entry *arp_find(struct netstack *ns, be32_t ip)
{
    for (unsigned i = 0; i < NS_ARP_CACHE_SIZE; i++)
        if (ns->arp[i].state != NS_ARP_FREE && ns->arp[i].ip == ip)
            return &ns->arp[i];
    return NULL;
}

/* A free slot, else the least recently used learned entry. Entries being
 * resolved are not evicted: they hold packets and end by themselves soon. */
static struct ns_arp_entry *arp_alloc(struct netstack *ns)
{
    struct ns_arp_entry *lru = NULL;
    for (unsigned i = 0; i < NS_ARP_CACHE_SIZE; i++) {
        struct ns_arp_entry *e = &ns->arp[i];
        if (e->state == NS_ARP_FREE)
            return e;
        if (e->state == NS_ARP_REACHABLE && (!lru || e->used < lru->used))
            lru = e;
    }
    if (lru)
        memset(lru, 0, sizeof(*lru));
    return lru;
}

static void arp_send(struct netstack *ns, uint16_t op, const uint8_t *tha, be32_t tpa, const uint8_t *eth_dst)
{
    struct nsbuf *b = ns_alloc_tx(ns);
    if (!b)
        return;
    struct ns_arp_hdr *a = nsbuf_append(b, NS_ARP_LEN);
    if (!a) {
        ns->st.tx_nobuf++;
        ns_buf_put(ns, b);
        return;
    }
    a->htype = ns_hton16(NS_ARP_HTYPE_ETHER);
    a->ptype = ns_hton16(NS_ETH_TYPE_IPV4);
    a->hlen = NS_ETH_ALEN;
    a->plen = 4;
    a->op = ns_hton16(op);
    memcpy(a->sha, ns->mac, NS_ETH_ALEN);
    a->spa = ns->ip;
    memcpy(a->tha, tha, NS_ETH_ALEN);
    a->tpa = tpa;
    if (op == NS_ARP_OP_REQUEST)
        ns->st.arp_requests_tx++;
    else
        ns->st.arp_replies_tx++;
    ns_eth_output(ns, b, eth_dst, NS_ETH_TYPE_ARP);
}

static void arp_request(struct netstack *ns, be32_t ip)
{
    static const uint8_t zero[NS_ETH_ALEN];
    arp_send(ns, NS_ARP_OP_REQUEST, zero, ip, eth_bcast);
}

/* The MAC is known now: send everything that waited for it, in order. */
static void arp_resolved(struct netstack *ns, struct ns_arp_entry *e, const uint8_t *mac)
{
    memcpy(e->mac, mac, NS_ETH_ALEN);
    e->state = NS_ARP_REACHABLE;
    e->deadline = ns->now + (uint64_t)ns->arp_ttl_ms * NS_MS;
    e->used = ns->now;
    e->tries = 0;
    while (e->pend_head) {
        struct nsbuf *b = e->pend_head;
        e->pend_head = b->next;
        b->next = NULL;
        e->npending--;
        ns->arp_npending--;
        ns_eth_output(ns, b, e->mac, NS_ETH_TYPE_IPV4);
    }
    e->pend_tail = NULL;
}

void ns_arp_input(struct netstack *ns, struct nsbuf *b)
{
    ns->st.arp_rx++;
    if (b->len < NS_ARP_LEN) {
        ns->st.arp_rx_bad++;
        goto drop;
    }
    struct ns_arp_hdr *a = (struct ns_arp_hdr *)b->data;
    uint16_t op = ns_ntoh16(a->op);
    if (ns_ntoh16(a->htype) != NS_ARP_HTYPE_ETHER || ns_ntoh16(a->ptype) != NS_ETH_TYPE_IPV4 ||
        a->hlen != NS_ETH_ALEN || a->plen != 4 || (op != NS_ARP_OP_REQUEST && op != NS_ARP_OP_REPLY)) {
        ns->st.arp_rx_bad++;
        goto drop;
    }
    be32_t spa = a->spa, tpa = a->tpa;
    /* Never learn a group MAC or a non-unicast IP: that would let one frame
     * redirect our traffic to every host, or claim our own address. */
    if (ns_eth_is_mcast(a->sha) || ns_eth_is_zero(a->sha) || memcmp(a->sha, ns->mac, NS_ETH_ALEN) == 0 ||
        bogus_ip(spa) || spa == ns->ip) {
        ns->st.arp_rx_bad_sender++;
        goto drop;
    }
    bool for_us = tpa == ns->ip;
    /* RFC 826 merge: refresh an entry we already have, whatever the target. */
    bool merged = false;
    struct ns_arp_entry *e = spa ? arp_find(ns, spa) : NULL;
    if (e) {
        merged = true;
        if (e->state == NS_ARP_STATIC) {
            if (memcmp(e->mac, a->sha, NS_ETH_ALEN) != 0)
                ns->st.arp_static_conflict++;
        } else if (e->state == NS_ARP_INCOMPLETE) {
            arp_resolved(ns, e, a->sha);
        } else {
            memcpy(e->mac, a->sha, NS_ETH_ALEN);
            e->deadline = ns->now + (uint64_t)ns->arp_ttl_ms * NS_MS;
        }
    }
    if (!for_us) {
        /* Includes gratuitous ARP (tpa == spa): it may refresh, never create. */
        ns->st.arp_rx_not_for_us++;
        goto drop;
    }
    /* A sender that asks us will talk to us: learn it (RFC 826). spa 0 is an
     * address probe (RFC 5227), which must not be cached. */
    if (!merged && spa) {
        e = arp_alloc(ns);
        if (e) {
            e->ip = spa;
            arp_resolved(ns, e, a->sha);
        } else {
            ns->st.arp_cache_full++;
        }
    }
    if (op == NS_ARP_OP_REQUEST) {
        uint8_t sha[NS_ETH_ALEN];
        memcpy(sha, a->sha, NS_ETH_ALEN);
        arp_send(ns, NS_ARP_OP_REPLY, sha, spa, sha);
    }
drop:
    ns_buf_put(ns, b);
}

void ns_arp_output(struct netstack *ns, struct nsbuf *b, be32_t nh)
{
    if (ns_ip_is_bcast(ns, nh)) {
        ns_eth_output(ns, b, eth_bcast, NS_ETH_TYPE_IPV4);
        return;
    }
    if (ns_ipv4_is_mcast(nh)) {
        /* RFC 1112 6.4: 01:00:5e + low 23 bits of the group. */
        uint32_t h = ns_ntoh32(nh);
        uint8_t mac[NS_ETH_ALEN] = { 0x01, 0x00, 0x5e, (uint8_t)((h >> 16) & 0x7f), (uint8_t)(h >> 8), (uint8_t)h };
        ns_eth_output(ns, b, mac, NS_ETH_TYPE_IPV4);
        return;
    }
    struct ns_arp_entry *e = arp_find(ns, nh);
    if (e && e->state == NS_ARP_REACHABLE && ns->now >= e->deadline) {
        /* Expired but the timer has not run yet: resolve again. */
        ns->st.arp_expired++;
        memset(e, 0, sizeof(*e));
        e = NULL;
    }
    if (e && (e->state == NS_ARP_STATIC || e->state == NS_ARP_REACHABLE)) {
        e->used = ns->now;
        ns_eth_output(ns, b, e->mac, NS_ETH_TYPE_IPV4);
        return;
    }
    if (!e) {
        e = arp_alloc(ns);
        if (!e) {
            ns->st.arp_cache_full++;
            ns_buf_put(ns, b);
            return;
        }
        e->state = NS_ARP_INCOMPLETE;
        e->ip = nh;
        e->tries = 1;
        e->used = ns->now;
        e->deadline = ns->now + (uint64_t)ns->arp_timeout_ms * NS_MS;
        arp_request(ns, nh);
    }
    if (e->npending >= NS_ARP_PENDING_PER_ENTRY || ns->arp_npending >= NS_ARP_PENDING_MAX) {
        ns->st.arp_pending_overflow++;
        ns_buf_put(ns, b);
        return;
    }
    b->next = NULL;
    if (e->pend_tail)
        e->pend_tail->next = b;
    else
        e->pend_head = b;
    e->pend_tail = b;
    e->npending++;
    ns->arp_npending++;
}

void ns_arp_timers(struct netstack *ns)
{
    for (unsigned i = 0; i < NS_ARP_CACHE_SIZE; i++) {
        struct ns_arp_entry *e = &ns->arp[i];
        if (e->state == NS_ARP_INCOMPLETE && ns->now >= e->deadline) {
            if (e->tries > ns->arp_retries) {
                drop_pending(ns, e, &ns->st.arp_resolve_timeout);
                memset(e, 0, sizeof(*e));
            } else {
                e->tries++;
                e->deadline = ns->now + (uint64_t)ns->arp_timeout_ms * NS_MS;
                arp_request(ns, e->ip);
            }
        } else if (e->state == NS_ARP_REACHABLE && ns->now >= e->deadline) {
            ns->st.arp_expired++;
            memset(e, 0, sizeof(*e));
        }
    }
}
