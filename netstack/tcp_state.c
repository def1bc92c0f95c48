/*
 * TCP sockets and connection lifetime: the control-block table, 4-tuple hash
 * demux, ports, initial sequence numbers (RFC 6528), state transitions, the
 * readiness events, and every ns_tcp_* call. Chains: LibOS -> ns_tcp_* here
 * -> tcp_output (tcp_output.c); ns_tcp_input (tcp_input.c) -> tcp_lookup /
 * tcp_new_child / tcp_set_state / tcp_close_conn here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tcp_internal.h"

/* ---- SipHash-2-4 (Aumasson & Bernstein), written from the paper's description. */
static inline uint64_t rotl64(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }
static inline uint64_t load64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
#define SIPROUND                                                                                    \
    do {                                                                                            \
        v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; v0 = rotl64(v0, 32);                              \
        v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2;                                                    \
        v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0;                                                    \
        v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; v2 = rotl64(v2, 32);                               \
    } while (0)

uint64_t ns_siphash24(const uint8_t key[16], const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t k0 = load64le(key), k1 = load64le(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load64le(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* RFC 6528: ISN = M + F(4-tuple, key), M a 4 us clock; the hash's other half
 * gives the connection's timestamp offset (RFC 7323 5.4). */
uint32_t tcp_isn(struct netstack *ns, struct ns_tcb *t)
{
    uint8_t in[12];
    memcpy(in, &t->local.addr, 4);
    memcpy(in + 4, &t->remote.addr, 4);
    memcpy(in + 8, &t->local.port, 2);
    memcpy(in + 10, &t->remote.port, 2);
    uint64_t h = ns_siphash24(tcp_of(ns)->isn_key, in, sizeof(in));
    t->ts_offset = (uint32_t)(h >> 32);
    return (uint32_t)(ns->now / 4000) + (uint32_t)h;
}

/* ---- table and hash */
int ns_tcp_init(struct netstack *ns, const struct ns_config *cfg)
{
    struct ns_tcp *tcp = calloc(1, sizeof(*tcp));
    if (!tcp)
        return -ENOMEM;
    memcpy(tcp->isn_key, cfg->isn_secret, sizeof(tcp->isn_key));
    /* Keep demux collisions unpredictable to a remote sender. */
    uint8_t tag[4] = { 'h', 'a', 's', 'h' };
    tcp->hash_key = ns_siphash24(tcp->isn_key, tag, sizeof(tag)) | 1;
    tcp->next_ephemeral = NS_EPHEMERAL_PORT_MIN;
    for (int i = 0; i < NS_TCP_MAX_SOCKETS; i++)
        tcp->tcb[i].sd = i;
    ns->tcp = tcp;
    ns->tcp_default_cc = cfg->tcp_cc;
    return 0;
}

static void rxq_purge(struct netstack *ns, struct ns_tcb *t)
{
    while (t->rxq_head) {
        struct nsbuf *b = t->rxq_head;
        t->rxq_head = b->next;
        b->next = NULL;
        ns_buf_put(ns, b);
    }
    t->rxq_tail = NULL;
    t->rxq_bytes = 0;
    t->rxq_nbufs = 0;
}

static void ooo_purge(struct netstack *ns, struct ns_tcb *t)
{
    while (t->ooo_head) {
        struct nsbuf *b = t->ooo_head;
        t->ooo_head = b->next;
        b->next = NULL;
        ns_buf_put(ns, b);
    }
    t->ooo_count = 0;
    t->ooo_fin = false;
    t->nrsack = 0;
}

static uint32_t hash4(const struct ns_tcp *tcp, be32_t raddr, be16_t rport, be16_t lport)
{
    uint64_t x = ((uint64_t)raddr << 32) | ((uint32_t)rport << 16) | lport;
    x = (x ^ tcp->hash_key) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 40) & (NS_TCP_HASH_BUCKETS - 1);
}

void tcp_hash_insert(struct netstack *ns, struct ns_tcb *t)
{
    struct ns_tcp *tcp = tcp_of(ns);
    if (t->hashed)
        return;
    t->hash = hash4(tcp, t->remote.addr, t->remote.port, t->local.port);
    t->hnext = tcp->hash[t->hash];
    tcp->hash[t->hash] = t;
    t->hashed = true;
}

static void hash_remove(struct netstack *ns, struct ns_tcb *t)
{
    if (!t->hashed)
        return;
    struct ns_tcb **pp = &tcp_of(ns)->hash[t->hash];
    while (*pp && *pp != t)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = t->hnext;
    t->hnext = NULL;
    t->hashed = false;
}

struct ns_tcb *tcp_lookup(struct netstack *ns, be32_t raddr, be16_t rport, be16_t lport)
{
    struct ns_tcp *tcp = tcp_of(ns);
    for (struct ns_tcb *t = tcp->hash[hash4(tcp, raddr, rport, lport)]; t; t = t->hnext)
        if (t->remote.addr == raddr && t->remote.port == rport && t->local.port == lport)
            return t;
    return NULL;
}

struct ns_tcb *tcp_find_listener(struct netstack *ns, be16_t lport)
{
    for (struct ns_tcb *t = tcp_of(ns)->listeners; t; t = t->lnext)
        if (t->local.port == lport)
            return t;
    return NULL;
}

static void listener_remove(struct netstack *ns, struct ns_tcb *t)
{
    struct ns_tcb **pp = &tcp_of(ns)->listeners;
    while (*pp && *pp != t)
        pp = &(*pp)->lnext;
    if (*pp)
        *pp = t->lnext;
    t->lnext = NULL;
}

static void sock_defaults(struct netstack *ns, struct ns_tcb *t)
{
    t->used = true;
    t->state = NS_TCP_CLOSED;
    t->sndbuf = NS_TCP_SNDBUF;
    t->rcvbuf = NS_TCP_RCVBUF;
    t->cc_algo = ns->tcp_default_cc;
    t->keepidle_s = NS_TCP_KEEPIDLE_S;
    t->keepintvl_s = NS_TCP_KEEPINTVL_S;
    t->keepcnt = NS_TCP_KEEPCNT_DEFAULT;
    tcp_timers_init(t);
}

static struct ns_tcb *tcb_alloc(struct netstack *ns)
{
    struct ns_tcp *tcp = tcp_of(ns);
    for (int i = 0; i < NS_TCP_MAX_SOCKETS; i++) {
        struct ns_tcb *t = &tcp->tcb[i];
        if (!t->used) {
            memset(t, 0, sizeof(*t));
            t->sd = i;
            sock_defaults(ns, t);
            return t;
        }
    }
    return NULL;
}

static void ev_unlist(struct netstack *ns, struct ns_tcb *t)
{
    if (t->ev_dirty)
        ns_ev_unlist(ns, NS_PROTO_TCP, t->sd);
    t->ev_dirty = false;
}

static void tcb_free(struct netstack *ns, struct ns_tcb *t)
{
    tcp_timers_stop(ns, t);
    hash_remove(ns, t);
    if (t->state == NS_TCP_LISTEN)
        listener_remove(ns, t);
    struct ns_tcb *lis = t->parent;
    if (lis) {
        if (t->connected_once) {
            struct ns_tcb **pp = &lis->acc_head;
            struct ns_tcb *prev = NULL;
            while (*pp && *pp != t) {
                prev = *pp;
                pp = &(*pp)->acc_next;
            }
            if (*pp) {
                *pp = t->acc_next;
                if (lis->acc_tail == t)
                    lis->acc_tail = prev;
                lis->acc_count--;
            }
        } else {
            lis->syn_count--;
        }
    }
    rxq_purge(ns, t);
    ooo_purge(ns, t);
    free(t->sbuf);
    ev_unlist(ns, t);
    int sd = t->sd;
    memset(t, 0, sizeof(*t));
    t->sd = sd;
}

void ns_tcp_fini(struct netstack *ns)
{
    struct ns_tcp *tcp = tcp_of(ns);
    if (!tcp)
        return;
    for (int i = 0; i < NS_TCP_MAX_SOCKETS; i++)
        if (tcp->tcb[i].used) {
            tcp->tcb[i].parent = NULL;   /* listeners go too: no bookkeeping needed */
            tcb_free(ns, &tcp->tcb[i]);
        }
    free(tcp);
    ns->tcp = NULL;
}

/* ---- events */
void tcp_mark(struct netstack *ns, struct ns_tcb *t)
{
    if (t->parent && t->connected_once) {
        t = t->parent;           /* an unaccepted child's news is its listener's */
    }
    if (!t->user || t->ev_dirty)
        return;
    t->ev_dirty = true;
    ns_ev_push(ns, NS_PROTO_TCP, t->sd);
}

static uint32_t events_of(const struct ns_tcb *t)
{
    uint32_t ev = 0;
    if (t->state == NS_TCP_LISTEN)
        return t->acc_head ? NS_EV_IN : 0;
    if (t->so_error)
        ev |= NS_EV_ERR;
    bool closed = t->state == NS_TCP_CLOSED;
    if (t->rxq_bytes || t->fin_rcvd || t->rd_shut || t->so_error || t->fatal)
        ev |= NS_EV_IN;
    if (t->fin_rcvd)
        ev |= NS_EV_RDHUP | NS_EV_IN;
    if (closed || (t->fin_rcvd && t->wr_shut))
        ev |= NS_EV_HUP;
    if (closed && t->connected_once && !t->fatal)
        ev |= NS_EV_IN;
    bool conn = t->state == NS_TCP_ESTABLISHED || t->state == NS_TCP_CLOSE_WAIT;
    if ((conn && !t->wr_shut && t->sbuf_len < t->sndbuf) || t->wr_shut || closed)
        ev |= NS_EV_OUT;
    return ev;
}

uint32_t ns_tcp_events_of(struct netstack *ns, int sd, bool *live)
{
    struct ns_tcb *t = &tcp_of(ns)->tcb[sd];
    *live = t->used && t->user && t->ev_dirty;
    if (!*live)
        return 0;
    t->ev_dirty = false;
    return events_of(t);
}

/* ---- state changes */
void tcp_set_state(struct netstack *ns, struct ns_tcb *t, enum ns_tcp_state st)
{
    (void)ns;
    t->state = (uint8_t)st;
    if (st == NS_TCP_ESTABLISHED)
        t->connected_once = true;
}

void tcp_close_conn(struct netstack *ns, struct ns_tcb *t, int err)
{
    tcp_timers_stop(ns, t);
    hash_remove(ns, t);
    t->state = NS_TCP_CLOSED;
    ooo_purge(ns, t);
    t->sbuf_len = 0;
    if (err) {
        t->so_error = err;
        t->fatal = err;
    }
    if (!t->user && !(t->parent && t->connected_once)) {
        tcb_free(ns, t);
        return;
    }
    tcp_mark(ns, t);
}

void tcp_enter_time_wait(struct netstack *ns, struct ns_tcb *t)
{
    tcp_set_state(ns, t, NS_TCP_TIME_WAIT);
    ns_tw_cancel(&ns->tw, &t->t_rtx);
    ns_tw_cancel(&ns->tw, &t->t_dack);
    t->sbuf_len = 0;
    ns_tw_arm(&ns->tw, &t->t_keep, ns->now + 2ull * NS_TCP_MSL_MS * NS_MS);
    tcp_mark(ns, t);
}

bool tcp_child_established(struct netstack *ns, struct ns_tcb *t)
{
    struct ns_tcb *lis = t->parent;
    if (lis->acc_count > lis->backlog) {  /* backlog + 1 fit, as Linux's sk_acceptq_is_full */
        ns->st.tcp_accept_queue_overflow++;
        return false;
    }
    lis->syn_count--;
    lis->acc_count++;
    t->acc_next = NULL;
    if (lis->acc_tail)
        lis->acc_tail->acc_next = t;
    else
        lis->acc_head = t;
    lis->acc_tail = t;
    tcp_set_state(ns, t, NS_TCP_ESTABLISHED);
    ns->st.tcp_passive_opens++;
    tcp_mark(ns, t);
    return true;
}

void tcp_init_conn(struct netstack *ns, struct ns_tcb *t)
{
    t->iss = tcp_isn(ns, t);
    t->snd_una = t->snd_nxt = t->snd_max = t->iss;
    t->snd_buf_seq = t->iss + 1;
    t->rto_ms = NS_TCP_RTO_INIT_MS;
    t->rcv_mss = NS_TCP_DEFAULT_MSS;
    t->peer_mss = NS_TCP_DEFAULT_MSS;
    t->snd_wscale = t->rcv_wscale = 0;
    t->last_rx = ns->now;
    tcp_update_mss(ns, t);
    ns_cc_init(&t->cc, t->cc_algo, t->snd_mss, ns->now);
}

struct ns_tcb *tcp_new_child(struct netstack *ns, struct ns_tcb *lis, be32_t raddr, be16_t rport)
{
    struct ns_tcb *t = tcb_alloc(ns);
    if (!t)
        return NULL;
    t->bound = true;
    t->local.addr = ns->ip;
    t->local.port = lis->local.port;
    t->remote.addr = raddr;
    t->remote.port = rport;
    t->parent = lis;
    /* Children inherit the listener's options, as accept() does on Linux. */
    t->reuseaddr = lis->reuseaddr;
    t->keepalive = lis->keepalive;
    t->nodelay = lis->nodelay;
    t->linger0 = lis->linger0;
    t->cc_algo = lis->cc_algo;
    t->sndbuf = lis->sndbuf;
    t->rcvbuf = lis->rcvbuf;
    t->mss_clamp = lis->mss_clamp;
    t->keepidle_s = lis->keepidle_s;
    t->keepintvl_s = lis->keepintvl_s;
    t->keepcnt = lis->keepcnt;
    t->user_timeout_ms = lis->user_timeout_ms;
    lis->syn_count++;
    tcp_init_conn(ns, t);
    tcp_hash_insert(ns, t);
    return t;
}

/* ---- ports */
static bool addr_overlap(be32_t a, be32_t b) { return a == 0 || b == 0 || a == b; }

static bool bind_conflict(struct netstack *ns, const struct ns_tcb *t, be32_t addr, be16_t port)
{
    struct ns_tcp *tcp = tcp_of(ns);
    for (int i = 0; i < NS_TCP_MAX_SOCKETS; i++) {
        const struct ns_tcb *u = &tcp->tcb[i];
        if (!u->used || u == t || !u->bound || u->local.port != port || !addr_overlap(u->local.addr, addr))
            continue;
        /* Linux: both sides SO_REUSEADDR and the other not listening; a connection
         * in TIME_WAIT never blocks a socket that asked for reuse. */
        if (t->reuseaddr && u->state != NS_TCP_LISTEN && (u->reuseaddr || u->state == NS_TCP_TIME_WAIT))
            continue;
        return true;
    }
    return false;
}

static bool port_used(struct netstack *ns, be16_t port)
{
    struct ns_tcp *tcp = tcp_of(ns);
    for (int i = 0; i < NS_TCP_MAX_SOCKETS; i++)
        if (tcp->tcb[i].used && tcp->tcb[i].bound && tcp->tcb[i].local.port == port)
            return true;
    return false;
}

static int bind_ephemeral(struct netstack *ns, struct ns_tcb *t)
{
    struct ns_tcp *tcp = tcp_of(ns);
    uint32_t span = NS_EPHEMERAL_PORT_MAX - NS_EPHEMERAL_PORT_MIN + 1;
    for (uint32_t i = 0; i < span; i++) {
        uint16_t p = tcp->next_ephemeral;
        tcp->next_ephemeral = p >= NS_EPHEMERAL_PORT_MAX ? NS_EPHEMERAL_PORT_MIN : (uint16_t)(p + 1);
        if (!port_used(ns, ns_hton16(p))) {
            t->local.port = ns_hton16(p);
            t->bound = true;
            return 0;
        }
    }
    return -EADDRINUSE;
}

/* ---- API */
static struct ns_tcb *sock_get(struct netstack *ns, int sd)
{
    if (sd < 0 || sd >= NS_TCP_MAX_SOCKETS)
        return NULL;
    struct ns_tcb *t = &tcp_of(ns)->tcb[sd];
    return t->used && t->user ? t : NULL;
}

int ns_tcp_socket(struct netstack *ns)
{
    struct ns_tcb *t = tcb_alloc(ns);
    if (!t)
        return -EMFILE;
    t->user = true;
    return t->sd;
}

int ns_tcp_bind(struct netstack *ns, int sd, const struct ns_sockaddr *local)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (!local || t->bound || t->state != NS_TCP_CLOSED)
        return -EINVAL;
    if (local->addr != 0 && local->addr != ns->ip)
        return -EADDRNOTAVAIL;
    if (local->port == 0) {
        int rc = bind_ephemeral(ns, t);
        if (rc == 0)
            t->local.addr = local->addr;
        return rc;
    }
    if (bind_conflict(ns, t, local->addr, local->port))
        return -EADDRINUSE;
    t->local = *local;
    t->bound = true;
    return 0;
}

int ns_tcp_listen(struct netstack *ns, int sd, int backlog)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (backlog < 1)
        backlog = 1;
    if (backlog > NS_TCP_MAX_BACKLOG)
        backlog = NS_TCP_MAX_BACKLOG;
    if (t->state == NS_TCP_LISTEN) {
        t->backlog = (uint32_t)backlog;
        return 0;
    }
    if (t->state != NS_TCP_CLOSED || t->connected_once || t->fatal)
        return -EINVAL;
    if (!t->bound) {
        int rc = bind_ephemeral(ns, t);
        if (rc < 0)
            return rc;
    } else if (tcp_find_listener(ns, t->local.port)) {
        return -EADDRINUSE;      /* SO_REUSEADDR never allows two listeners on one port */
    }
    t->backlog = (uint32_t)backlog;
    t->state = NS_TCP_LISTEN;
    t->lnext = tcp_of(ns)->listeners;
    tcp_of(ns)->listeners = t;
    return 0;
}

