/*
 * The netstack API a LibOS uses: create a stack over a struct netdev, drive it
 * with ns_poll(now), open UDP sockets, ping, read counters. Call chain:
 * LibOS ops (catpowder/catnip) -> ns_* here -> protocol files -> netdev.
 * Functions return >= 0 or -errno and never touch errno. Single-threaded:
 * one stack belongs to one thread.
 */
#ifndef NS_NETSTACK_H
#define NS_NETSTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netdev.h"
#include "nsbuf.h"
#include "prot/byteorder.h"

struct netstack;

/* An IPv4 endpoint, both fields in wire order as in struct sockaddr_in. */
struct ns_sockaddr {
    be32_t addr;
    be16_t port;
};

enum ns_cc_algo { NS_CC_NEWRENO = 0, NS_CC_CUBIC = 1 };

struct ns_arp_static {
    be32_t ip;
    uint8_t mac[NS_ETH_ALEN];
};

/* Run-time configuration; the LibOS fills it from core_config. Addresses in wire order. */
struct ns_config {
    be32_t ipv4;                 /* required */
    be32_t netmask;              /* required, contiguous */
    be32_t gateway;              /* 0: none, off-link destinations fail with ENETUNREACH */
    bool has_mac;                /* false: the device's MAC */
    uint8_t mac[NS_ETH_ALEN];
    uint32_t mtu;                /* 0: the device's; never above it */
    const struct ns_arp_static *arp_static; /* copied at ns_create; never overridden by the network */
    unsigned n_arp_static;
    uint32_t arp_ttl_ms;
    uint32_t arp_request_timeout_ms;
    uint32_t arp_request_retries;
    uint8_t isn_secret[16];      /* RFC 6528 key for initial sequence numbers; the caller fills it
                                  * from a random source (netstack makes no system calls) */
    enum ns_cc_algo tcp_cc;      /* congestion control of new sockets (default NS_CC_CUBIC) */
};

/* Defaults from defaults.h, no addresses. */
void ns_config_defaults(struct ns_config *cfg);

/* -EINVAL for a bad config (no address, non-contiguous mask, off-link gateway,
 * MTU out of 68..device MTU, too many static ARP entries), -ENOMEM. */
int ns_create(const struct ns_config *cfg, struct netdev *dev, uint64_t now_ns, struct netstack **out);
/* Frees every buffer the stack still holds (queues, pending ARP, socket queues). */
void ns_destroy(struct netstack *ns);

/* Receive and process up to NS_RX_BUDGET frames, run due timers, transmit
 * what is queued. `now_ns` is the caller's monotonic clock; it must not go
 * back. Returns the number of frames received. */
int ns_poll(struct netstack *ns, uint64_t now_ns);
/* Process one received frame (takes ownership); for devices that push and for fuzzing. */
void ns_input(struct netstack *ns, struct nsbuf *frame);
/* Hand every queued frame to tx_burst now. */
void ns_flush(struct netstack *ns);
/* Drop one reference to a buffer the stack handed out (ns_udp_recv_buf). */
void ns_buf_free(struct netstack *ns, struct nsbuf *b);

