/*
 * The frame fuzzer's input format and fixed world, shared by the libFuzzer
 * target (fuzz_frames.c), the corpus replay driver and the corpus generator.
 *
 * Input: a sequence of records, each
 *   u8 dt      time advance: 0..127 ms, or (dt - 127) * 500 ms for 128..255
 *   u8 act     FUZZ_ACT_* bits: what the application does after the frame
 *   u16 len    frame length, big endian (cut to what is left of the input)
 *   len bytes  an Ethernet frame given to ns_input (len 0: no frame)
 * The stack under test is 10.0.0.1/24 (MAC 02:00:00:00:00:01) with the peer
 * 10.0.0.2 (02:00:00:00:00:02) as a static ARP entry, UDP sockets on ports 7
 * and 5353 plus one connected to the peer's 9999, a TCP listener on 80, an
 * established TCP connection from the peer's port 40000 to 80 (set up by an
 * injected handshake) and a connection of ours to the peer's 443 in SYN_SENT.
 */
#ifndef DEMI_FUZZ_FRAMES_H
#define DEMI_FUZZ_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUZZ_ACT_FIX_CKSUM 0x01u   /* recompute IPv4 and L4 checksums of the frame before input */
#define FUZZ_ACT_UDP_RECV 0x02u    /* read every UDP socket (copy and zero copy) */
#define FUZZ_ACT_UDP_SEND 0x04u    /* send a datagram to the peer from two sockets */
#define FUZZ_ACT_TCP_RECV 0x08u    /* accept what is pending, read every TCP socket */
#define FUZZ_ACT_TCP_SEND 0x10u    /* write to every TCP socket */
#define FUZZ_ACT_TCP_SHUT 0x20u    /* shutdown(WR) the established connection */
#define FUZZ_ACT_TCP_CLOSE 0x40u   /* close the newest accepted socket (or the established one) */
#define FUZZ_ACT_MISC 0x80u        /* ping, events, info, a socket option */

#define FUZZ_T0_NS 1000000000ull   /* the clock when the stack is created */
#define FUZZ_PEER_ISN 1000000u     /* the peer's initial sequence number in the set-up handshake */
#define FUZZ_EST_PORT 40000u       /* the peer's port of the established connection */
#define FUZZ_LISTEN_PORT 80u
#define FUZZ_CONNECT_PORT 443u     /* the peer's port our SYN_SENT connection aims at */
#define FUZZ_PEER_TSVAL 5000u      /* the peer's timestamp in the set-up handshake */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Called with every frame the stack transmits while the input runs (not the
 * final close) when set: the corpus generator learns sequence numbers from
 * it. NULL in the fuzzer. */
extern void (*fuzz_tx_hook)(const uint8_t *frame, uint32_t len);

#endif