int ns_tcp_accept(struct netstack *ns, int sd, struct ns_sockaddr *peer)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (t->state != NS_TCP_LISTEN)
        return -EINVAL;
    struct ns_tcb *c = t->acc_head;
    if (!c)
        return -EAGAIN;
    t->acc_head = c->acc_next;
    if (!t->acc_head)
        t->acc_tail = NULL;
    t->acc_count--;
    c->acc_next = NULL;
    c->parent = NULL;
    c->user = true;
    if (peer)
        *peer = c->remote;
    if (t->acc_head)
        tcp_mark(ns, t);
    /* Whatever arrived before accept is news for the new socket. */
    c->ev_dirty = false;
    tcp_mark(ns, c);
    return c->sd;
}

int ns_tcp_connect(struct netstack *ns, int sd, const struct ns_sockaddr *remote)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    switch (t->state) {
    case NS_TCP_CLOSED:
        break;
    case NS_TCP_SYN_SENT:
    case NS_TCP_SYN_RECEIVED:
        return -EALREADY;
    case NS_TCP_LISTEN:
        return -EINVAL;
    default:
        return -EISCONN;
    }
    if (t->connected_once || t->fatal)
        return -EISCONN;         /* one connection per socket, as on Linux after it ended */
    if (!remote || remote->port == 0 || remote->addr == 0)
        return -EINVAL;
    if (ns_ipv4_is_loopback(remote->addr))
        return -ENETUNREACH;     /* 127/8 is the kernel's; ours is reached by our own address */
    if (ns_ip_is_bcast(ns, remote->addr) || ns_ipv4_is_mcast(remote->addr) || ns_ipv4_is_reserved(remote->addr))
        return -ENETUNREACH;
    if (!ns_ip_on_link(ns, remote->addr) && !ns->gateway)
        return -ENETUNREACH;
    if (!t->bound) {
        int rc = bind_ephemeral(ns, t);
        if (rc < 0)
            return rc;
    }
    if (tcp_lookup(ns, remote->addr, remote->port, t->local.port))
        return -EADDRNOTAVAIL;
    t->local.addr = ns->ip;
    t->remote = *remote;
    tcp_init_conn(ns, t);
    tcp_hash_insert(ns, t);
    t->state = NS_TCP_SYN_SENT;
    ns->st.tcp_active_opens++;
    t->rtt_timing = true;        /* the SYN's round trip is the first sample (Karn on retries) */
    t->rtt_seq = t->iss + 1;
    t->rtt_start = ns->now;
    t->rtx_stamp = ns->now;
    tcp_send_syn(ns, t);
    tcp_arm_rtx(ns, t);
    return -EINPROGRESS;
}

