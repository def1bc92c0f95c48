/*
 * The stack's private state and the functions the protocol files call on each
 * other. Input chain: ns_poll -> ns_eth_input -> ns_arp_input | ns_ipv4_input
 * [-> ns_ipv4_frag_input, when whole] -> ns_ipv4_deliver -> ns_icmp_input |
 * ns_udp_input | ns_tcp_input. Output chain: ns_udp_sendto/ns_ping_send/icmp/
 * tcp_xmit -> ns_ipv4_output -> ns_arp_output -> ns_eth_output -> txq -> tx_burst.
 * Timers: ns_poll -> ns_arp_timers, ns_ipv4_frag_timers, ns_tw_run (TCP).
 * TCP's own state is in tcp_internal.h.
 */
#ifndef NS_INTERNAL_H
#define NS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "defaults.h"
#include "netstack.h"
#include "prot/arp.h"
#include "prot/ether.h"
#include "prot/icmp.h"
#include "prot/ipv4.h"
#include "prot/udp.h"
#include "timer_wheel.h"

#define NS_MS 1000000ull         /* ns per ms */

enum ns_arp_state { NS_ARP_FREE = 0, NS_ARP_INCOMPLETE, NS_ARP_REACHABLE, NS_ARP_STATIC };

struct ns_arp_entry {
    enum ns_arp_state state;
    be32_t ip;
    uint8_t mac[NS_ETH_ALEN];
    uint64_t deadline;           /* REACHABLE: expiry; INCOMPLETE: next retry */
    uint64_t used;               /* last use, for LRU eviction */
    uint32_t tries;              /* INCOMPLETE: requests sent */
    uint32_t npending;
    struct nsbuf *pend_head;     /* IP datagrams (data at the IP header) waiting for the MAC */
    struct nsbuf *pend_tail;
};

struct ns_udp_sock {
    bool used;
    bool ev_dirty;               /* listed for ns_events */
    bool bound;
    bool connected;
    int err;                     /* pending error (positive errno), reported once */
    struct ns_sockaddr local;
    struct ns_sockaddr remote;
    struct nsbuf *rx_head;
    struct nsbuf *rx_tail;
    uint32_t rx_count;
};

/* One datagram being reassembled (ipv4_frag.c). Its payload is copied into
 * buf at offset NS_IPV4_MAX_HLEN as fragments arrive; the first fragment's
 * header goes right in front of it. */
struct ns_reasm {
    bool used;
    bool have_first;             /* the offset-0 fragment arrived: its header is in buf */
    bool have_last;              /* the MF=0 fragment arrived: total is known */
    bool l2_mcast;               /* the first fragment came as a link-layer broadcast */
    uint8_t proto;
    uint8_t hlen;                /* the first fragment's header length */
    be16_t id;
    be32_t src, dst;
    uint32_t total;              /* payload bytes, once have_last */
    uint64_t deadline;           /* ns; also the age order for eviction */
    struct nsbuf *buf;
    uint32_t nranges;            /* sorted, disjoint, non-adjacent [start, end) payload ranges received */
    struct { uint32_t start, end; } ranges[NS_IP_REASM_MAX_RANGES];
};

struct ns_reasm_table {
    bool pool_ready;             /* pool allocated (at the first fragment) */
    uint32_t nactive;
    uint64_t next_deadline;      /* earliest deadline of an active entry, UINT64_MAX if none */
    struct nsbuf_pool pool;      /* NS_IP_REASM_BUFS large buffers; ns_buf_put returns them here */
    struct ns_reasm q[NS_IP_REASM_MAX_DATAGRAMS > 0 ? NS_IP_REASM_MAX_DATAGRAMS : 1];
};

/* What the IP layer learned about a received datagram, for upper layers. */
struct ns_rxinfo {
    const struct ns_ipv4_hdr *ip; /* in the frame's buffer; valid while the layer holds it */
    uint32_t ip_len;             /* total length (the buffer is trimmed to it) */
    bool l2_mcast;               /* link-layer broadcast/multicast */
    bool ip_bcast;               /* limited or subnet broadcast */
};

struct netstack {
    struct netdev *dev;
    uint64_t now;                /* ns, from the last ns_poll */
    uint64_t next_timer;

    be32_t ip;
    be32_t mask;
    be32_t gateway;
    uint8_t mac[NS_ETH_ALEN];
    uint32_t mtu;
    uint32_t arp_ttl_ms;
    uint32_t arp_timeout_ms;
    uint32_t arp_retries;

    uint16_t ip_id;
    uint16_t next_ephemeral;

    struct ns_stats st;

    struct nsbuf *txq[NS_TX_BATCH];
    uint32_t ntx;

    struct nsbuf *lo_head, *lo_tail; /* datagrams to our own address, input by ns_poll */
    uint32_t lo_count;

    struct ns_arp_entry arp[NS_ARP_CACHE_SIZE];
    uint32_t arp_npending;       /* over all entries */

    uint64_t icmp_tokens_at;     /* when the ICMP error bucket was last refilled */
    uint32_t icmp_tokens;

    struct ns_ping_reply ping[NS_PING_RING];
    uint32_t ping_head, ping_count;

    struct ns_udp_sock udp[NS_UDP_MAX_SOCKETS];

