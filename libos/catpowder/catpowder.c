/*
 * catpowder: the LibOS that runs netstack over a Linux AF_PACKET socket bound
 * to one interface. Call chain: core -> nsglue ops -> netstack -> this file's
 * netdev: rx from a TPACKET_V2 mmap ring (no system call while polling), tx
 * with one sendmmsg per burst. The kernel must not own our IPv4 address on that
 * interface (doc/catpowder.md): it would answer ARP and reset our connections.
 */
#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "config.h"
#include "libos.h"
#include "log.h"
#include "nsglue.h"

#define CP_RING_BLOCK (1u << 16)  /* bytes per ring block (a multiple of the page size) */
#define CP_RING_BYTES (4u << 20)  /* rx ring size: 2048 frames of 2 KiB at MTU 1500 */
#define CP_POOL_BUFS 8192u        /* nsbufs for rx copies, tx frames and zero-copy loans */
#define CP_HEADROOM 128u          /* >= NS_HEADROOM_MIN, keeps payload after 14+20+60 aligned */
#define CP_TX_BATCH 64
#define CP_SNDBUF (4 << 20)

#define CP_STATS_LIST(X)                                                                             \
    X(dev_rx_frames, "frames taken from the packet ring")                                           \
    X(dev_tx_frames, "frames sent with sendmmsg")                                                   \
    X(dev_rx_truncated, "dropped: longer than a ring frame (a GSO/TSO frame from a local peer?)")   \
    X(dev_rx_vlan, "dropped: VLAN-tagged (the kernel stripped the tag)")                            \
    X(dev_rx_nobuf, "dropped: buffer pool empty on receive")                                       \
    X(dev_rx_ring_drops, "dropped by the kernel: packet ring full (PACKET_STATISTICS)")            \
    X(dev_tx_again, "sendmmsg said EAGAIN/ENOBUFS: frames left to the stack")                       \
    X(dev_tx_errors, "frames the kernel refused (dropped)")

struct cp_stats {
#define CP_FIELD(n, h) uint64_t n;
    CP_STATS_LIST(CP_FIELD)
#undef CP_FIELD
};

static struct {
    bool up;
    int fd;
    int ifindex;
    uint8_t *ring;
    size_t ring_bytes;
    uint32_t frame_size;
    uint32_t nframes;
    uint32_t head;
    struct nsbuf_pool pool;
    struct netdev dev;
    struct cp_stats st;
    struct nsglue_devstat devstats[sizeof(struct cp_stats) / sizeof(uint64_t)];
    struct mmsghdr msgs[CP_TX_BATCH];
    struct iovec iov[CP_TX_BATCH];
} cp = { .fd = -1 };

static const char *const cp_names[] = {
#define CP_NAME(n, h) #n,
    CP_STATS_LIST(CP_NAME)
#undef CP_NAME
};
static const char *const cp_helps[] = {
#define CP_HELP(n, h) h,
    CP_STATS_LIST(CP_HELP)
#undef CP_HELP
};

/* ---- netdev ------------------------------------------------------------------ */

/* The kernel flags a ring frame when it had to drop packets; its counters then tell how many. */
static void read_ring_drops(void)
{
    struct tpacket_stats s;
    socklen_t len = sizeof(s);
    if (getsockopt(cp.fd, SOL_PACKET, PACKET_STATISTICS, &s, &len) == 0)
        cp.st.dev_rx_ring_drops += s.tp_drops;
}

static uint16_t cp_rx_burst(struct netdev *dev, struct nsbuf **bufs, uint16_t n)
{
    (void)dev;
    uint16_t got = 0;
    while (got < n) {
        struct tpacket2_hdr *h = (struct tpacket2_hdr *)(cp.ring + (size_t)cp.head * cp.frame_size);
        uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER))
            break;
        if (status & TP_STATUS_LOSING)
            read_ring_drops();
        if (h->tp_snaplen < h->tp_len || h->tp_snaplen > cp.pool.bufsize - cp.pool.headroom) {
            cp.st.dev_rx_truncated++;
        } else if (status & TP_STATUS_VLAN_VALID) {
            cp.st.dev_rx_vlan++;
        } else {
            struct nsbuf *b = nsbuf_pool_get(&cp.pool);
            if (b == NULL) {
                cp.st.dev_rx_nobuf++;
            } else {
                memcpy(b->data, (uint8_t *)h + h->tp_mac, h->tp_snaplen);
                b->len = h->tp_snaplen;
                /*
                 * A frame from a local kernel (veth) may carry a partial checksum the NIC
                 * would have finished (CSUMNOTREADY); its bytes never crossed a wire, so
                 * the kernel vouches for them, as it does with CSUM_VALID.
                 */
                if (status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID))
                    b->flags |= NSBUF_RX_L4_CKSUM_GOOD;
                bufs[got++] = b;
                cp.st.dev_rx_frames++;
            }
        }
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        cp.head = cp.head + 1 == cp.nframes ? 0 : cp.head + 1;
    }
    return got;
}