static int take_error(struct ns_tcb *t)
{
    int e = t->so_error;
    t->so_error = 0;
    if (e && e == t->fatal)
        t->err_reported = true;
    return -e;
}

static bool sbuf_reserve(struct ns_tcb *t)
{
    if (t->sbuf)
        return true;
    uint32_t cap = 4096;
    while (cap < t->sndbuf)
        cap <<= 1;
    t->sbuf = malloc(cap);
    if (!t->sbuf)
        return false;
    t->sbuf_cap = cap;
    t->sbuf_head = 0;
    return true;
}

int ns_tcp_send(struct netstack *ns, int sd, const void *data, size_t len)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (t->so_error)
        return take_error(t);
    switch (t->state) {
    case NS_TCP_ESTABLISHED:
    case NS_TCP_CLOSE_WAIT:
        break;
    case NS_TCP_SYN_SENT:
    case NS_TCP_SYN_RECEIVED:
        return -EAGAIN;
    case NS_TCP_CLOSED:
        return t->connected_once || t->fatal ? -EPIPE : -ENOTCONN;
    case NS_TCP_LISTEN:
        return -ENOTCONN;
    default:
        return -EPIPE;
    }
    if (t->wr_shut)
        return -EPIPE;
    if (len && !data)
        return -EINVAL;
    if (len == 0)
        return 0;
    if (!sbuf_reserve(t))
        return -ENOMEM;
    uint32_t room = t->sndbuf > t->sbuf_len ? t->sndbuf - t->sbuf_len : 0;
    if (room > t->sbuf_cap - t->sbuf_len)
        room = t->sbuf_cap - t->sbuf_len;
    if (room == 0)
        return -EAGAIN;
    uint32_t n = len < room ? (uint32_t)len : room;
    uint32_t tail = (t->sbuf_head + t->sbuf_len) & (t->sbuf_cap - 1);
    uint32_t first = u32min(n, t->sbuf_cap - tail);
    memcpy(t->sbuf + tail, data, first);
    if (n > first)
        memcpy(t->sbuf, (const uint8_t *)data + first, n - first);
    t->sbuf_len += n;
    tcp_output(ns, t);
    return (int)n;
}

