// TCP test helpers on top of harness.h: segment builder with options, parser of transmitted
// segments, a fixture that drives one stack against a scripted peer (10.0.0.2) and can put a
// connection into a given state, and a two-stack fixture with TCP conveniences.
#ifndef NS_TEST_TCP_HARNESS_H
#define NS_TEST_TCP_HARNESS_H

#include <utility>

#include "harness.h"

struct TcpOpt {
    int mss = -1;                // -1: absent
    int ws = -1;
    bool sackperm = false;
    bool ts = false;
    uint32_t tsval = 0, tsecr = 0;
    std::vector<std::pair<uint32_t, uint32_t>> sack;
};
Bytes tcp_opts_bytes(const TcpOpt &o);
// A TCP segment (header + options + payload) with a correct checksum unless bad_cksum.
Bytes tcp_pkt(be32_t src, be32_t dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
              uint16_t win, const Bytes &opts = {}, const Bytes &payload = {}, bool bad_cksum = false);

struct TcpSeg {
    bool ok = false;
    uint16_t sport = 0, dport = 0;
    uint32_t seq = 0, ack = 0;
    uint8_t flags = 0;
    uint16_t win = 0;
    bool cksum_ok = false;
    TcpOpt opt;
    Bytes payload;
    bool has(uint8_t f) const { return (flags & f) == f; }
};
// Parse an Ethernet frame holding IPv4/TCP; ok false otherwise.
TcpSeg parse_tcp(const Bytes &frame);

// One stack under test against a peer scripted by the test.
class TcpTest : public StackTest {
protected:
    void SetUp() override;
    // Every TCP segment transmitted since the last call (non-TCP frames dropped).
    std::vector<TcpSeg> segs();
    // The single segment transmitted (fails the test if not exactly one).
    TcpSeg one();
    // Inject a segment from the peer port `pport` to our `lport`.
    void peer_send(uint32_t seq, uint32_t ack, uint8_t flags, const Bytes &payload = {}, uint16_t win = 65535,
                   const TcpOpt &o = TcpOpt());
    // The usual segment from the connected peer: seq = pseq, ack = our next.
    void peer_data(const Bytes &payload, uint8_t flags = NS_TCP_ACK | NS_TCP_PSH);
    void peer_ack(uint32_t ack, uint16_t win = 65535);

    // Listen on lport, complete a handshake from the peer, accept. Returns the socket; sets
    // iss/pseq/snd (our next seq). syn_opts are the peer SYN's options.
    int open_passive(const TcpOpt &syn_opts = TcpOpt(), int lsd_out_dummy = 0);
    // connect() to the peer, answer the SYN with a SYN-ACK carrying synack_opts.
    int open_active(const TcpOpt &synack_opts = TcpOpt(), uint16_t win = 65535);
    int state(int sd);
    // A passive connection driven by the scripted peer into `st` (any synchronized state);
    // returns the socket (still held: shutdown is used instead of close).
    int to_state(enum ns_tcp_state st);
    std::string recv_all(int sd);

    uint16_t lport = 80, pport = 40000;
    uint32_t peer_iss = 1000000;
    uint32_t pseq = 0;           // peer's next sequence number
    uint32_t snd = 0;            // our next sequence number (what the peer acks)
    uint32_t iss = 0;
    int lsd = -1;                // listener from open_passive
    TcpOpt last_syn_opts;        // options on the SYN / SYN-ACK we sent
};

// Two stacks on one wire with TCP helpers.
class TcpPair : public TwoStacks {
protected:
    // Server listening on B:port, client on A connected and accepted; returns {client, server}.
    std::pair<int, int> connect_pair(uint16_t port = 80);
    // Pump with timers: advance the clock by ms in steps, moving frames.
    void run_ms(uint64_t ms, uint64_t step_ms = 1);
    std::string drain(struct netstack *s, int sd);
    int state(struct netstack *s, int sd);
};

#endif
