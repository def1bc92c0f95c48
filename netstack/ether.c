/*
 * Ethernet II input filtering/dispatch and header output. Chain: ns_poll ->
 * ns_input -> ns_eth_input -> ns_arp_input | ns_ipv4_input; and
 * ns_arp_output / arp replies -> ns_eth_output -> ns_tx_enqueue.
 */
#include <string.h>

#include "internal.h"

void ns_eth_input(struct netstack *ns, struct nsbuf *b)
{
    if (b->len < NS_ETH_HLEN) {
        ns->st.eth_rx_truncated++;
        goto drop;
    }
    const struct ns_eth_hdr *eh = (const struct ns_eth_hdr *)b->data;
    bool bcast = ns_eth_is_bcast(eh->dst);
    /* We join no multicast groups, so only our address and broadcast are ours. */
    if (!bcast && memcmp(eh->dst, ns->mac, NS_ETH_ALEN) != 0) {
        ns->st.eth_rx_not_for_us++;
        goto drop;
    }
    /* A group source is forged; our own source is a loop or a clash. */
    if (ns_eth_is_mcast(eh->src) || memcmp(eh->src, ns->mac, NS_ETH_ALEN) == 0) {
        ns->st.eth_rx_bad_src++;
        goto drop;
    }
    uint16_t type = ns_ntoh16(eh->type);
    nsbuf_pull(b, NS_ETH_HLEN);
    switch (type) {
    case NS_ETH_TYPE_ARP:
        ns_arp_input(ns, b);
        return;
    case NS_ETH_TYPE_IPV4:
        ns_ipv4_input(ns, b, bcast);
        return;
    default:
        ns->st.eth_rx_unknown_type++;
        goto drop;
    }
drop:
    ns_buf_put(ns, b);
}

void ns_eth_output(struct netstack *ns, struct nsbuf *b, const uint8_t *dst, uint16_t type)
{
    struct ns_eth_hdr *eh = nsbuf_push(b, NS_ETH_HLEN);
    if (!eh) {
        ns->st.tx_nobuf++;
        ns_buf_put(ns, b);
        return;
    }
    memcpy(eh->dst, dst, NS_ETH_ALEN);
    memcpy(eh->src, ns->mac, NS_ETH_ALEN);
    eh->type = ns_hton16(type);
    /* Pad runt frames here: not every device does, and zeros are what the
     * receiver expects past the IP total length. */
    if (b->len < NS_ETH_MIN_FRAME && nsbuf_tailroom(b) >= NS_ETH_MIN_FRAME - b->len) {
        uint32_t pad = NS_ETH_MIN_FRAME - b->len;
        memset(nsbuf_append(b, pad), 0, pad);
    }
    ns_tx_enqueue(ns, b);
}
