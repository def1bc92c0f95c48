/*
 * Ethernet II wire format; read by ether.c on input (netdev rx -> eth -> arp/ip)
 * and written on output (ip/arp -> eth -> netdev tx).
 */
#ifndef NS_PROT_ETHER_H
#define NS_PROT_ETHER_H

#include <stdbool.h>
#include <stdint.h>

#include "byteorder.h"

#define NS_ETH_ALEN 6
#define NS_ETH_HLEN 14
#define NS_ETH_MIN_FRAME 60    /* without FCS; shorter frames are padded by the sender */
#define NS_ETH_TYPE_IPV4 0x0800
#define NS_ETH_TYPE_ARP 0x0806
#define NS_ETH_TYPE_VLAN 0x8100
#define NS_ETH_TYPE_IPV6 0x86dd

struct ns_eth_hdr {
    uint8_t dst[NS_ETH_ALEN];
    uint8_t src[NS_ETH_ALEN];
    be16_t type;
} __attribute__((packed));
NS_STATIC_ASSERT(sizeof(struct ns_eth_hdr) == NS_ETH_HLEN, "ethernet header");

static inline bool ns_eth_is_mcast(const uint8_t *mac) { return (mac[0] & 1) != 0; }
static inline bool ns_eth_is_bcast(const uint8_t *mac)
{
    return (mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5]) == 0xff;
}
static inline bool ns_eth_is_zero(const uint8_t *mac)
{
    return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0;
}

#endif /* NS_PROT_ETHER_H */
