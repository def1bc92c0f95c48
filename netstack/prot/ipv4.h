/*
 * IPv4 header wire format (RFC 791) and address classes; parsed by ipv4.c on
 * input (eth -> ipv4 -> icmp/udp/tcp) and written on output (l4 -> ipv4 -> arp).
 */
#ifndef NS_PROT_IPV4_H
#define NS_PROT_IPV4_H

#include <stdbool.h>
#include <stdint.h>

#include "byteorder.h"
#include "cksum.h"

#define NS_IPV4_HLEN 20          /* without options */
#define NS_IPV4_MAX_HLEN 60
#define NS_IPV4_MIN_MTU 68       /* RFC 791: every host must accept 68-byte datagrams unfragmented */
#define NS_IPV4_DF 0x4000        /* in host order of frag_off */
#define NS_IPV4_MF 0x2000
#define NS_IPV4_OFFMASK 0x1fff
#define NS_IPPROTO_ICMP 1
#define NS_IPPROTO_TCP 6
#define NS_IPPROTO_UDP 17

struct ns_ipv4_hdr {
    uint8_t ver_ihl;             /* version (4) << 4 | header length in 32-bit words */
    uint8_t tos;
    be16_t total_len;
    be16_t id;
    be16_t frag_off;             /* flags (DF, MF) | fragment offset in 8-byte units */
    uint8_t ttl;
    uint8_t proto;
    be16_t cksum;
    be32_t src;
    be32_t dst;
} __attribute__((packed));
NS_STATIC_ASSERT(sizeof(struct ns_ipv4_hdr) == NS_IPV4_HLEN, "ipv4 header");

static inline unsigned ns_ipv4_version(const struct ns_ipv4_hdr *h) { return h->ver_ihl >> 4; }
static inline unsigned ns_ipv4_hlen(const struct ns_ipv4_hdr *h) { return (h->ver_ihl & 0xfu) * 4u; }

/* Header checksum to store (cksum field zero) or to verify (0 means good). */
static inline be16_t ns_ipv4_cksum(const void *hdr, unsigned hlen)
{
    return ns_cksum_finish(ns_cksum_add(0, hdr, hlen));
}

#define NS_IPV4_ANY ((be32_t)0)
#define NS_IPV4_BCAST ((be32_t)0xffffffffu)
static inline bool ns_ipv4_is_mcast(be32_t a) { return (ns_ntoh32(a) >> 28) == 0xe; }
/* Class E (240/4) is reserved; as a source it is as bogus as multicast. */
static inline bool ns_ipv4_is_reserved(be32_t a) { return (ns_ntoh32(a) >> 28) == 0xf; }
static inline bool ns_ipv4_is_loopback(be32_t a) { return (ns_ntoh32(a) >> 24) == 127; }

#endif /* NS_PROT_IPV4_H */