/* Tell the peer about a window that grew enough since we last advertised it
 * (receiver-side SWS avoidance, RFC 9293 3.8.6.2.2). */
static void maybe_window_update(struct netstack *ns, struct ns_tcb *t)
{
    if (t->state != NS_TCP_ESTABLISHED && t->state != NS_TCP_FIN_WAIT_1 && t->state != NS_TCP_FIN_WAIT_2)
        return;
    uint32_t adv = t->rcv_adv - t->rcv_nxt;
    uint32_t now = tcp_rcv_window(t);
    if (now > adv && (now - adv >= 2 * t->rcv_mss || now - adv >= t->rcvbuf / 2))
        tcp_send_ack(ns, t);
}

static int recv_check(struct ns_tcb *t)
{
    if (t->rxq_head)
        return 1;
    if (t->so_error)
        return take_error(t);
    if (t->fin_rcvd || t->rd_shut || t->err_reported || (t->state == NS_TCP_CLOSED && t->connected_once))
        return 0;
    if (t->state == NS_TCP_CLOSED || t->state == NS_TCP_LISTEN)
        return -ENOTCONN;
    return -EAGAIN;
}

int ns_tcp_recv_buf(struct netstack *ns, int sd, struct nsbuf **out)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (!out)
        return -EINVAL;
    *out = NULL;
    int rc = recv_check(t);
    if (rc <= 0)
        return rc;
    struct nsbuf *b = t->rxq_head;
    t->rxq_head = b->next;
    if (!t->rxq_head)
        t->rxq_tail = NULL;
    b->next = NULL;
    t->rxq_bytes -= b->len;
    t->rxq_nbufs--;
    *out = b;
    maybe_window_update(ns, t);
    return (int)b->len;
}