/* ---- counters. X(name, what) for each; names are stable for tools. */
#define NS_STATS_LIST(X)                                                                            \
    X(eth_rx, "frames received")                                                                    \
    X(eth_tx, "frames handed to the device")                                                        \
    X(eth_rx_truncated, "dropped: shorter than an Ethernet header")                                 \
    X(eth_rx_not_for_us, "dropped: destination MAC neither ours nor broadcast")                    \
    X(eth_rx_bad_src, "dropped: source MAC multicast/broadcast or ours")                            \
    X(eth_rx_unknown_type, "dropped: ethertype not IPv4/ARP (VLAN, IPv6 ...)")                      \
    X(tx_dev_full, "dropped: device refused the frame")                                             \
    X(tx_nobuf, "dropped or refused: buffer pool empty")                                            \
    X(arp_rx, "ARP packets received")                                                               \
    X(arp_rx_bad, "dropped: malformed ARP (length, hardware/protocol type, sizes, opcode)")         \
    X(arp_rx_bad_sender, "dropped: sender MAC or IP bogus (broadcast, multicast, ours)")            \
    X(arp_rx_not_for_us, "ARP for another target: only merged into existing entries")              \
    X(arp_static_conflict, "ARP that contradicted a static entry: ignored")                        \
    X(arp_requests_tx, "ARP requests sent")                                                         \
    X(arp_replies_tx, "ARP replies sent")                                                           \
    X(arp_cache_full, "dropped: no ARP entry could be allocated")                                  \
    X(arp_pending_overflow, "dropped: pending queue full while resolving")                          \
    X(arp_resolve_timeout, "dropped: pending when resolution gave up after the retries")           \
    X(arp_expired, "learned ARP entries expired")                                                   \
    X(ip_rx, "IPv4 datagrams received")                                                             \
    X(ip_tx, "IPv4 datagrams sent")                                                                 \
    X(ip_rx_truncated, "dropped: shorter than the IPv4 header")                                     \
    X(ip_rx_bad_version, "dropped: version not 4")                                                  \
    X(ip_rx_bad_ihl, "dropped: IHL < 5 or beyond the frame")                                        \
    X(ip_rx_bad_len, "dropped: total length < IHL or beyond the frame")                             \
    X(ip_rx_bad_cksum, "dropped: header checksum")                                                  \
    X(ip_rx_ttl_zero, "dropped: TTL 0")                                                             \
    X(ip_rx_bad_src, "dropped: source multicast, broadcast, class E, loopback or ours")            \
    X(ip_rx_not_for_us, "dropped: destination not ours (we do not forward)")                        \
    X(ip_rx_frag_dropped, "fragments not kept for reassembly (any reason; see ip_reasm_*)")         \
    X(ip_reasm_frags, "fragments received")                                                         \
    X(ip_reasm_ok, "datagrams reassembled and delivered")                                           \
    X(ip_reasm_bad_len, "dropped: fragment empty or (not last) not a multiple of 8 bytes")          \
    X(ip_reasm_inconsistent, "dropped datagram: fragments disagree on where the datagram ends")     \
    X(ip_reasm_too_big, "dropped datagram: would exceed 65535 bytes (NS_IP_REASM_MAX_SIZE)")       \
    X(ip_reasm_dup, "dropped: duplicate fragment (all its bytes already received)")                 \
    X(ip_reasm_overlap, "dropped datagram: fragments partly overlap (whole datagram discarded)")     \
    X(ip_reasm_too_fragmented, "dropped datagram: more disjoint pieces than NS_IP_REASM_MAX_RANGES") \
    X(ip_reasm_timeout, "dropped datagram: incomplete after NS_IP_REASM_TIMEOUT_MS")                \
    X(ip_reasm_evicted, "dropped datagram: oldest incomplete one evicted for a new one (limits)")   \
    X(ip_reasm_nomem, "dropped: no reassembly buffer (all held by unread datagrams, or no memory)") \
    X(ip_rx_unknown_proto, "dropped: protocol not handled (protocol unreachable sent)")             \
    X(ip_tx_no_route, "dropped: no route (off-link and no gateway)")                                \
    X(ip_loopback, "IPv4 datagrams sent to our own address and looped back")                       \
    X(ip_loopback_dropped, "dropped: loopback queue full")                                          \
    X(icmp_rx, "ICMP messages received")                                                            \
    X(icmp_tx, "ICMP messages sent")                                                                \
    X(icmp_rx_truncated, "dropped: shorter than an ICMP header")                                    \
    X(icmp_rx_bad_cksum, "dropped: ICMP checksum")                                                  \
    X(icmp_rx_echo_bcast, "dropped: echo request to a broadcast address")                           \
    X(icmp_rx_unreach, "destination unreachable received")                                          \
    X(icmp_rx_err_bad, "dropped: error message quoting a malformed datagram")                       \
    X(icmp_rx_err_unmatched, "error messages matching no connected socket")                         \
    X(icmp_rx_other, "ignored: other ICMP types")                                                   \
    X(icmp_tx_ratelimited, "ICMP errors not sent: rate limit")                                      \
    X(udp_rx, "UDP datagrams received")                                                             \
    X(udp_tx, "UDP datagrams sent")                                                                 \
    X(udp_rx_truncated, "dropped: shorter than a UDP header")                                       \
    X(udp_rx_bad_len, "dropped: UDP length < 8 or beyond the IP payload")                           \
    X(udp_rx_bad_cksum, "dropped: UDP checksum")                                                    \
    X(udp_rx_no_port, "dropped: no socket (port unreachable sent)")                                 \
    X(udp_rx_queue_full, "dropped: socket receive queue full")                                      \
    X(tcp_rx, "TCP segments received")                                                              \
    X(tcp_tx, "TCP segments sent")                                                                  \
    X(tcp_tx_too_big, "TCP segments not sent: larger than the MTU (a bug if ever non-zero)")         \
    X(tcp_tx_ip_error, "TCP segments the IP layer refused (no route, no buffer ...)")             \
    X(tcp_rx_bad_hlen, "dropped: shorter than a TCP header or data offset out of range")           \
    X(tcp_rx_bad_cksum, "dropped: TCP checksum")                                                    \
    X(tcp_rx_bad_port, "dropped: TCP port 0")                                                       \
    X(tcp_rx_bcast, "dropped: TCP to a broadcast/multicast address")                               \
    X(tcp_rx_no_socket, "segments for no connection or listener (reset sent unless RST)")          \
    X(tcp_rx_out_of_window, "dropped: sequence number not acceptable (ACK sent unless RST)")       \
    X(tcp_rx_paws, "dropped: PAWS, timestamp older than TS.Recent (RFC 7323)")                     \
    X(tcp_rx_ack_unsent, "dropped: ACK for data never sent (RFC 5961 5.2)")                        \
    X(tcp_rx_ooo, "segments queued out of order")                                                   \
    X(tcp_rx_ooo_dropped, "dropped: out-of-order queue full")                                      \
    X(tcp_rx_queue_full, "dropped: in-order receive queue holds too many buffers")                  \
    X(tcp_dupacks_rx, "duplicate ACKs received")                                                    \
    X(tcp_rst_rx, "resets accepted")                                                                \
    X(tcp_rst_tx, "resets sent")                                                                    \
    X(tcp_challenge_acks, "challenge ACKs sent (RFC 5961)")                                         \
    X(tcp_challenge_acks_limited, "challenge ACKs not sent: rate limit")                            \
    X(tcp_active_opens, "connect() calls that sent a SYN")                                          \
    X(tcp_passive_opens, "connections established from a listener")                                \
    X(tcp_syn_queue_overflow, "SYNs dropped: listener's half-open queue full")                      \
    X(tcp_accept_queue_overflow, "SYNs/ACKs dropped: listener's accept queue full")                \
    X(tcp_no_tcb, "SYNs dropped: no free control block")                                           \
    X(tcp_retransmits, "segments retransmitted (any cause)")                                        \
    X(tcp_rto_events, "retransmission timeouts")                                                    \
    X(tcp_fast_retransmits, "fast retransmits (loss recovery entered)")                             \
    X(tcp_timeouts, "connections ended with ETIMEDOUT")                                             \
    X(tcp_delayed_acks, "ACKs sent by the delayed-ACK timer")                                       \
    X(tcp_zero_window_probes, "zero-window probes sent")                                            \
    X(tcp_keepalive_probes, "keepalive probes sent")                                                \
    X(tcp_aborts_on_close, "connections reset by close (unread data or SO_LINGER 0)")              \
    X(tcp_aborts_on_data, "connections reset: data arrived after close")                          \
    X(tcp_icmp_errors, "ICMP unreachables applied to a connection (hard while connecting, else soft)") \
    X(tcp_icmp_out_of_window, "ICMP errors ignored: quoted sequence number not in flight (RFC 5927)")

