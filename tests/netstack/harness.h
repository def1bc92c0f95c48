// Test harness for netstack: a fake netdev that records transmitted frames, a two-stack link,
// a virtual clock, frame builders/parsers, and the leak check run after every test.
#ifndef NS_TEST_HARNESS_H
#define NS_TEST_HARNESS_H

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

extern "C" {
#include "defaults.h"
#include "netstack.h"
#include "prot/arp.h"
#include "prot/cksum.h"
#include "prot/ether.h"
#include "prot/icmp.h"
#include "prot/ipv4.h"
#include "prot/tcp.h"
#include "prot/udp.h"
}

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

constexpr uint64_t kMs = 1000000ull;
inline const Mac kMacA = {0x02, 0, 0, 0, 0, 0x01};
inline const Mac kMacB = {0x02, 0, 0, 0, 0, 0x02};
inline const Mac kMacGw = {0x02, 0, 0, 0, 0, 0xfe};
inline const Mac kMacOther = {0x02, 0, 0, 0, 0, 0x33};
inline const Mac kBcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline const Mac kZeroMac = {0, 0, 0, 0, 0, 0};
inline be32_t ipA() { return NS_IP4(10, 0, 0, 1); }
inline be32_t ipB() { return NS_IP4(10, 0, 0, 2); }
inline be32_t ipGw() { return NS_IP4(10, 0, 0, 254); }
inline be32_t netmask24() { return NS_IP4(255, 255, 255, 0); }
inline ns_sockaddr sa(be32_t a, uint16_t port) { ns_sockaddr s; s.addr = a; s.port = ns_hton16(port); return s; }

// A netdev whose rx queue the test fills and whose tx frames the test reads.
class FakeDev {
public:
    explicit FakeDev(const Mac &mac, uint32_t nbufs = 1024, uint32_t mtu = 1500);
    ~FakeDev();
    FakeDev(const FakeDev &) = delete;
    FakeDev &operator=(const FakeDev &) = delete;

    struct netdev dev {};
    struct nsbuf_pool pool {};
    std::deque<struct nsbuf *> rxq;
    std::deque<struct nsbuf *> txq;   // frames the stack transmitted, oldest first
    uint32_t tx_room = UINT32_MAX;    // how many more frames tx_burst accepts

    bool inject(const Bytes &frame);  // false when the pool is empty
    std::vector<Bytes> take_tx();     // transmitted frames, copied out and freed
    void free_all();                  // drop whatever the harness holds
};

// Frame builders. Addresses are wire-order be32_t as in the stack's API.
Bytes eth_frame(const Mac &dst, const Mac &src, uint16_t type, const Bytes &payload);
Bytes arp_pkt(uint16_t op, const Mac &sha, be32_t spa, const Mac &tha, be32_t tpa);
struct IpOpt {
    uint8_t ttl = 64;
    uint16_t frag = NS_IPV4_DF;  // host order flags|offset
    int ihl = -1;                // words; -1: from options length
    int tot = -1;                // total length override
    bool bad_cksum = false;
    uint8_t version = 4;
    Bytes options;               // appended after the 20-byte header
};
Bytes ipv4_pkt(be32_t src, be32_t dst, uint8_t proto, const Bytes &payload, const IpOpt &o = IpOpt());
// UDP with a correct checksum (cksum_mode 0), zero checksum (1) or a wrong one (2); len override if >= 0.
Bytes udp_pkt(be32_t src, be32_t dst, uint16_t sport, uint16_t dport, const Bytes &payload, int cksum_mode = 0,
              int len_override = -1);
Bytes icmp_pkt(uint8_t type, uint8_t code, uint32_t rest, const Bytes &payload, bool bad_cksum = false);
Bytes str_bytes(const std::string &s);

// A parsed transmitted frame (fields in host order where numeric).
struct Parsed {
    bool ok = false;
    Mac dst{}, src{};
    uint16_t type = 0;
    Bytes l3;                     // after the Ethernet header, trimmed to IP total length for IPv4
    // IPv4
    bool ip_ok = false;
    const ns_ipv4_hdr *ip() const { return reinterpret_cast<const ns_ipv4_hdr *>(l3.data()); }
    Bytes l4;                     // IP payload
    // ARP
    const ns_arp_hdr *arp() const { return reinterpret_cast<const ns_arp_hdr *>(l3.data()); }
};
Parsed parse(const Bytes &frame);

// One stack on a fake device, talking to the test ("the peer" at 10.0.0.2).
class StackTest : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;
    // (Re)create the stack under test with cfg (defaults + ipA/mask/gateway if null).
    void make_stack(const struct ns_config *cfg = nullptr);
    void poll() { ns_poll(ns, now); }
    void advance(uint64_t ms) { now += ms * kMs; poll(); }
    void inject(const Bytes &frame) { ASSERT_TRUE(dev.inject(frame)); poll(); }
    std::vector<Bytes> tx() { return dev.take_tx(); }
    struct ns_stats stats() { struct ns_stats s; ns_stats_get(ns, &s); return s; }
    // A frame from the peer (kMacB / ipB) to us carrying an IPv4 payload.
    Bytes from_peer_ip(uint8_t proto, const Bytes &l4, const IpOpt &o = IpOpt());
    // Teach the stack the peer's MAC through an ARP request it answers; clears tx.
    void learn_peer();
    // A bound UDP socket on port; returns sd.
    int udp_bound(uint16_t port);

    FakeDev dev{kMacA};
    struct netstack *ns = nullptr;
    uint64_t now = 1000 * kMs;
};

// Two stacks on one wire (A 10.0.0.1, B 10.0.0.2); pump() moves frames until quiet.
class TwoStacks : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;
    void pump(int max_rounds = 100);
    FakeDev da{kMacA}, db{kMacB};
    struct netstack *a = nullptr, *b = nullptr;
    uint64_t now = 1000 * kMs;
};

#endif
