/*
 * ICMPv4 (RFC 792, RFC 1122 3.2.2): echo reply, errors we send (rate-limited,
 * never about errors or broadcasts), and errors we receive passed to UDP.
 * Chains: ns_ipv4_input -> ns_icmp_input -> ns_udp_icmp_error;
 * udp/ipv4 input -> ns_icmp_send_error -> ns_ipv4_output.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static void icmp_send(struct netstack *ns, struct nsbuf *b, be32_t dst)
{
    struct ns_icmp_hdr *h = (struct ns_icmp_hdr *)b->data;
    h->cksum = 0;
    h->cksum = ns_cksum_finish(ns_cksum_add(0, b->data, b->len));
    if (ns_ipv4_output(ns, b, dst, NS_IPPROTO_ICMP) == 0)
        ns->st.icmp_tx++;
}

static bool icmp_token(struct netstack *ns)
{
    if (ns->icmp_tokens < NS_ICMP_ERR_BURST) {
        uint64_t elapsed = ns->now - ns->icmp_tokens_at;
        if (elapsed > 1000000000ull)
            elapsed = 1000000000ull; /* a full second refills more than a burst; avoids overflow */
        uint64_t add = elapsed * NS_ICMP_ERR_RATE_PER_SEC / 1000000000ull;
        if (add) {
            ns->icmp_tokens = add >= NS_ICMP_ERR_BURST - ns->icmp_tokens ? NS_ICMP_ERR_BURST
                                                                         : ns->icmp_tokens + (uint32_t)add;
            ns->icmp_tokens_at = ns->now;
        }
    } else {
        ns->icmp_tokens_at = ns->now;
    }
    if (ns->icmp_tokens == 0)
        return false;
    ns->icmp_tokens--;
    return true;
}

void ns_icmp_send_error(struct netstack *ns, const struct ns_rxinfo *ri, uint8_t type, uint8_t code)
{
    const struct ns_ipv4_hdr *ip = ri->ip;
    unsigned hlen = ns_ipv4_hlen(ip);
    if (ri->ip_bcast || ri->l2_mcast)
        return;
    if (ns_ntoh16(ip->frag_off) & NS_IPV4_OFFMASK)
        return;
    if (ip->proto == NS_IPPROTO_ICMP) {
        const uint8_t *inner = (const uint8_t *)ip + hlen;
        if (ri->ip_len <= hlen || ns_icmp_is_error(inner[0]))
            return;
    }
    if (!icmp_token(ns)) {
        ns->st.icmp_tx_ratelimited++;
        return;
    }
    uint32_t quote = ri->ip_len;
    if (quote > NS_ICMP_ERR_QUOTE_MAX)
        quote = NS_ICMP_ERR_QUOTE_MAX;
    if (quote > ns->mtu - NS_IPV4_HLEN - NS_ICMP_HLEN)
        quote = ns->mtu - NS_IPV4_HLEN - NS_ICMP_HLEN;
    struct nsbuf *b = ns_alloc_tx(ns);
    if (!b)
        return;
    struct ns_icmp_hdr *h = nsbuf_append(b, NS_ICMP_HLEN + quote);
    if (!h) {
        ns->st.tx_nobuf++;
        ns_buf_put(ns, b);
        return;
    }
    h->type = type;
    h->code = code;
    h->un.rest = 0;
    memcpy((uint8_t *)h + NS_ICMP_HLEN, ip, quote);
    icmp_send(ns, b, ip->src);
}

/* Linux's rule for UDP: only "hard" unreachable codes become socket errors. */
static int unreach_errno(uint8_t code)
{
    switch (code) {
    case NS_ICMP_UNREACH_PROTO:
        return ENOPROTOOPT;
    case NS_ICMP_UNREACH_PORT:
        return ECONNREFUSED;
    default:
        return 0;
    }
}