static void cp_put(struct nsbuf *b)
{
    if (--b->refcnt == 0)
        nsbuf_pool_put(b);
}

static uint16_t cp_tx_burst(struct netdev *dev, struct nsbuf **bufs, uint16_t n)
{
    (void)dev;
    uint16_t done = 0;
    while (done < n) {
        unsigned k = n - done < CP_TX_BATCH ? n - done : CP_TX_BATCH;
        for (unsigned i = 0; i < k; i++) {
            cp.iov[i].iov_base = bufs[done + i]->data;
            cp.iov[i].iov_len = bufs[done + i]->len;
            memset(&cp.msgs[i], 0, sizeof(cp.msgs[i]));
            cp.msgs[i].msg_hdr.msg_iov = &cp.iov[i];
            cp.msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int sent = sendmmsg(cp.fd, cp.msgs, k, MSG_DONTWAIT);
        if (sent < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == ENOBUFS) {
                cp.st.dev_tx_again++;
                break;
            }
            /* Refused for good (EMSGSIZE, ENETDOWN ...): drop this frame so the rest can go. */
            cp.st.dev_tx_errors++;
            cp_put(bufs[done]);
            done++;
            continue;
        }
        for (int i = 0; i < sent; i++)
            cp_put(bufs[done + i]);
        cp.st.dev_tx_frames += (uint64_t)sent;
        done += (uint16_t)sent;
        if ((unsigned)sent < k)
            continue; /* the next call reports why the next frame failed */
    }
    return done;
}

static struct nsbuf *cp_buf_alloc(struct netdev *dev)
{
    (void)dev;
    return nsbuf_pool_get(&cp.pool);
}

static void cp_buf_free(struct netdev *dev, struct nsbuf *b)
{
    (void)dev;
    nsbuf_pool_put(b);
}

static const struct netdev_ops cp_ops = {
    .rx_burst = cp_rx_burst,
    .tx_burst = cp_tx_burst,
    .buf_alloc = cp_buf_alloc,
    .buf_free = cp_buf_free,
};

/* ---- set-up --------------------------------------------------------------------- */

static int if_query(const char *ifname, uint8_t mac[6], uint32_t *mtu, bool *up)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (strlen(ifname) >= sizeof(ifr.ifr_name))
        return -ENODEV;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    memcpy(ifr.ifr_name, ifname, strlen(ifname) + 1);
    int rc = 0;
    if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
        rc = -errno;
        goto out;
    }
    if (ifr.ifr_hwaddr.sa_family != 1 /* ARPHRD_ETHER */) {
        rc = -EPROTONOSUPPORT;
        goto out;
    }
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (ioctl(s, SIOCGIFMTU, &ifr) < 0) {
        rc = -errno;
        goto out;
    }
    *mtu = (uint32_t)ifr.ifr_mtu;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        rc = -errno;
        goto out;
    }
    *up = (ifr.ifr_flags & IFF_UP) != 0;
out:
    close(s);
    return rc;
}

static uint32_t pow2_at_least(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static int open_socket(const char *ifname, uint32_t mtu, bool promisc)
{
    /* Protocol 0 receives nothing until bind: no frames of other interfaces slip into the ring. */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc;
    int v = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) < 0)
        goto fail;
    /* Frames we send must not come back to us on rx. */
    v = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &v, sizeof(v)) < 0)
        LOG_INFO("catpowder: PACKET_IGNORE_OUTGOING: %s (our own frames will be dropped by the stack)",
                 strerror(errno));
    /* The stack does its own queueing and batching; the qdisc would only add a lock and a copy. */
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &v, sizeof(v)) < 0)
        LOG_INFO("catpowder: PACKET_QDISC_BYPASS: %s", strerror(errno));
    v = CP_SNDBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));

    /* Room for the ring header, the sockaddr_ll the kernel puts before the frame, and the frame. */
    uint32_t need = TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + TPACKET_ALIGN(sizeof(struct sockaddr_ll)) + 16u +
                    ETH_HLEN + 4u + mtu;
    cp.frame_size = pow2_at_least(need);
    uint32_t block = cp.frame_size > CP_RING_BLOCK ? cp.frame_size : CP_RING_BLOCK;
    struct tpacket_req req = {
        .tp_block_size = block,
        .tp_block_nr = CP_RING_BYTES / block ? CP_RING_BYTES / block : 1,
        .tp_frame_size = cp.frame_size,
    };
    req.tp_frame_nr = req.tp_block_nr * (block / cp.frame_size);
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
        goto fail;
    cp.nframes = req.tp_frame_nr;
    cp.ring_bytes = (size_t)req.tp_block_size * req.tp_block_nr;
    cp.ring = mmap(NULL, cp.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
    if (cp.ring == MAP_FAILED)
        cp.ring = mmap(NULL, cp.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (cp.ring == MAP_FAILED) {
        cp.ring = NULL;
        goto fail;
    }
    cp.head = 0;

    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = cp.ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        goto fail;
    if (promisc) {
        struct packet_mreq mr;
        memset(&mr, 0, sizeof(mr));
        mr.mr_ifindex = cp.ifindex;
        mr.mr_type = PACKET_MR_PROMISC;
        if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0)
            goto fail;
    }
    LOG_DEBUG("catpowder: %s: ring %u frames of %u bytes", ifname, cp.nframes, cp.frame_size);
    return fd;
fail:
    rc = -errno;
    if (cp.ring != NULL)
        munmap(cp.ring, cp.ring_bytes);
    cp.ring = NULL;
    close(fd);
    return rc;
}

