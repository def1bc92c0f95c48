/*
 * The fixed buffer pool behind struct nsbuf: allocated once at init, then a
 * LIFO free list; a netdev's buf_alloc/buf_free call into it (or wrap their
 * own memory, e.g. DPDK mbufs, in the same struct).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nsbuf.h"

int nsbuf_pool_init(struct nsbuf_pool *p, uint32_t count, uint32_t bufsize, uint32_t headroom)
{
    memset(p, 0, sizeof(*p));
    if (count == 0 || bufsize == 0 || headroom >= bufsize)
        return -EINVAL;
    p->bufs = calloc(count, sizeof(*p->bufs));
    p->mem = malloc((size_t)count * bufsize);
    if (!p->bufs || !p->mem) {
        free(p->bufs);
        free(p->mem);
        memset(p, 0, sizeof(*p));
        return -ENOMEM;
    }
    p->count = count;
    p->bufsize = bufsize;
    p->headroom = headroom;
    for (uint32_t i = count; i-- > 0;) {
        struct nsbuf *b = &p->bufs[i];
        b->base = p->mem + (size_t)i * bufsize;
        b->cap = bufsize;
        b->pool = p;
        b->next = p->free;
        p->free = b;
    }
    return 0;
}

void nsbuf_pool_fini(struct nsbuf_pool *p)
{
    free(p->bufs);
    free(p->mem);
    memset(p, 0, sizeof(*p));
}

struct nsbuf *nsbuf_pool_get(struct nsbuf_pool *p)
{
    struct nsbuf *b = p->free;
    if (!b)
        return NULL;
    p->free = b->next;
    p->in_use++;
    b->next = NULL;
    b->data = b->base + p->headroom;
    b->len = 0;
    b->refcnt = 1;
    b->flags = 0;
    b->peer_addr = 0;
    b->peer_port = 0;
    return b;
}

void nsbuf_pool_put(struct nsbuf *b)
{
    struct nsbuf_pool *p = b->pool;
    b->refcnt = 0;
    b->next = p->free;
    p->free = b;
    p->in_use--;
}
