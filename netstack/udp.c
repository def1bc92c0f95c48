/*
 * UDP (RFC 768, RFC 1122 4.1): the socket table, demux of received datagrams
 * into per-socket queues (zero copy: the frame's buffer is queued), output,
 * and ICMP errors turned into socket errors. Chains: ns_ipv4_input ->
 * ns_udp_input -> socket queue -> ns_udp_recvfrom; ns_udp_sendto ->
 * ns_ipv4_output; ns_icmp_input -> ns_udp_icmp_error.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static struct ns_udp_sock *sock_get(struct netstack *ns, int sd)
{
    if (sd < 0 || sd >= NS_UDP_MAX_SOCKETS || !ns->udp[sd].used)
        return NULL;
    return &ns->udp[sd];
}

static bool port_in_use(const struct netstack *ns, be16_t port)
{
    for (int i = 0; i < NS_UDP_MAX_SOCKETS; i++)
        if (ns->udp[i].used && ns->udp[i].bound && ns->udp[i].local.port == port)
            return true;
    return false;
}

static int bind_ephemeral(struct netstack *ns, struct ns_udp_sock *s)
{
    uint32_t span = NS_EPHEMERAL_PORT_MAX - NS_EPHEMERAL_PORT_MIN + 1;
    for (uint32_t i = 0; i < span; i++) {
        uint16_t p = ns->next_ephemeral;
        ns->next_ephemeral = p >= NS_EPHEMERAL_PORT_MAX ? NS_EPHEMERAL_PORT_MIN : (uint16_t)(p + 1);
        if (!port_in_use(ns, ns_hton16(p))) {
            s->local.port = ns_hton16(p);
            s->bound = true;
            return 0;
        }
    }
    return -EADDRINUSE;
}

static void rxq_free(struct netstack *ns, struct ns_udp_sock *s)
{
    while (s->rx_head) {
        struct nsbuf *b = s->rx_head;
        s->rx_head = b->next;
        b->next = NULL;
        ns_buf_put(ns, b);
    }
    s->rx_tail = NULL;
    s->rx_count = 0;
}

void ns_udp_fini(struct netstack *ns)
{
    for (int i = 0; i < NS_UDP_MAX_SOCKETS; i++)
        if (ns->udp[i].used)
            rxq_free(ns, &ns->udp[i]);
}

void ns_udp_mark(struct netstack *ns, int sd)
{
    struct ns_udp_sock *s = &ns->udp[sd];
    if (s->ev_dirty)
        return;
    s->ev_dirty = true;
    ns_ev_push(ns, NS_PROTO_UDP, sd);
}

int ns_udp_socket(struct netstack *ns)
{
    for (int i = 0; i < NS_UDP_MAX_SOCKETS; i++) {
        if (!ns->udp[i].used) {
            memset(&ns->udp[i], 0, sizeof(ns->udp[i]));
            ns->udp[i].used = true;
            return i;
        }
    }
    return -EMFILE;
}

int ns_udp_bind(struct netstack *ns, int sd, const struct ns_sockaddr *local)
{
    struct ns_udp_sock *s = sock_get(ns, sd);
    if (!s)
        return -EBADF;
    if (!local || s->bound)
        return -EINVAL;
    if (local->addr != 0 && local->addr != ns->ip)
        return -EADDRNOTAVAIL;
    s->local.addr = local->addr;
    if (local->port == 0)
        return bind_ephemeral(ns, s);
    if (port_in_use(ns, local->port))
        return -EADDRINUSE;
    s->local.port = local->port;
    s->bound = true;
    return 0;
}

int ns_udp_connect(struct netstack *ns, int sd, const struct ns_sockaddr *remote)
{
    struct ns_udp_sock *s = sock_get(ns, sd);
    if (!s)
        return -EBADF;
    if (!remote || remote->addr == 0 || remote->port == 0)
        return -EINVAL;
    if (!s->bound) {
        int rc = bind_ephemeral(ns, s);
        if (rc < 0)
            return rc;
    }
    s->remote = *remote;
    s->connected = true;
    return 0;
}

int ns_udp_sendto(struct netstack *ns, int sd, const void *data, size_t len, const struct ns_sockaddr *dst)
{
    struct ns_udp_sock *s = sock_get(ns, sd);
    if (!s)
        return -EBADF;
    if (s->err) {
        /* An ICMP error is reported on the next call, as Linux does. */
        int e = s->err;
        s->err = 0;
        return -e;
    }
    if (!dst) {
        if (!s->connected)
            return -EDESTADDRREQ;
        dst = &s->remote;
    }
    if (dst->addr == 0 || dst->port == 0 || (len && !data))
        return -EINVAL;
    if (len > NS_UDP_MAX_PAYLOAD || len + NS_IPV4_HLEN + NS_UDP_HLEN > ns->mtu)
        return -EMSGSIZE;
    if (ns_ip_is_bcast(ns, dst->addr))
        return -EACCES;          /* no SO_BROADCAST yet */
    if (!s->bound) {
        int rc = bind_ephemeral(ns, s);
        if (rc < 0)
            return rc;
    }
    struct nsbuf *b = ns_alloc_tx(ns);
    if (!b)
        return -ENOBUFS;
    uint16_t ulen = (uint16_t)(NS_UDP_HLEN + len);
    struct ns_udp_hdr *u = nsbuf_append(b, ulen);
    if (!u) {
        ns_buf_put(ns, b);
        return -EMSGSIZE;        /* the device's buffers are smaller than its MTU */
    }
    u->sport = s->local.port;
    u->dport = dst->port;
    u->len = ns_hton16(ulen);
    u->cksum = 0;
    if (len)
        memcpy((uint8_t *)u + NS_UDP_HLEN, data, len);
    uint32_t sum = ns_cksum_pseudo(ns->ip, dst->addr, NS_IPPROTO_UDP, ulen);
    be16_t ck = ns_cksum_finish(ns_cksum_add(sum, u, ulen));
    u->cksum = ck ? ck : 0xffff; /* 0 on the wire means "no checksum" */
    int rc = ns_ipv4_output(ns, b, dst->addr, NS_IPPROTO_UDP);
    if (rc < 0)
        return rc;
    ns->st.udp_tx++;
    return (int)len;
}

