/*
 * ARP for IPv4 over Ethernet (RFC 826) wire format; parsed by arp.c on input
 * (eth -> arp) and built for requests/replies (arp -> eth -> netdev tx).
 */
#ifndef NS_PROT_ARP_H
#define NS_PROT_ARP_H

#include <stdint.h>

#include "byteorder.h"
#include "ether.h"

#define NS_ARP_HTYPE_ETHER 1
#define NS_ARP_OP_REQUEST 1
#define NS_ARP_OP_REPLY 2
#define NS_ARP_LEN 28

struct ns_arp_hdr {
    be16_t htype;                /* 1: Ethernet */
    be16_t ptype;                /* 0x0800: IPv4 */
    uint8_t hlen;                /* 6 */
    uint8_t plen;                /* 4 */
    be16_t op;
    uint8_t sha[NS_ETH_ALEN];
    be32_t spa;
    uint8_t tha[NS_ETH_ALEN];
    be32_t tpa;
} __attribute__((packed));
NS_STATIC_ASSERT(sizeof(struct ns_arp_hdr) == NS_ARP_LEN, "arp header");

#endif /* NS_PROT_ARP_H */
