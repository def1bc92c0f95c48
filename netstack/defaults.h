/*
 * Every netstack tunable with its default; a build or a test may predefine
 * any of them. Values also present in the run-time config (ns_config) are
 * only the defaults ns_config_defaults fills in.
 */
#ifndef NS_DEFAULTS_H
#define NS_DEFAULTS_H

/* ---- buffers and batching */
#ifndef NS_RX_BURST
#define NS_RX_BURST 32                 /* frames asked from rx_burst per call */
#endif
#ifndef NS_RX_BUDGET
#define NS_RX_BUDGET 256               /* frames processed per ns_poll, so timers and tx still run under flood */
#endif
#ifndef NS_TX_BATCH
#define NS_TX_BATCH 32                 /* frames collected before tx_burst; ns_poll/ns_flush send the rest */
#endif
#ifndef NS_HEADROOM_MIN
#define NS_HEADROOM_MIN 64             /* headroom a tx buffer needs: 14 eth + 60 ip is 74, but we never send IP options */
#endif

/* ---- ARP (RFC 826); the three run-time values match core config's defaults */
#ifndef NS_ARP_CACHE_SIZE
#define NS_ARP_CACHE_SIZE 64           /* entries, static ones included; LRU dynamic entry evicted when full */
#endif
#ifndef NS_ARP_TTL_MS
#define NS_ARP_TTL_MS 15000u           /* a learned entry expires this long after it was last confirmed */
#endif
#ifndef NS_ARP_REQUEST_TIMEOUT_MS
#define NS_ARP_REQUEST_TIMEOUT_MS 20u  /* wait this long for a reply before asking again */
#endif
#ifndef NS_ARP_REQUEST_RETRIES
#define NS_ARP_REQUEST_RETRIES 5u      /* requests sent after the first before giving up and dropping */
#endif
#ifndef NS_ARP_PENDING_PER_ENTRY
#define NS_ARP_PENDING_PER_ENTRY 8     /* packets held for one unresolved address; more are dropped */
#endif
#ifndef NS_ARP_PENDING_MAX
#define NS_ARP_PENDING_MAX 64          /* packets held for all unresolved addresses together */
#endif
#ifndef NS_TIMER_GRANULARITY_MS
#define NS_TIMER_GRANULARITY_MS 1u     /* timers are scanned at most this often by ns_poll */
#endif

/* ---- IPv4 */
#ifndef NS_IP_DEFAULT_TTL
#define NS_IP_DEFAULT_TTL 64           /* RFC 1700 recommended TTL for what we send */
#endif
#ifndef NS_IP_DROP_TTL_ZERO
#define NS_IP_DROP_TTL_ZERO 1          /* drop received TTL-0 datagrams (sender broke RFC 1122 3.2.1.7); 0 accepts them */
#endif
#ifndef NS_MTU_DEFAULT
#define NS_MTU_DEFAULT 1500u           /* used when neither config nor device gives an MTU */
#endif

/* ---- IPv4 reassembly (ipv4_frag.c). Memory: NS_IP_REASM_BUFS x (NS_IP_REASM_MAX_SIZE + 40)
 * bytes, allocated once when the first fragment arrives; received fragments are copied in at once,
 * so no device buffer is ever held by reassembly. */
#ifndef NS_IP_REASM_MAX_DATAGRAMS
#define NS_IP_REASM_MAX_DATAGRAMS 8    /* datagrams in reassembly at once; the oldest is evicted for a new one; 0: drop every fragment */
#endif
#ifndef NS_IP_REASM_BUFS
#define NS_IP_REASM_BUFS 12            /* large buffers: datagrams in reassembly plus reassembled ones too big for a device buffer still unread */
#endif
#ifndef NS_IP_REASM_MAX_SIZE
#define NS_IP_REASM_MAX_SIZE 65535u    /* largest datagram (header included) reassembled: 65535 is IPv4's limit; less saves memory */
#endif
#ifndef NS_IP_REASM_MAX_RANGES
#define NS_IP_REASM_MAX_RANGES 64      /* disjoint received pieces tracked per datagram (64 KiB in 576-byte fragments, random order, fits) */
#endif
#ifndef NS_IP_REASM_TIMEOUT_MS
#define NS_IP_REASM_TIMEOUT_MS 30000u  /* from the first fragment; Linux's 30 s (RFC 1122 3.3.2 suggests 60-120 s) */
#endif

/* ---- ICMP */
#ifndef NS_ICMP_ERR_RATE_PER_SEC
#define NS_ICMP_ERR_RATE_PER_SEC 1000u /* ICMP errors we send per second on average (RFC 1812 4.3.2.8) */
#endif
#ifndef NS_ICMP_ERR_BURST
#define NS_ICMP_ERR_BURST 50u          /* ... and at once after quiet time */
#endif
#ifndef NS_ICMP_ERR_QUOTE_MAX
#define NS_ICMP_ERR_QUOTE_MAX 548u     /* bytes of the offending datagram quoted: error stays <= 576 (RFC 1812 4.3.2.3) */
#endif
#ifndef NS_PING_RING
#define NS_PING_RING 16                /* echo replies kept for ns_ping_reply; the oldest is overwritten */
#endif

/* ---- UDP */
#ifndef NS_UDP_MAX_SOCKETS
#define NS_UDP_MAX_SOCKETS 64          /* UDP sockets per stack (demux is a linear scan over them) */
#endif
#ifndef NS_UDP_RXQ_MAX
#define NS_UDP_RXQ_MAX 256             /* datagrams queued per socket before new ones are dropped */
#endif
#ifndef NS_EPHEMERAL_PORT_MIN
#define NS_EPHEMERAL_PORT_MIN 49152u   /* RFC 6335 dynamic port range */
#endif
#ifndef NS_EPHEMERAL_PORT_MAX
#define NS_EPHEMERAL_PORT_MAX 65535u
#endif

#endif /* NS_DEFAULTS_H */