struct ns_stats {
#define NS_STATS_FIELD(name, what) uint64_t name;
    NS_STATS_LIST(NS_STATS_FIELD)
#undef NS_STATS_FIELD
};
#define NS_STATS_COUNT (sizeof(struct ns_stats) / sizeof(uint64_t))

void ns_stats_get(const struct netstack *ns, struct ns_stats *out);
/* Name and description of counter i (< NS_STATS_COUNT), for tools; NULL past the end. */
const char *ns_stats_name(size_t i);
const char *ns_stats_help(size_t i);
uint64_t ns_stats_value(const struct ns_stats *s, size_t i);

/* ---- UDP at the stack level; sockets are small integers per stack. */
int ns_udp_socket(struct netstack *ns);
/* addr 0 or ours; port 0 picks an ephemeral port. -EADDRINUSE, -EADDRNOTAVAIL, -EINVAL if bound. */
int ns_udp_bind(struct netstack *ns, int sd, const struct ns_sockaddr *local);
/* Fix the peer: only its datagrams are received, and ICMP errors from it are
 * reported (ECONNREFUSED for port unreachable). Binds an ephemeral port if unbound. */
int ns_udp_connect(struct netstack *ns, int sd, const struct ns_sockaddr *remote);
/* Bytes sent (queued while ARP resolves counts as sent) or -errno: EMSGSIZE
 * (more than MTU - 28: we set DF and never fragment), EDESTADDRREQ (dst NULL,
 * not connected; a dst on a connected socket is allowed, as on Linux), EACCES
 * (broadcast: no SO_BROADCAST yet), ENETUNREACH, ENOBUFS, EINVAL (addr/port 0),
 * or a pending socket error. Our own address loops back inside the stack (input on the
 * next ns_poll); 127/8 is EINVAL. */