static void catpowder_fini(void);

static int catpowder_init(const struct core_config *cfg)
{
    if (cp.up)
        return 0;
    const char *ifname = cfg->linux_interface_name;
    if (ifname[0] == '\0') {
        LOG_ERROR("catpowder: raw_socket.linux_interface_name (DEMI_IFNAME) is required");
        return -EINVAL;
    }
    cp.ifindex = (int)if_nametoindex(ifname);
    if (cp.ifindex == 0) {
        LOG_ERROR("catpowder: interface %s: %s", ifname, strerror(errno));
        return -ENODEV;
    }
    uint8_t mac[6];
    uint32_t mtu = 0;
    bool up = false;
    int rc = if_query(ifname, mac, &mtu, &up);
    if (rc < 0) {
        LOG_ERROR("catpowder: interface %s: %s", ifname, strerror(-rc));
        return rc == -EPROTONOSUPPORT ? -ENODEV : rc;
    }
    if (!up) {
        LOG_ERROR("catpowder: interface %s is down (ip link set dev %s up)", ifname, ifname);
        return -ENETDOWN;
    }
    /* Another MAC than the interface's own needs the frames addressed to it. */
    bool promisc = cfg->has_local_mac && memcmp(cfg->local_mac, mac, 6) != 0;
    memset(&cp.st, 0, sizeof(cp.st));
    int fd = open_socket(ifname, mtu, promisc);
    if (fd < 0) {
        LOG_ERROR("catpowder: AF_PACKET socket on %s: %s%s", ifname, strerror(-fd),
                  fd == -EPERM ? " (needs CAP_NET_RAW)" : "");
        return fd;
    }
    cp.fd = fd;
    uint32_t bufsize = pow2_at_least(CP_HEADROOM + ETH_HLEN + 4u + mtu);
    rc = nsbuf_pool_init(&cp.pool, CP_POOL_BUFS, bufsize, CP_HEADROOM);
    if (rc < 0) {
        munmap(cp.ring, cp.ring_bytes);
        close(fd);
        cp.fd = -1;
        return rc;
    }
    cp.dev.ops = &cp_ops;
    memcpy(cp.dev.mac, mac, 6);
    cp.dev.mtu = mtu;
    cp.dev.offloads = NETDEV_OFFLOAD_RX_L4_CKSUM;
    cp.dev.priv = &cp;
    const uint64_t *vals = (const uint64_t *)&cp.st;
    unsigned nst = (unsigned)(sizeof(cp.st) / sizeof(uint64_t));
    for (unsigned i = 0; i < nst; i++)
        cp.devstats[i] = (struct nsglue_devstat){ cp_names[i], cp_helps[i], &vals[i] };
    struct nsglue_device d = {
        .dev = &cp.dev, .fd = fd, .pool_size = CP_POOL_BUFS, .stats = cp.devstats, .nstats = nst,
    };
    cp.up = true;
    rc = nsglue_start("catpowder", cfg, &d);
    if (rc < 0) {
        catpowder_fini();
        return rc;
    }
    LOG_INFO("catpowder: up on %s (ifindex %d, MTU %u%s)", ifname, cp.ifindex, mtu, promisc ? ", promiscuous" : "");
    return 0;
}

static void catpowder_fini(void)
{
    if (!cp.up)
        return;
    nsglue_stop();
    nsbuf_pool_fini(&cp.pool);
    if (cp.ring != NULL)
        munmap(cp.ring, cp.ring_bytes);
    cp.ring = NULL;
    if (cp.fd >= 0)
        close(cp.fd);
    cp.fd = -1;
    cp.up = false;
}

static const struct libos_ops catpowder_ops = {
    .name = "catpowder",
    .init = catpowder_init,
    .fini = catpowder_fini,
    NSGLUE_OPS,
};

LIBOS_REGISTER(catpowder)
{
    return &catpowder_ops;
}