int ns_tcp_recv(struct netstack *ns, int sd, void *buf, size_t len)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (len && !buf)
        return -EINVAL;
    int rc = recv_check(t);
    if (rc <= 0 || len == 0)
        return rc < 0 ? rc : 0;
    size_t done = 0;
    while (done < len && t->rxq_head) {
        struct nsbuf *b = t->rxq_head;
        uint32_t n = (uint32_t)(len - done < b->len ? len - done : b->len);
        memcpy((uint8_t *)buf + done, b->data, n);
        done += n;
        b->data += n;
        b->len -= n;
        t->rxq_bytes -= n;
        if (b->len == 0) {
            t->rxq_head = b->next;
            if (!t->rxq_head)
                t->rxq_tail = NULL;
            b->next = NULL;
            t->rxq_nbufs--;
            ns_buf_put(ns, b);
        }
    }
    maybe_window_update(ns, t);
    return (int)done;
}

/* Queue our FIN after the data: the state moves now, the FIN leaves when the data has. */
static void queue_fin(struct netstack *ns, struct ns_tcb *t)
{
    if (t->wr_shut)
        return;
    t->wr_shut = true;
    /* In SYN_RECEIVED the FIN waits for the handshake (tcp_input moves to FIN_WAIT_1). */
    if (t->state == NS_TCP_ESTABLISHED)
        tcp_set_state(ns, t, NS_TCP_FIN_WAIT_1);
    else if (t->state == NS_TCP_CLOSE_WAIT)
        tcp_set_state(ns, t, NS_TCP_LAST_ACK);
    tcp_output(ns, t);
}

