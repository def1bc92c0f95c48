/*
 * UDP header wire format (RFC 768); parsed by udp.c on input (ipv4 -> udp ->
 * socket queue) and written on output (ns_udp_sendto -> udp -> ipv4).
 */
#ifndef NS_PROT_UDP_H
#define NS_PROT_UDP_H

#include <stdint.h>

#include "byteorder.h"

#define NS_UDP_HLEN 8
#define NS_UDP_MAX_PAYLOAD 65507 /* 65535 - 20 (IPv4) - 8 (UDP) */

struct ns_udp_hdr {
    be16_t sport;
    be16_t dport;
    be16_t len;                  /* header + payload */
    be16_t cksum;                /* 0: none sent (RFC 768); a computed 0 is sent as 0xffff */
} __attribute__((packed));
NS_STATIC_ASSERT(sizeof(struct ns_udp_hdr) == NS_UDP_HLEN, "udp header");

#endif /* NS_PROT_UDP_H */
