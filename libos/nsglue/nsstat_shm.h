/*
 * Layout of /dev/shm/demi-netstack.<pid>, the counters file a netstack LibOS
 * keeps current and demi-nsstat reads: a header, one fixed-size description
 * per counter, then the values. Shared by the writer (stats.c) and the tool.
 */
#ifndef DEMI_NSSTAT_SHM_H
#define DEMI_NSSTAT_SHM_H

#include <stdint.h>

#define NSSTAT_SHM_PREFIX "demi-netstack."   /* + decimal pid, under /dev/shm */
#define NSSTAT_SHM_MAGIC 0x314e53494d454400ull /* "\0DEMISN1" little-endian */
#define NSSTAT_SHM_VERSION 1u
#define NSSTAT_NAME_LEN 48
#define NSSTAT_HELP_LEN 112

struct nsstat_shm_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t count;              /* counters that follow */
    uint32_t pid;
    uint32_t pad;
    uint64_t start_ticks;        /* /proc/<pid>/stat field 22: tells a reused pid from ours */
    char libos[32];
    uint64_t seq;                /* odd while the writer updates the values */
    uint64_t updated_ns;         /* CLOCK_REALTIME of the last update */
};

struct nsstat_shm_desc {
    char name[NSSTAT_NAME_LEN];
    char help[NSSTAT_HELP_LEN];
};

/* values: uint64_t[count] right after the descriptions. */
static inline uint64_t *nsstat_values(struct nsstat_shm_hdr *h)
{
    return (uint64_t *)((char *)(h + 1) + (uint64_t)h->count * sizeof(struct nsstat_shm_desc));
}

static inline uint64_t nsstat_size(uint32_t count)
{
    return sizeof(struct nsstat_shm_hdr) + (uint64_t)count * (sizeof(struct nsstat_shm_desc) + sizeof(uint64_t));
}

#endif /* DEMI_NSSTAT_SHM_H */