int ns_tcp_shutdown(struct netstack *ns, int sd, int how)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (how < 0 || how > 2)
        return -EINVAL;
    if (t->state == NS_TCP_CLOSED || t->state == NS_TCP_LISTEN || t->state == NS_TCP_SYN_SENT)
        return -ENOTCONN;
    if (how != 1) {
        t->rd_shut = true;
        tcp_mark(ns, t);
    }
    if (how != 0) {
        queue_fin(ns, t);
        tcp_mark(ns, t);
    }
    return 0;
}

static void abort_conn(struct netstack *ns, struct ns_tcb *t)
{
    if (t->state != NS_TCP_CLOSED && t->state != NS_TCP_LISTEN && t->state != NS_TCP_SYN_SENT &&
        t->state != NS_TCP_TIME_WAIT)
        tcp_send_rst(ns, t);
}

int ns_tcp_close(struct netstack *ns, int sd)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    t->user = false;
    ev_unlist(ns, t);
    switch (t->state) {
    case NS_TCP_LISTEN: {
        struct ns_tcp *tcp = tcp_of(ns);
        for (int i = 0; i < NS_TCP_MAX_SOCKETS; i++) {
            struct ns_tcb *c = &tcp->tcb[i];
            if (c->used && c->parent == t) {
                abort_conn(ns, c);
                c->parent = NULL;
                tcb_free(ns, c);
            }
        }
        tcb_free(ns, t);
        return 0;
    }
    case NS_TCP_CLOSED:
    case NS_TCP_SYN_SENT:
        tcb_free(ns, t);
        return 0;
    case NS_TCP_TIME_WAIT:
        rxq_purge(ns, t);
        return 0;
    default:
        break;
    }
    /* RFC 9293 3.10.4 / RFC 2525 2.17: closing with unread data, or with
     * SO_LINGER {1, 0}, aborts the connection with a reset. */
    if (t->rxq_head || t->linger0) {
        abort_conn(ns, t);
        ns->st.tcp_aborts_on_close++;
        rxq_purge(ns, t);
        tcp_close_conn(ns, t, 0);
        return 0;
    }
    rxq_purge(ns, t);
    t->rd_shut = true;
    queue_fin(ns, t);
    if (t->state == NS_TCP_FIN_WAIT_2)
        tcp_arm_keepalive(ns, t);   /* the orphan's FIN_WAIT_2 timeout */
    return 0;
}