int ns_udp_sendto(struct netstack *ns, int sd, const void *data, size_t len, const struct ns_sockaddr *dst);
/* Copies one datagram (the rest of a longer one is lost, as recvfrom without
 * MSG_TRUNC) and returns the bytes copied; -EAGAIN when none; a pending error
 * (ECONNREFUSED ...) is returned once, before any queued datagram. */
int ns_udp_recvfrom(struct netstack *ns, int sd, void *buf, size_t len, struct ns_sockaddr *src);
/* Zero copy: the next datagram's buffer (data/len = payload); release with ns_buf_free. */
int ns_udp_recv_buf(struct netstack *ns, int sd, struct nsbuf **out, struct ns_sockaddr *src);
/* Datagrams queued, or -EBADF. */
int ns_udp_rx_pending(struct netstack *ns, int sd);
int ns_udp_getsockname(struct netstack *ns, int sd, struct ns_sockaddr *local);
int ns_udp_close(struct netstack *ns, int sd);

/* ---- ICMP echo (ping) */
struct ns_ping_reply {
    be32_t from;
    uint16_t id;
    uint16_t seq;
    uint32_t len;                /* payload bytes */
};
int ns_ping_send(struct netstack *ns, be32_t dst, uint16_t id, uint16_t seq, const void *data, size_t len);
/* 0 and the oldest unread echo reply, or -EAGAIN. */
int ns_ping_reply(struct netstack *ns, struct ns_ping_reply *out);

/* ---- TCP (RFC 9293). Sockets are small integers per stack, separate from UDP's.
 * Every call is non-blocking; the caller learns what changed from ns_events()
 * after ns_poll()/ns_input(), or asks ns_tcp_events() for one socket. */

enum ns_tcp_state {
    NS_TCP_CLOSED = 0, NS_TCP_LISTEN, NS_TCP_SYN_SENT, NS_TCP_SYN_RECEIVED, NS_TCP_ESTABLISHED,
    NS_TCP_FIN_WAIT_1, NS_TCP_FIN_WAIT_2, NS_TCP_CLOSE_WAIT, NS_TCP_CLOSING, NS_TCP_LAST_ACK,
    NS_TCP_TIME_WAIT,
};

/* Readiness bits (same meaning as poll(2)'s POLLIN/POLLOUT/POLLERR/POLLHUP/POLLRDHUP). */
#define NS_EV_IN 0x01u      /* data, EOF, an error, or (listener) a connection to accept */
#define NS_EV_OUT 0x04u     /* send space, or a connect finished (either way) */
#define NS_EV_ERR 0x08u     /* a pending error (read it with NS_SO_ERROR or from the next call) */
#define NS_EV_HUP 0x10u     /* both directions done (reset, or FIN received after our FIN) */
#define NS_EV_RDHUP 0x2000u /* peer sent FIN */

/* Socket options for ns_tcp_setsockopt/getsockopt (values are ints). */
enum ns_sockopt {
    NS_SO_REUSEADDR = 1,     /* bind over a TIME_WAIT/closed connection's port (Linux semantics) */
    NS_SO_KEEPALIVE,         /* RFC 1122 4.2.3.6 keepalive probes */
    NS_SO_RCVBUF,            /* receive buffer bytes (bounds the advertised window) */
    NS_SO_SNDBUF,            /* send buffer bytes */
    NS_SO_LINGER0,           /* 1: close() aborts with RST (SO_LINGER {1,0}) */
    NS_SO_ERROR,             /* get only: pending error (positive errno) and clear it */
    NS_TCP_NODELAY,          /* 1: no Nagle */
    NS_TCP_MAXSEG,           /* MSS clamp, set before connect/listen */
    NS_TCP_KEEPIDLE,         /* seconds */
    NS_TCP_KEEPINTVL,        /* seconds */
    NS_TCP_KEEPCNT,          /* probes */
    NS_TCP_CONGESTION,       /* NS_CC_NEWRENO or NS_CC_CUBIC */
    NS_TCP_USER_TIMEOUT,     /* ms unacknowledged data may wait before ETIMEDOUT (0: default) */
};

