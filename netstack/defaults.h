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
#ifndef NS_LOOPBACK_QUEUE_MAX
#define NS_LOOPBACK_QUEUE_MAX 1024     /* datagrams to our own address waiting for input; more are dropped */
#endif
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

/* ---- timers */
#ifndef NS_TW_SLOTS
#define NS_TW_SLOTS 1024               /* timer wheel slots of NS_TIMER_GRANULARITY_MS each (power of two) */
#endif

/* ---- TCP (RFC 9293 and friends); times in ms unless named otherwise */
#ifndef NS_TCP_MAX_SOCKETS
#define NS_TCP_MAX_SOCKETS 1024        /* control blocks per stack: user sockets, embryonic and closing connections */
#endif
#ifndef NS_TCP_HASH_BUCKETS
#define NS_TCP_HASH_BUCKETS 1024       /* 4-tuple demux hash buckets (power of two) */
#endif
#ifndef NS_TCP_SYN_BACKLOG
#define NS_TCP_SYN_BACKLOG 128         /* half-open (SYN_RECEIVED) connections per listener; more SYNs are dropped */
#endif
#ifndef NS_TCP_MAX_BACKLOG
#define NS_TCP_MAX_BACKLOG 4096        /* listen() backlog is clamped to this (Linux somaxconn) */
#endif
#ifndef NS_TCP_SNDBUF
#define NS_TCP_SNDBUF (256u * 1024)    /* default send buffer bytes (a ring allocated at the first send) */
#endif
#ifndef NS_TCP_RCVBUF
#define NS_TCP_RCVBUF (256u * 1024)    /* default receive buffer bytes: bounds the advertised window */
#endif
#ifndef NS_TCP_BUF_MIN
#define NS_TCP_BUF_MIN 2048u           /* SO_SNDBUF/SO_RCVBUF are raised to at least this */
#endif
#ifndef NS_TCP_BUF_MAX
#define NS_TCP_BUF_MAX (16u * 1024 * 1024) /* ... and clamped to this */
#endif
#ifndef NS_TCP_RXQ_MAX_BUFS
#define NS_TCP_RXQ_MAX_BUFS 1024       /* frame buffers held by one socket's in-order queue; beyond, segments are dropped */
#endif
#ifndef NS_TCP_COALESCE_MAX
#define NS_TCP_COALESCE_MAX 512u       /* in-order segments up to this size are copied into the queue's tail buffer */
#endif
#ifndef NS_TCP_OOO_MAX
#define NS_TCP_OOO_MAX 128             /* out-of-order segments held per connection; more are dropped */
#endif
#ifndef NS_TCP_DEFAULT_MSS
#define NS_TCP_DEFAULT_MSS 536u        /* peer MSS assumed when its SYN has no MSS option (RFC 9293 3.7.1) */
#endif
#ifndef NS_TCP_MIN_MSS
#define NS_TCP_MIN_MSS 88u             /* smallest MSS we accept from a peer or TCP_MAXSEG (Linux TCP_MIN_MSS) */
#endif
#ifndef NS_TCP_USE_WSCALE
#define NS_TCP_USE_WSCALE 1            /* offer window scaling (RFC 7323) */
#endif
#ifndef NS_TCP_USE_TIMESTAMPS
#define NS_TCP_USE_TIMESTAMPS 1        /* offer timestamps (RFC 7323): RTT samples and PAWS */
#endif
#ifndef NS_TCP_USE_SACK
#define NS_TCP_USE_SACK 1              /* offer SACK (RFC 2018) */
#endif
#ifndef NS_TCP_RTO_INIT_MS
#define NS_TCP_RTO_INIT_MS 1000u       /* RTO before any RTT sample (RFC 6298 2.1) */
#endif
#ifndef NS_TCP_RTO_MIN_MS
#define NS_TCP_RTO_MIN_MS 200u         /* lower RTO bound: Linux's 200 ms, not RFC 6298's 1 s, for LAN latency */
#endif
#ifndef NS_TCP_RTO_MAX_MS
#define NS_TCP_RTO_MAX_MS 120000u      /* upper RTO bound after backoff (Linux; RFC 6298 allows >= 60 s) */
#endif
#ifndef NS_TCP_RETRIES
#define NS_TCP_RETRIES 15u             /* RTO retransmissions of data before ETIMEDOUT (Linux tcp_retries2) */
#endif
#ifndef NS_TCP_SYN_RETRIES
#define NS_TCP_SYN_RETRIES 6u          /* SYN retransmissions before connect fails with ETIMEDOUT (Linux) */
#endif
#ifndef NS_TCP_SYNACK_RETRIES
#define NS_TCP_SYNACK_RETRIES 5u       /* SYN-ACK retransmissions before a half-open connection is dropped */
#endif
#ifndef NS_TCP_DUPTHRESH
#define NS_TCP_DUPTHRESH 3u            /* duplicate ACKs that trigger fast retransmit (RFC 5681) */
#endif
#ifndef NS_TCP_DELACK_MS
#define NS_TCP_DELACK_MS 40u           /* delayed ACK timeout (RFC 1122 allows up to 500; Linux's minimum 40) */
#endif
#ifndef NS_TCP_MSL_MS
#define NS_TCP_MSL_MS 30000u           /* maximum segment lifetime: TIME_WAIT lasts 2*MSL (Linux: 60 s total) */
#endif
#ifndef NS_TCP_FIN_TIMEOUT_MS
#define NS_TCP_FIN_TIMEOUT_MS 60000u   /* a closed socket waits this long in FIN_WAIT_2 for the peer's FIN */
#endif
#ifndef NS_TCP_KEEPIDLE_S
#define NS_TCP_KEEPIDLE_S 7200u        /* idle seconds before the first keepalive probe (RFC 1122 4.2.3.6) */
#endif
#ifndef NS_TCP_KEEPINTVL_S
#define NS_TCP_KEEPINTVL_S 75u         /* seconds between unanswered keepalive probes */
#endif
#ifndef NS_TCP_KEEPCNT_DEFAULT
#define NS_TCP_KEEPCNT_DEFAULT 9u          /* unanswered probes before ETIMEDOUT */
#endif
#ifndef NS_TCP_PERSIST_MIN_MS
#define NS_TCP_PERSIST_MIN_MS 200u     /* first zero-window probe interval floor (then it backs off like RTO) */
#endif
#ifndef NS_TCP_CHALLENGE_ACK_PER_SEC
#define NS_TCP_CHALLENGE_ACK_PER_SEC 1000u /* challenge ACKs per second per stack (RFC 5961 7) */
#endif
#ifndef NS_TCP_SACK_BLOCKS
#define NS_TCP_SACK_BLOCKS 8           /* SACK scoreboard blocks kept by the sender */
#endif

#endif /* NS_DEFAULTS_H */
