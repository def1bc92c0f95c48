/*
 * Run-time configuration: defaults, then a YAML file (path in DEMI_CONFIG),
 * then environment overrides. Keys follow Demikernel's config.yaml where they
 * overlap; our own keys live under `demikernel:` and per-LibOS sections.
 */
#ifndef DEMI_CORE_CONFIG_H
#define DEMI_CORE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#define CORE_CONFIG_MAX_ARP 64
#define CORE_CONFIG_MAX_EAL 64
#define CORE_CONFIG_NAME_MAX 64

struct core_arp_entry {
    struct in_addr ip;
    uint8_t mac[6];
};

struct core_config {
    /* demikernel: */
    char libos[CORE_CONFIG_NAME_MAX];      /* "" = not set by file/env (demi_init decides) */
    bool has_local_ipv4;
    struct in_addr local_ipv4;             /* local_ipv4_addr */
    bool has_local_mac;
    uint8_t local_mac[6];                  /* local_link_addr */
    uint32_t wait_spin_us;                 /* wait_spin_us: spin this long before blocking (default 50) */
    uint64_t sga_pool_max_bytes;           /* sga_pool_max_bytes: cap on pooled buffer memory (default 1 GiB) */

    /* raw_socket: */
    char linux_interface_name[CORE_CONFIG_NAME_MAX];
    uint32_t xdp_interface_index;

    /* dpdk: */
    int n_eal;
    char *eal_init[CORE_CONFIG_MAX_EAL];   /* eal_init: [ ... ] (owned, freed by core_config_free) */

    /* tcp_socket_options: defaults applied to new TCP sockets */
    bool keepalive_enabled;
    uint32_t keepalive_time_ms;
    uint32_t keepalive_interval_ms;
    bool linger_enabled;
    uint32_t linger_time_s;
    bool nodelay;
    uint32_t connect_timeout_ms;           /* connect_timeout_ms: 0 = the backend's own (kernel) */

    /* inetstack_config: */
    uint32_t mtu;
    uint32_t mss;
    bool enable_jumbo_frames;
    bool udp_checksum_offload;
    bool tcp_checksum_offload;
    int n_arp;
    struct core_arp_entry arp_table[CORE_CONFIG_MAX_ARP];
    uint32_t arp_cache_ttl_s;
    uint32_t arp_request_timeout_ms;
    uint32_t arp_request_retries;
    bool has_ipv4_netmask;
    struct in_addr ipv4_netmask;
    bool has_ipv4_gateway;
    struct in_addr ipv4_gateway;

    /* catnap: */
    uint32_t catnap_pop_size;              /* bytes read per TCP pop (default 65536) */

    /* catmem: */
    uint32_t catmem_ring_size;             /* bytes of each ring of a pipe this process creates (default 1 MiB) */
};

/* Fill cfg with defaults. */
void core_config_defaults(struct core_config *cfg);

/*
 * Defaults, then the YAML file at `path` (NULL: $DEMI_CONFIG if set, else no
 * file), then environment overrides (DEMI_<KEY>). On a bad value returns
 * -EINVAL and writes one line naming the key and what is allowed into err.
 * -ENOENT if the file is missing.
 */
int core_config_load(struct core_config *cfg, const char *path, char *err, size_t errlen);

void core_config_free(struct core_config *cfg);

#endif /* DEMI_CORE_CONFIG_H */
