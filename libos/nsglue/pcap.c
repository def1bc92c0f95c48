/*
 * DEMI_PCAP capture: a struct netdev wrapped around the real one that writes
 * every frame received and every frame the device took for sending to a
 * classic pcap file (LINKTYPE_ETHERNET, nanosecond timestamps). Call chain:
 * ns_poll -> pcap rx_burst -> device rx_burst; ns_flush -> pcap tx_burst ->
 * device tx_burst. Flushed after every burst so tcpdump -r reads a live file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nsglue.h"

#define PCAP_MAGIC_NS 0xa1b23c4du /* nanosecond-resolution timestamps */
#define PCAP_SNAPLEN 65535u
#define PCAP_LINKTYPE_ETHERNET 1u

struct pcap_file_hdr {
    uint32_t magic;
    uint16_t major, minor;
    int32_t thiszone;
    uint32_t sigfigs;
    uint32_t snaplen;
    uint32_t linktype;
};

struct pcap_rec_hdr {
    uint32_t ts_sec, ts_nsec;
    uint32_t incl_len, orig_len;
};

static struct {
    FILE *f;
    struct netdev *inner;
    struct netdev wrap;
    uint64_t frames;
    bool failed;
} pc;

static void record(struct nsbuf *const *bufs, uint16_t n)
{
    if (n == 0 || pc.f == NULL || pc.failed)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (uint16_t i = 0; i < n; i++) {
        uint32_t len = bufs[i]->len;
        uint32_t incl = len < PCAP_SNAPLEN ? len : PCAP_SNAPLEN;
        struct pcap_rec_hdr h = {
            .ts_sec = (uint32_t)ts.tv_sec, .ts_nsec = (uint32_t)ts.tv_nsec, .incl_len = incl, .orig_len = len,
        };
        if (fwrite(&h, sizeof(h), 1, pc.f) != 1 || fwrite(bufs[i]->data, 1, incl, pc.f) != incl) {
            pc.failed = true; /* a full disk must not take the stack down; the counter stops */
            return;
        }
        pc.frames++;
    }
    if (fflush(pc.f) != 0)
        pc.failed = true;
}

static uint16_t pcap_rx_burst(struct netdev *dev, struct nsbuf **bufs, uint16_t n)
{
    (void)dev;
    uint16_t got = pc.inner->ops->rx_burst(pc.inner, bufs, n);
    record(bufs, got);
    return got;
}

/*
 * The device may free a frame as soon as it is sent, so we hold a reference
 * across the call and record only the frames it took.
 */
static uint16_t pcap_tx_burst(struct netdev *dev, struct nsbuf **bufs, uint16_t n)
{
    (void)dev;
    for (uint16_t i = 0; i < n; i++)
        bufs[i]->refcnt++;
    uint16_t took = pc.inner->ops->tx_burst(pc.inner, bufs, n);
    record(bufs, took);
    for (uint16_t i = 0; i < n; i++)
        if (--bufs[i]->refcnt == 0)
            pc.inner->ops->buf_free(pc.inner, bufs[i]);
    return took;
}

static struct nsbuf *pcap_buf_alloc(struct netdev *dev)
{
    (void)dev;
    return pc.inner->ops->buf_alloc(pc.inner);
}

static void pcap_buf_free(struct netdev *dev, struct nsbuf *b)
{
    (void)dev;
    pc.inner->ops->buf_free(pc.inner, b);
}

static const struct netdev_ops pcap_ops = {
    .rx_burst = pcap_rx_burst,
    .tx_burst = pcap_tx_burst,
    .buf_alloc = pcap_buf_alloc,
    .buf_free = pcap_buf_free,
};

int nsglue_pcap_open(const char *path, struct netdev *dev, struct netdev **out)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        int e = errno;
        close(fd);
        return -e;
    }
    struct pcap_file_hdr h = {
        .magic = PCAP_MAGIC_NS, .major = 2, .minor = 4, .snaplen = PCAP_SNAPLEN, .linktype = PCAP_LINKTYPE_ETHERNET,
    };
    if (fwrite(&h, sizeof(h), 1, f) != 1 || fflush(f) != 0) {
        int e = errno ? errno : EIO;
        fclose(f);
        return -e;
    }
    memset(&pc, 0, sizeof(pc));
    pc.f = f;
    pc.inner = dev;
    pc.wrap = *dev;
    pc.wrap.ops = &pcap_ops;
    *out = &pc.wrap;
    return 0;
}

void nsglue_pcap_close(void)
{
    if (pc.f != NULL)
        fclose(pc.f);
    pc.f = NULL;
}

uint64_t nsglue_pcap_frames(void) { return pc.frames; }