int ns_tcp_setsockopt(struct netstack *ns, int sd, enum ns_sockopt opt, int val)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    switch (opt) {
    case NS_SO_REUSEADDR:
        t->reuseaddr = val != 0;
        return 0;
    case NS_SO_KEEPALIVE:
        t->keepalive = val != 0;
        tcp_arm_keepalive(ns, t);
        return 0;
    case NS_SO_RCVBUF:
    case NS_SO_SNDBUF: {
        if (val < 0)
            return -EINVAL;
        uint32_t v = (uint32_t)val;
        v = v < NS_TCP_BUF_MIN ? NS_TCP_BUF_MIN : v > NS_TCP_BUF_MAX ? NS_TCP_BUF_MAX : v;
        if (opt == NS_SO_RCVBUF) {
            t->rcvbuf = v;
            return 0;
        }
        if (t->sbuf && v > t->sbuf_cap) {
            /* Grow the ring (rare): copy the queued bytes into a larger one. */
            uint32_t cap = t->sbuf_cap;
            while (cap < v)
                cap <<= 1;
            uint8_t *nb = malloc(cap);
            if (!nb)
                return -ENOMEM;
            for (uint32_t i = 0; i < t->sbuf_len; i++)
                nb[i] = t->sbuf[(t->sbuf_head + i) & (t->sbuf_cap - 1)];
            free(t->sbuf);
            t->sbuf = nb;
            t->sbuf_cap = cap;
            t->sbuf_head = 0;
        }
        t->sndbuf = v;
        return 0;
    }
    case NS_SO_LINGER0:
        t->linger0 = val != 0;
        return 0;
    case NS_SO_ERROR:
        return -ENOPROTOOPT;
    case NS_TCP_NODELAY:
        t->nodelay = val != 0;
        if (t->nodelay)
            tcp_output(ns, t);
        return 0;
    case NS_TCP_MAXSEG:
        if (val < (int)NS_TCP_MIN_MSS || val > 65495)
            return -EINVAL;
        t->mss_clamp = (uint32_t)val;
        return 0;
    case NS_TCP_KEEPIDLE:
    case NS_TCP_KEEPINTVL:
        if (val < 1 || val > 32767)
            return -EINVAL;
        if (opt == NS_TCP_KEEPIDLE)
            t->keepidle_s = (uint32_t)val;
        else
            t->keepintvl_s = (uint32_t)val;
        tcp_arm_keepalive(ns, t);
        return 0;
    case NS_TCP_KEEPCNT:
        if (val < 1 || val > 127)
            return -EINVAL;
        t->keepcnt = (uint32_t)val;
        return 0;
    case NS_TCP_CONGESTION:
        if (val != NS_CC_NEWRENO && val != NS_CC_CUBIC)
            return -EINVAL;
        t->cc_algo = (enum ns_cc_algo)val;
        if (t->cc.algo != t->cc_algo && t->state != NS_TCP_CLOSED && t->state != NS_TCP_LISTEN) {
            uint32_t cwnd = t->cc.cwnd, ssthresh = t->cc.ssthresh;
            ns_cc_init(&t->cc, t->cc_algo, t->snd_mss, ns->now);
            t->cc.cwnd = cwnd;
            t->cc.ssthresh = ssthresh;
        }
        return 0;
    case NS_TCP_USER_TIMEOUT:
        if (val < 0)
            return -EINVAL;
        t->user_timeout_ms = (uint32_t)val;
        return 0;
    }
    return -ENOPROTOOPT;
}

