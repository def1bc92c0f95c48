/*
 * TCP header and option wire format (RFC 9293, RFC 7323, RFC 2018); only the
 * format so far: no TCP code uses it yet (ipv4 input counts and drops TCP).
 */
#ifndef NS_PROT_TCP_H
#define NS_PROT_TCP_H

#include <stdint.h>

#include "byteorder.h"

#define NS_TCP_HLEN 20
#define NS_TCP_MAX_HLEN 60

#define NS_TCP_FIN 0x01
#define NS_TCP_SYN 0x02
#define NS_TCP_RST 0x04
#define NS_TCP_PSH 0x08
#define NS_TCP_ACK 0x10
#define NS_TCP_URG 0x20
#define NS_TCP_ECE 0x40
#define NS_TCP_CWR 0x80

/* Option kinds and their fixed lengths. */
#define NS_TCPOPT_EOL 0
#define NS_TCPOPT_NOP 1
#define NS_TCPOPT_MSS 2
#define NS_TCPOLEN_MSS 4
#define NS_TCPOPT_WSCALE 3
#define NS_TCPOLEN_WSCALE 3
#define NS_TCPOPT_SACK_PERM 4
#define NS_TCPOLEN_SACK_PERM 2
#define NS_TCPOPT_SACK 5         /* 2 + 8 * n blocks */
#define NS_TCPOPT_TIMESTAMP 8
#define NS_TCPOLEN_TIMESTAMP 10
#define NS_TCP_MAX_WSCALE 14     /* RFC 7323 2.3 */

struct ns_tcp_hdr {
    be16_t sport;
    be16_t dport;
    be32_t seq;
    be32_t ack;
    uint8_t data_off;            /* header length in 32-bit words << 4; low 4 bits reserved */
    uint8_t flags;
    be16_t window;
    be16_t cksum;                /* over pseudo-header + segment */
    be16_t urg;
} __attribute__((packed));
NS_STATIC_ASSERT(sizeof(struct ns_tcp_hdr) == NS_TCP_HLEN, "tcp header");

static inline unsigned ns_tcp_hlen(const struct ns_tcp_hdr *h) { return (h->data_off >> 4) * 4u; }

#endif /* NS_PROT_TCP_H */
