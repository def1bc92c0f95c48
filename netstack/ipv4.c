/*
 * IPv4 (RFC 791, RFC 1122 3.2.1): header validation and delivery of received
 * datagrams, header output with DF and next-hop choice. Chains:
 * ns_eth_input -> ns_ipv4_input [-> ns_ipv4_frag_input (ipv4_frag.c), once
 * whole] -> ns_ipv4_deliver -> ns_icmp_input | ns_udp_input | ns_tcp_input;
 * udp/icmp/tcp -> ns_ipv4_output -> ns_arp_output.
 */
#include <errno.h>

#include "internal.h"

void ns_ipv4_input(struct netstack *ns, struct nsbuf *b, bool l2_mcast)
{
    ns->st.ip_rx++;
    if (b->len < NS_IPV4_HLEN) {
        ns->st.ip_rx_truncated++;
        goto drop;
    }
    const struct ns_ipv4_hdr *ip = (const struct ns_ipv4_hdr *)b->data;
    if (ns_ipv4_version(ip) != 4) {
        ns->st.ip_rx_bad_version++;
        goto drop;
    }
    unsigned hlen = ns_ipv4_hlen(ip);
    if (hlen < NS_IPV4_HLEN || hlen > b->len) {
        ns->st.ip_rx_bad_ihl++;
        goto drop;
    }
    unsigned tot = ns_ntoh16(ip->total_len);
    if (tot < hlen || tot > b->len) {
        ns->st.ip_rx_bad_len++;
        goto drop;
    }
    if ((b->flags & NSBUF_RX_IP_CKSUM_BAD) ||
        (!(b->flags & NSBUF_RX_IP_CKSUM_GOOD) && ns_ipv4_cksum(ip, hlen) != 0)) {
        ns->st.ip_rx_bad_cksum++;
        goto drop;
    }
    nsbuf_trim(b, tot);          /* Ethernet padding is not payload */
    if (NS_IP_DROP_TTL_ZERO && ip->ttl == 0) {
        ns->st.ip_rx_ttl_zero++;
        goto drop;
    }
    be32_t src = ip->src, dst = ip->dst;
    /* RFC 1122 3.2.1.3: such sources cannot be answered and are forged. */
    if (src == 0 || ns_ip_is_bcast(ns, src) || ns_ipv4_is_mcast(src) || ns_ipv4_is_reserved(src) ||
        ns_ipv4_is_loopback(src) || (src == ns->ip && !(b->flags & NSBUF_LOOPED))) {
        ns->st.ip_rx_bad_src++;
        goto drop;
    }
    bool ip_bcast = ns_ip_is_bcast(ns, dst);
    /* We do not forward, join no groups, and (RFC 1122 3.3.6) discard a
     * link-layer broadcast that carries a unicast IP destination. */
    if ((dst != ns->ip && !ip_bcast) || (l2_mcast && !ip_bcast)) {
        ns->st.ip_rx_not_for_us++;
        goto drop;
    }
    if (ns_ntoh16(ip->frag_off) & (NS_IPV4_MF | NS_IPV4_OFFMASK)) {
        /* Never deliver a piece as if it were the whole datagram. */
        ns_ipv4_frag_input(ns, b, l2_mcast);
        return;
    }
    ns_ipv4_deliver(ns, b, l2_mcast);
    return;
drop:
    ns_buf_put(ns, b);
}

void ns_ipv4_deliver(struct netstack *ns, struct nsbuf *b, bool l2_mcast)
{
    const struct ns_ipv4_hdr *ip = (const struct ns_ipv4_hdr *)b->data;
    unsigned hlen = ns_ipv4_hlen(ip);
    struct ns_rxinfo ri = { .ip = ip, .ip_len = b->len, .l2_mcast = l2_mcast, .ip_bcast = ns_ip_is_bcast(ns, ip->dst) };
    nsbuf_pull(b, hlen);         /* options, if any, are skipped: we act on none */
    switch (ip->proto) {
    case NS_IPPROTO_ICMP:
        ns_icmp_input(ns, b, &ri);
        return;
    case NS_IPPROTO_UDP:
        ns_udp_input(ns, b, &ri);
        return;
    case NS_IPPROTO_TCP:
        ns_tcp_input(ns, b, &ri);
        return;
    default:
        ns->st.ip_rx_unknown_proto++;
        ns_icmp_send_error(ns, &ri, NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_PROTO);
        break;
    }
    ns_buf_put(ns, b);
}

int ns_ipv4_output(struct netstack *ns, struct nsbuf *b, be32_t dst, uint8_t proto)
{
    int rc;
    if (dst == 0 || ns_ipv4_is_reserved(dst) || ns_ipv4_is_loopback(dst)) {
        rc = -EINVAL;
        goto drop;
    }
    /* We set DF on everything and never fragment (RFC 1191 style): the
     * caller learns the limit instead of us sending pieces. */
    if (b->len + NS_IPV4_HLEN > ns->mtu) {
        rc = -EMSGSIZE;
        goto drop;
    }
    be32_t nh = dst;
    if (!ns_ip_on_link(ns, dst) && dst != NS_IPV4_BCAST && !ns_ipv4_is_mcast(dst)) {
        if (!ns->gateway) {
            ns->st.ip_tx_no_route++;
            rc = -ENETUNREACH;
            goto drop;
        }
        nh = ns->gateway;
    }
    struct ns_ipv4_hdr *ip = nsbuf_push(b, NS_IPV4_HLEN);
    if (!ip) {
        ns->st.tx_nobuf++;
        rc = -ENOBUFS;
        goto drop;
    }
    ip->ver_ihl = 0x45;
    ip->tos = 0;
    ip->total_len = ns_hton16((uint16_t)b->len);
    ip->id = ns_hton16(ns->ip_id++);
    ip->frag_off = ns_hton16(NS_IPV4_DF);
    ip->ttl = ns_ipv4_is_mcast(dst) ? 1 : NS_IP_DEFAULT_TTL;
    ip->proto = proto;
    ip->cksum = 0;
    ip->src = ns->ip;
    ip->dst = dst;
    ip->cksum = ns_ipv4_cksum(ip, NS_IPV4_HLEN);
    ns->st.ip_tx++;
    if (dst == ns->ip) {
        ns_loopback_enqueue(ns, b);
        return 0;
    }
    ns_arp_output(ns, b, nh);
    return 0;
drop:
    ns_buf_put(ns, b);
    return rc;
}