/* Snapshot for tests, tools and TCP_INFO-like reporting. */
struct ns_tcp_info {
    enum ns_tcp_state state;
    uint32_t snd_mss, rcv_mss;
    uint8_t snd_wscale, rcv_wscale;  /* 0xff: window scaling not in use */
    bool ts_ok, sack_ok;
    enum ns_cc_algo cc;
    uint32_t cwnd, ssthresh;         /* bytes */
    uint32_t srtt_us, rttvar_us, rto_ms;
    uint32_t snd_wnd, rcv_wnd;       /* bytes, unscaled */
    uint32_t unacked, sndq, rcvq;    /* bytes in flight, queued to send, readable */
    uint64_t retransmits, rto_events, fast_retransmits;
};

int ns_tcp_socket(struct netstack *ns);
/* addr 0 or ours; port 0 picks an ephemeral port. -EADDRINUSE (unless SO_REUSEADDR
 * and no listener / live connection has it, as Linux), -EADDRNOTAVAIL, -EINVAL if bound. */
int ns_tcp_bind(struct netstack *ns, int sd, const struct ns_sockaddr *local);
/* The accept queue holds backlog + 1 connections (as Linux); the SYN queue is bounded by NS_TCP_SYN_BACKLOG. */
int ns_tcp_listen(struct netstack *ns, int sd, int backlog);
/* A new socket for the oldest established connection (its peer in *peer), or -EAGAIN. */
int ns_tcp_accept(struct netstack *ns, int sd, struct ns_sockaddr *peer);
/* Sends the SYN and returns -EINPROGRESS; completion shows as NS_EV_OUT, then
 * SO_ERROR tells 0 / ECONNREFUSED / ETIMEDOUT / EHOSTUNREACH. -EISCONN, -EALREADY. */
int ns_tcp_connect(struct netstack *ns, int sd, const struct ns_sockaddr *remote);
/* Copies up to len bytes into the send buffer; returns bytes taken, -EAGAIN when full,
 * -EPIPE after shutdown(WR)/close of the peer's read side, -ENOTCONN, or a pending error. */
int ns_tcp_send(struct netstack *ns, int sd, const void *data, size_t len);
/* Copies in-order bytes; 0 at EOF; -EAGAIN; -ECONNRESET/-ETIMEDOUT once, then 0. */
int ns_tcp_recv(struct netstack *ns, int sd, void *buf, size_t len);
/* Zero copy: the next in-order segment's buffer (data/len = payload bytes not yet
 * read); release with ns_buf_free. 0 and *out NULL at EOF; errors as ns_tcp_recv. */
int ns_tcp_recv_buf(struct netstack *ns, int sd, struct nsbuf **out);
/* how: 0 read, 1 write, 2 both (SHUT_RD/WR/RDWR). -ENOTCONN. */
int ns_tcp_shutdown(struct netstack *ns, int sd, int how);
/* Releases sd now; the connection finishes its close (FIN, TIME_WAIT) inside the
 * stack, or is reset when unread data remains or NS_SO_LINGER0 is set (RFC 9293 3.10.4, Linux). */
int ns_tcp_close(struct netstack *ns, int sd);
int ns_tcp_setsockopt(struct netstack *ns, int sd, enum ns_sockopt opt, int val);
int ns_tcp_getsockopt(struct netstack *ns, int sd, enum ns_sockopt opt, int *val);
int ns_tcp_getsockname(struct netstack *ns, int sd, struct ns_sockaddr *local);
int ns_tcp_getpeername(struct netstack *ns, int sd, struct ns_sockaddr *remote);
/* NS_EV_* bits now, or -EBADF. */
int ns_tcp_events(struct netstack *ns, int sd);
int ns_tcp_info(struct netstack *ns, int sd, struct ns_tcp_info *out);

/* ---- readiness changes, for a LibOS that completes operations */
enum ns_proto { NS_PROTO_UDP = 17, NS_PROTO_TCP = 6 };
struct ns_event {
    uint8_t proto;               /* enum ns_proto */
    int sd;
    uint32_t events;             /* NS_EV_* at the time of the call */
};
/* Sockets whose readiness may have changed since the last call (each listed
 * once), up to n; returns how many. Closed sockets are never listed. */
int ns_events(struct netstack *ns, struct ns_event *out, int n);
/* When ns_poll next has timer work to do (ns, the caller's clock), UINT64_MAX if none. */
uint64_t ns_next_timer(const struct netstack *ns);

#endif /* NS_NETSTACK_H */
