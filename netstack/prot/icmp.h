/*
 * ICMPv4 wire format (RFC 792, RFC 1122 3.2.2); parsed by icmp.c on input
 * (ipv4 -> icmp -> udp error delivery) and built for echo replies and errors.
 */
#ifndef NS_PROT_ICMP_H
#define NS_PROT_ICMP_H

#include <stdbool.h>
#include <stdint.h>

#include "byteorder.h"

#define NS_ICMP_HLEN 8
#define NS_ICMP_ECHO_REPLY 0
#define NS_ICMP_DEST_UNREACH 3
#define NS_ICMP_SOURCE_QUENCH 4
#define NS_ICMP_REDIRECT 5
#define NS_ICMP_ECHO_REQUEST 8
#define NS_ICMP_TIME_EXCEEDED 11
#define NS_ICMP_PARAM_PROBLEM 12

/* Destination-unreachable codes. */
#define NS_ICMP_UNREACH_NET 0
#define NS_ICMP_UNREACH_HOST 1
#define NS_ICMP_UNREACH_PROTO 2
#define NS_ICMP_UNREACH_PORT 3
#define NS_ICMP_UNREACH_FRAG_NEEDED 4

/* Time-exceeded codes. */
#define NS_ICMP_TIMXCEED_TTL 0       /* TTL reached 0 in transit */
#define NS_ICMP_TIMXCEED_REASS 1     /* fragment reassembly time exceeded (RFC 792) */

struct ns_icmp_hdr {
    uint8_t type;
    uint8_t code;
    be16_t cksum;                /* over the whole ICMP message */
    union {
        struct {
            be16_t id;
            be16_t seq;
        } echo;
        struct {
            be16_t unused;
            be16_t mtu;          /* next-hop MTU for FRAG_NEEDED (RFC 1191) */
        } frag;
        be32_t rest;
    } un;
} __attribute__((packed));
NS_STATIC_ASSERT(sizeof(struct ns_icmp_hdr) == NS_ICMP_HLEN, "icmp header");

/* Error messages quote the offending datagram; RFC 1122 3.2.2 forbids
 * answering one error with another. */
static inline bool ns_icmp_is_error(uint8_t type)
{
    return type == NS_ICMP_DEST_UNREACH || type == NS_ICMP_SOURCE_QUENCH || type == NS_ICMP_REDIRECT ||
           type == NS_ICMP_TIME_EXCEEDED || type == NS_ICMP_PARAM_PROBLEM;
}

#endif /* NS_PROT_ICMP_H */
