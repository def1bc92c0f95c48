/*
 * Packet buffers and the fixed pool they come from: a netdev hands them to the
 * stack on rx, the stack fills them on tx, and the application may hold one
 * (zero-copy UDP receive) until ns_buf_free; no allocation per packet.
 */
#ifndef NS_NSBUF_H
#define NS_NSBUF_H

#include <stddef.h>
#include <stdint.h>

#include "prot/byteorder.h"

struct nsbuf_pool;

/* Rx offload results a device may set (otherwise the stack verifies). */
#define NSBUF_RX_IP_CKSUM_GOOD 0x01u
#define NSBUF_RX_IP_CKSUM_BAD 0x02u
#define NSBUF_RX_L4_CKSUM_GOOD 0x04u
#define NSBUF_RX_L4_CKSUM_BAD 0x08u

struct nsbuf {
    struct nsbuf *next;          /* queue link for whoever owns the buffer now */
    uint8_t *base;               /* start of storage */
    uint8_t *data;               /* first valid byte; data - base is the headroom */
    uint32_t cap;                /* bytes of storage */
    uint32_t len;                /* valid bytes from data */
    uint32_t refcnt;             /* owners; the buffer returns to its pool at 0 */
    uint32_t flags;              /* NSBUF_RX_* */
    struct nsbuf_pool *pool;
    /* Meta data for a queued received datagram (UDP: the sender). */
    be32_t peer_addr;
    be16_t peer_port;
    uint32_t seq;                /* TCP: sequence number of data[0] while in an out-of-order queue */
};

static inline uint32_t nsbuf_headroom(const struct nsbuf *b) { return (uint32_t)(b->data - b->base); }
static inline uint32_t nsbuf_tailroom(const struct nsbuf *b) { return b->cap - nsbuf_headroom(b) - b->len; }

/* Grow the front by n bytes (a header); NULL when the headroom is too small. */
static inline void *nsbuf_push(struct nsbuf *b, uint32_t n)
{
    if (nsbuf_headroom(b) < n)
        return NULL;
    b->data -= n;
    b->len += n;
    return b->data;
}

/* Drop n bytes from the front (a parsed header); NULL when fewer are left. */
static inline void *nsbuf_pull(struct nsbuf *b, uint32_t n)
{
    if (b->len < n)
        return NULL;
    b->data += n;
    b->len -= n;
    return b->data;
}

/* Grow the end by n bytes; returns where they start, NULL without room. */
static inline void *nsbuf_append(struct nsbuf *b, uint32_t n)
{
    if (nsbuf_tailroom(b) < n)
        return NULL;
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

static inline void nsbuf_trim(struct nsbuf *b, uint32_t len)
{
    if (len < b->len)
        b->len = len;
}

/*
 * A pool of `count` buffers of `bufsize` bytes each, `headroom` of which are
 * kept in front of data on allocation. Memory is allocated once here; get and
 * put are O(1) free-list operations. Not thread-safe: one pool per stack/core.
 */
struct nsbuf_pool {
    struct nsbuf *free;
    struct nsbuf *bufs;
    uint8_t *mem;
    uint32_t count;
    uint32_t in_use;
    uint32_t bufsize;
    uint32_t headroom;
};

int nsbuf_pool_init(struct nsbuf_pool *p, uint32_t count, uint32_t bufsize, uint32_t headroom);
void nsbuf_pool_fini(struct nsbuf_pool *p);
/* A buffer with refcnt 1, len 0, data at the headroom; NULL when empty. */
struct nsbuf *nsbuf_pool_get(struct nsbuf_pool *p);
/* Return a buffer regardless of refcnt (callers use the refcount helpers). */
void nsbuf_pool_put(struct nsbuf *b);

#endif /* NS_NSBUF_H */