static struct nsbuf *rxq_pop(struct ns_udp_sock *s)
{
    struct nsbuf *b = s->rx_head;
    s->rx_head = b->next;
    if (!s->rx_head)
        s->rx_tail = NULL;
    b->next = NULL;
    s->rx_count--;
    return b;
}

int ns_udp_recv_buf(struct netstack *ns, int sd, struct nsbuf **out, struct ns_sockaddr *src)
{
    struct ns_udp_sock *s = sock_get(ns, sd);
    if (!s)
        return -EBADF;
    if (s->err) {
        int e = s->err;
        s->err = 0;
        return -e;
    }
    if (!s->rx_head)
        return -EAGAIN;
    struct nsbuf *b = rxq_pop(s);
    if (src) {
        src->addr = b->peer_addr;
        src->port = b->peer_port;
    }
    *out = b;
    return (int)b->len;
}

int ns_udp_recvfrom(struct netstack *ns, int sd, void *buf, size_t len, struct ns_sockaddr *src)
{
    struct nsbuf *b;
    int rc = ns_udp_recv_buf(ns, sd, &b, src);
    if (rc < 0)
        return rc;
    size_t n = b->len < len ? b->len : len;
    if (n)
        memcpy(buf, b->data, n);
    ns_buf_put(ns, b);
    return (int)n;
}

int ns_udp_rx_pending(struct netstack *ns, int sd)
{
    struct ns_udp_sock *s = sock_get(ns, sd);
    return s ? (int)s->rx_count : -EBADF;
}

int ns_udp_getsockname(struct netstack *ns, int sd, struct ns_sockaddr *local)
{
    struct ns_udp_sock *s = sock_get(ns, sd);
    if (!s)
        return -EBADF;
    *local = s->local;
    return 0;
}

int ns_udp_close(struct netstack *ns, int sd)
{
    struct ns_udp_sock *s = sock_get(ns, sd);
    if (!s)
        return -EBADF;
    rxq_free(ns, s);
    if (s->ev_dirty)
        ns_ev_unlist(ns, NS_PROTO_UDP, sd);
    memset(s, 0, sizeof(*s));
    return 0;
}

void ns_udp_input(struct netstack *ns, struct nsbuf *b, const struct ns_rxinfo *ri)
{
    ns->st.udp_rx++;
    if (b->len < NS_UDP_HLEN) {
        ns->st.udp_rx_truncated++;
        goto drop;
    }
    const struct ns_udp_hdr *u = (const struct ns_udp_hdr *)b->data;
    uint16_t ulen = ns_ntoh16(u->len);
    if (ulen < NS_UDP_HLEN || ulen > b->len) {
        ns->st.udp_rx_bad_len++;
        goto drop;
    }
    nsbuf_trim(b, ulen);
    /* A zero checksum field means the sender computed none (RFC 768). */
    if ((b->flags & NSBUF_RX_L4_CKSUM_BAD) ||
        (u->cksum != 0 && !(b->flags & NSBUF_RX_L4_CKSUM_GOOD) &&
         ns_cksum_finish(ns_cksum_add(ns_cksum_pseudo(ri->ip->src, ri->ip->dst, NS_IPPROTO_UDP, ulen), b->data,
                                      ulen)) != 0)) {
        ns->st.udp_rx_bad_cksum++;
        goto drop;
    }
    /* Most specific socket wins: connected to this sender, then bound only. */
    struct ns_udp_sock *best = NULL;
    for (int i = 0; i < NS_UDP_MAX_SOCKETS; i++) {
        struct ns_udp_sock *s = &ns->udp[i];
        if (!s->used || !s->bound || s->local.port != u->dport || u->dport == 0)
            continue;
        if (s->connected) {
            if (s->remote.addr == ri->ip->src && s->remote.port == u->sport) {
                best = s;
                break;
            }
        } else if (!best) {
            best = s;
        }
    }
    if (!best) {
        ns->st.udp_rx_no_port++;
        ns_icmp_send_error(ns, ri, NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_PORT);
        goto drop;
    }
    if (best->rx_count >= NS_UDP_RXQ_MAX) {
        ns->st.udp_rx_queue_full++;
        goto drop;
    }
    b->peer_addr = ri->ip->src;
    b->peer_port = u->sport;
    nsbuf_pull(b, NS_UDP_HLEN);
    b->next = NULL;
    if (best->rx_tail)
        best->rx_tail->next = b;
    else
        best->rx_head = b;
    best->rx_tail = b;
    best->rx_count++;
    ns_udp_mark(ns, (int)(best - ns->udp));
    return;
drop:
    ns_buf_put(ns, b);
}

void ns_udp_icmp_error(struct netstack *ns, const struct ns_ipv4_hdr *inner, const struct ns_udp_hdr *l4, int err)
{
    for (int i = 0; i < NS_UDP_MAX_SOCKETS; i++) {
        struct ns_udp_sock *s = &ns->udp[i];
        /* Only a connected socket can tell the error is about its peer (as Linux without IP_RECVERR). */
        if (s->used && s->bound && s->connected && s->local.port == l4->sport && s->remote.addr == inner->dst &&
            s->remote.port == l4->dport) {
            s->err = err;
            ns_udp_mark(ns, i);
            return;
        }
    }
    ns->st.icmp_rx_err_unmatched++;
}