int ns_tcp_getsockopt(struct netstack *ns, int sd, enum ns_sockopt opt, int *val)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (!val)
        return -EINVAL;
    switch (opt) {
    case NS_SO_REUSEADDR: *val = t->reuseaddr; return 0;
    case NS_SO_KEEPALIVE: *val = t->keepalive; return 0;
    case NS_SO_RCVBUF: *val = (int)t->rcvbuf; return 0;
    case NS_SO_SNDBUF: *val = (int)t->sndbuf; return 0;
    case NS_SO_LINGER0: *val = t->linger0; return 0;
    case NS_SO_ERROR:
        *val = -take_error(t);
        return 0;
    case NS_TCP_NODELAY: *val = t->nodelay; return 0;
    case NS_TCP_MAXSEG:
        *val = (int)(t->state == NS_TCP_CLOSED || t->state == NS_TCP_LISTEN
                         ? (t->mss_clamp ? t->mss_clamp : NS_TCP_DEFAULT_MSS)
                         : t->snd_mss);
        return 0;
    case NS_TCP_KEEPIDLE: *val = (int)t->keepidle_s; return 0;
    case NS_TCP_KEEPINTVL: *val = (int)t->keepintvl_s; return 0;
    case NS_TCP_KEEPCNT: *val = (int)t->keepcnt; return 0;
    case NS_TCP_CONGESTION: *val = t->cc_algo; return 0;
    case NS_TCP_USER_TIMEOUT: *val = (int)t->user_timeout_ms; return 0;
    }
    return -ENOPROTOOPT;
}

int ns_tcp_getsockname(struct netstack *ns, int sd, struct ns_sockaddr *local)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (!local)
        return -EINVAL;
    *local = t->local;
    return 0;
}

int ns_tcp_getpeername(struct netstack *ns, int sd, struct ns_sockaddr *remote)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (!remote)
        return -EINVAL;
    if (t->state == NS_TCP_CLOSED || t->state == NS_TCP_LISTEN || t->state == NS_TCP_SYN_SENT)
        return -ENOTCONN;
    *remote = t->remote;
    return 0;
}

int ns_tcp_events(struct netstack *ns, int sd)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    return (int)events_of(t);
}

int ns_tcp_info(struct netstack *ns, int sd, struct ns_tcp_info *o)
{
    struct ns_tcb *t = sock_get(ns, sd);
    if (!t)
        return -EBADF;
    if (!o)
        return -EINVAL;
    memset(o, 0, sizeof(*o));
    o->state = (enum ns_tcp_state)t->state;
    o->snd_mss = t->snd_mss;
    o->rcv_mss = t->rcv_mss;
    o->snd_wscale = t->ws_ok ? t->snd_wscale : 0xff;
    o->rcv_wscale = t->ws_ok ? t->rcv_wscale : 0xff;
    o->ts_ok = t->ts_ok;
    o->sack_ok = t->sack_ok;
    o->cc = t->cc_algo;
    o->cwnd = t->cc.cwnd;
    o->ssthresh = t->cc.ssthresh;
    o->srtt_us = t->srtt_us;
    o->rttvar_us = t->rttvar_us;
    o->rto_ms = t->rto_ms;
    o->snd_wnd = t->snd_wnd;
    o->rcv_wnd = t->rcv_adv - t->rcv_nxt;
    o->unacked = t->snd_max - t->snd_una;
    o->sndq = t->sbuf_len;
    o->rcvq = t->rxq_bytes;
    o->retransmits = t->n_retransmits;
    o->rto_events = t->n_rto;
    o->fast_retransmits = t->n_fast_rtx;
    return 0;
}
