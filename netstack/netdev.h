/*
 * The device interface netstack is driven through: a LibOS (catpowder,
 * catnip) or a test's fake link fills one struct netdev; ns_poll calls
 * rx_burst, the output path calls tx_burst, buffers come from buf_alloc.
 */
#ifndef NS_NETDEV_H
#define NS_NETDEV_H

#include <stdint.h>

#include "nsbuf.h"
#include "prot/ether.h"

struct netdev;

/* Offloads a device may declare in netdev.offloads. */
#define NETDEV_OFFLOAD_RX_IPV4_CKSUM 0x01u  /* sets NSBUF_RX_IP_CKSUM_* on received buffers */
#define NETDEV_OFFLOAD_RX_L4_CKSUM 0x02u    /* sets NSBUF_RX_L4_CKSUM_* on received buffers */

struct netdev_ops {
    /* Up to n received frames into bufs (ownership passes to the caller);
     * returns how many. Never blocks. */
    uint16_t (*rx_burst)(struct netdev *dev, struct nsbuf **bufs, uint16_t n);
    /* Queue up to n frames; returns how many were taken (the device owns those
     * and drops their reference when sent). The caller keeps the rest. */
    uint16_t (*tx_burst)(struct netdev *dev, struct nsbuf **bufs, uint16_t n);
    /* A fresh buffer (refcnt 1, len 0, headroom reserved), NULL if none. */
    struct nsbuf *(*buf_alloc)(struct netdev *dev);
    /* Give back a buffer whose last reference was dropped. */
    void (*buf_free)(struct netdev *dev, struct nsbuf *b);
};

struct netdev {
    const struct netdev_ops *ops;
    uint8_t mac[NS_ETH_ALEN];
    uint32_t mtu;                /* largest IP datagram the link carries (Ethernet: 1500) */
    uint32_t offloads;           /* NETDEV_OFFLOAD_* */
    void *priv;                  /* the device's own state */
};

#endif /* NS_NETDEV_H */