static void icmp_unreach(struct netstack *ns, struct nsbuf *b, const struct ns_rxinfo *ri)
{
    ns->st.icmp_rx_unreach++;
    const struct ns_icmp_hdr *h = (const struct ns_icmp_hdr *)b->data;
    if (ri->ip_bcast || b->len < NS_ICMP_HLEN + NS_IPV4_HLEN + NS_UDP_HLEN) {
        ns->st.icmp_rx_err_bad++;
        return;
    }
    const struct ns_ipv4_hdr *inner = (const struct ns_ipv4_hdr *)(b->data + NS_ICMP_HLEN);
    unsigned ihl = ns_ipv4_hlen(inner);
    /* The quote must look like a datagram we sent: anything else is noise or a forgery. */
    if (ns_ipv4_version(inner) != 4 || ihl < NS_IPV4_HLEN || NS_ICMP_HLEN + ihl + 8 > b->len ||
        inner->src != ns->ip) {
        ns->st.icmp_rx_err_bad++;
        return;
    }
    if (inner->proto == NS_IPPROTO_TCP) {
        ns_tcp_icmp_error(ns, inner, (const uint8_t *)inner + ihl, h->code);
        return;
    }
    int err = unreach_errno(h->code);
    if (inner->proto != NS_IPPROTO_UDP || err == 0) {
        ns->st.icmp_rx_err_unmatched++;
        return;
    }
    ns_udp_icmp_error(ns, inner, (const struct ns_udp_hdr *)((const uint8_t *)inner + ihl), err);
}

void ns_icmp_input(struct netstack *ns, struct nsbuf *b, const struct ns_rxinfo *ri)
{
    ns->st.icmp_rx++;
    if (b->len < NS_ICMP_HLEN) {
        ns->st.icmp_rx_truncated++;
        goto drop;
    }
    if (ns_cksum_finish(ns_cksum_add(0, b->data, b->len)) != 0) {
        ns->st.icmp_rx_bad_cksum++;
        goto drop;
    }
    const struct ns_icmp_hdr *h = (const struct ns_icmp_hdr *)b->data;
    switch (h->type) {
    case NS_ICMP_ECHO_REQUEST: {
        if (ri->ip_bcast) {    /* no smurf amplifier */
            ns->st.icmp_rx_echo_bcast++;
            break;
        }
        struct nsbuf *r = ns_alloc_tx(ns);
        if (!r)
            break;
        uint8_t *p = nsbuf_append(r, b->len);
        if (!p) {
            ns->st.tx_nobuf++;
            ns_buf_put(ns, r);
            break;
        }
        memcpy(p, b->data, b->len);
        ((struct ns_icmp_hdr *)p)->type = NS_ICMP_ECHO_REPLY;
        ((struct ns_icmp_hdr *)p)->code = 0;
        icmp_send(ns, r, ri->ip->src);
        break;
    }
    case NS_ICMP_ECHO_REPLY: {
        uint32_t slot = (ns->ping_head + ns->ping_count) % NS_PING_RING;
        if (ns->ping_count == NS_PING_RING)
            ns->ping_head = (ns->ping_head + 1) % NS_PING_RING;
        else
            ns->ping_count++;
        ns->ping[slot] = (struct ns_ping_reply){ .from = ri->ip->src,
                                                 .id = ns_ntoh16(h->un.echo.id),
                                                 .seq = ns_ntoh16(h->un.echo.seq),
                                                 .len = b->len - NS_ICMP_HLEN };
        break;
    }
    case NS_ICMP_DEST_UNREACH:
        icmp_unreach(ns, b, ri);
        break;
    default:
        ns->st.icmp_rx_other++;
        break;
    }
drop:
    ns_buf_put(ns, b);
}

int ns_ping_send(struct netstack *ns, be32_t dst, uint16_t id, uint16_t seq, const void *data, size_t len)
{
    if (len > ns->mtu - NS_IPV4_HLEN - NS_ICMP_HLEN)
        return -EMSGSIZE;
    if (len && !data)
        return -EINVAL;
    struct nsbuf *b = ns_alloc_tx(ns);
    if (!b)
        return -ENOBUFS;
    struct ns_icmp_hdr *h = nsbuf_append(b, (uint32_t)(NS_ICMP_HLEN + len));
    if (!h) {
        ns_buf_put(ns, b);
        return -EMSGSIZE;
    }
    h->type = NS_ICMP_ECHO_REQUEST;
    h->code = 0;
    h->un.echo.id = ns_hton16(id);
    h->un.echo.seq = ns_hton16(seq);
    if (len)
        memcpy((uint8_t *)h + NS_ICMP_HLEN, data, len);
    h->cksum = 0;
    h->cksum = ns_cksum_finish(ns_cksum_add(0, b->data, b->len));
    int rc = ns_ipv4_output(ns, b, dst, NS_IPPROTO_ICMP);
    if (rc == 0)
        ns->st.icmp_tx++;
    return rc;
}

int ns_ping_reply(struct netstack *ns, struct ns_ping_reply *out)
{
    if (ns->ping_count == 0)
        return -EAGAIN;
    *out = ns->ping[ns->ping_head];
    ns->ping_head = (ns->ping_head + 1) % NS_PING_RING;
    ns->ping_count--;
    return 0;
}