    struct ns_reasm_table reasm;
    struct ns_tcp *tcp;          /* tcp_internal.h; allocated once at ns_create */
    enum ns_cc_algo tcp_default_cc;
    struct ns_timer_wheel tw;

    /* Sockets whose readiness may have changed, for ns_events; each listed once
     * (the socket's ev_dirty flag), so the ring cannot overflow. */
    struct ns_ev_ref { uint8_t proto; int sd; } ev[NS_TCP_MAX_SOCKETS + NS_UDP_MAX_SOCKETS];
    uint32_t ev_head, ev_count;
};

struct ns_tcp;

/* Internal nsbuf flag: a datagram we sent to our own address (ns_loopback_enqueue). */
#define NSBUF_LOOPED 0x80000000u

/* stack.c */
/* Queue an IPv4 datagram to our own address (data at the IP header) for input on the next ns_poll. Takes b. */
void ns_loopback_enqueue(struct netstack *ns, struct nsbuf *b);
struct nsbuf *ns_alloc_tx(struct netstack *ns);  /* headroom checked; counts tx_nobuf */
void ns_buf_put(struct netstack *ns, struct nsbuf *b);
void ns_tx_enqueue(struct netstack *ns, struct nsbuf *frame);
static inline bool ns_ip_is_bcast(const struct netstack *ns, be32_t a)
{
    return a == NS_IPV4_BCAST || a == (ns->ip | ~ns->mask);
}
static inline bool ns_ip_on_link(const struct netstack *ns, be32_t a) { return (a & ns->mask) == (ns->ip & ns->mask); }

/* ether.c */
void ns_eth_input(struct netstack *ns, struct nsbuf *b);
void ns_eth_output(struct netstack *ns, struct nsbuf *b, const uint8_t *dst, uint16_t type);

/* arp.c */
int ns_arp_init(struct netstack *ns, const struct ns_config *cfg);
void ns_arp_fini(struct netstack *ns);
void ns_arp_input(struct netstack *ns, struct nsbuf *b);
/* Send an IP datagram (data at its header) to next_hop, resolving or queueing. Takes b. */
void ns_arp_output(struct netstack *ns, struct nsbuf *b, be32_t next_hop);
void ns_arp_timers(struct netstack *ns);

/* ipv4.c */
void ns_ipv4_input(struct netstack *ns, struct nsbuf *b, bool l2_mcast);
/* Prepend an IPv4 header to b (data at the L4 header) and send. Always takes b.
 * 0, or -EMSGSIZE / -ENETUNREACH / -EINVAL (dst 0). */
int ns_ipv4_output(struct netstack *ns, struct nsbuf *b, be32_t dst, uint8_t proto);

/* Hand a whole datagram (data at its IPv4 header, len = total length, header
 * valid) to ICMP/UDP/TCP. Takes b. */
void ns_ipv4_deliver(struct netstack *ns, struct nsbuf *b, bool l2_mcast);

/* ipv4_frag.c */
/* A validated fragment for us (data at its IPv4 header, trimmed). Takes b. */
void ns_ipv4_frag_input(struct netstack *ns, struct nsbuf *b, bool l2_mcast);
/* Expire datagrams past their deadline (ICMP time exceeded when the first fragment came). */
void ns_ipv4_frag_timers(struct netstack *ns);
/* Free everything; call after every socket released its buffers. */
void ns_ipv4_frag_fini(struct netstack *ns);

/* icmp.c */
void ns_icmp_input(struct netstack *ns, struct nsbuf *b, const struct ns_rxinfo *ri);
/* An error about the datagram in ri (whose buffer the caller still owns), if
 * RFC 1122 3.2.2 allows one and the rate limit has a token. */
void ns_icmp_send_error(struct netstack *ns, const struct ns_rxinfo *ri, uint8_t type, uint8_t code);

/* udp.c */
void ns_udp_input(struct netstack *ns, struct nsbuf *b, const struct ns_rxinfo *ri);
/* An ICMP error quoted `inner` (an IPv4 header we sent) and its first 8 bytes `l4`. */
void ns_udp_icmp_error(struct netstack *ns, const struct ns_ipv4_hdr *inner, const struct ns_udp_hdr *l4, int err);
void ns_udp_fini(struct netstack *ns);
void ns_udp_mark(struct netstack *ns, int sd);

/* stack.c: list a socket for ns_events */
void ns_ev_push(struct netstack *ns, uint8_t proto, int sd);
void ns_ev_unlist(struct netstack *ns, uint8_t proto, int sd);

/* tcp_state.c / tcp_input.c */
int ns_tcp_init(struct netstack *ns, const struct ns_config *cfg);
void ns_tcp_fini(struct netstack *ns);
uint32_t ns_tcp_events_of(struct netstack *ns, int sd, bool *live);
void ns_tcp_input(struct netstack *ns, struct nsbuf *b, const struct ns_rxinfo *ri);
/* A destination unreachable quoting `inner` (a datagram we sent) and 8 bytes of its TCP header. */
void ns_tcp_icmp_error(struct netstack *ns, const struct ns_ipv4_hdr *inner, const uint8_t *l4, uint8_t code);

#endif /* NS_INTERNAL_H */
