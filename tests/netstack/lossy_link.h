// A lossy in-memory Ethernet link between two netstacks on a virtual clock, for transfer tests
// and the benchmark: per direction a seeded PRNG decides loss, duplication, reordering, delay
// with jitter, single-word bit corruption and an optional rate/queue limit; LinkPair drives both
// stacks' ns_poll and jumps the clock to the next event (a delivery or ns_next_timer).
// NS_LINK_TRACE=1 in the environment prints every frame (time, direction, fate, TCP header).
#ifndef NS_TEST_LOSSY_LINK_H
#define NS_TEST_LOSSY_LINK_H

#include <cstdint>
#include <functional>
#include <queue>
#include <string>
#include <vector>

extern "C" {
#include "netstack.h"
}

// What one direction of the link does to each frame; probabilities in [0, 1], drawn independently.
struct LinkParams {
    double loss = 0;             // frame vanishes
    double dup = 0;              // frame delivered twice (the copy with its own delay)
    double reorder = 0;          // frame held back by reorder_ns more, so later ones overtake it
    double corrupt = 0;          // 1-3 bits flipped inside one 16-bit word (always caught by the
                                 // Internet checksum; a real NIC's CRC would catch wider damage)
    uint64_t delay_ns = 0;       // fixed one-way delay
    uint64_t jitter_ns = 0;      // plus uniform [0, jitter_ns]
    uint64_t reorder_ns = 300000;
    uint64_t rate_bps = 0;       // serialization rate; 0: unlimited
    uint32_t queue_bytes = 0;    // with rate_bps: tail drop when this much waits to be serialized; 0: unlimited
};

struct LinkStats {
    uint64_t frames = 0, bytes = 0;  // handed to the link by the sender
    uint64_t delivered = 0;          // handed to the receiver's rx_burst
    uint64_t lost = 0, duplicated = 0, reordered = 0, corrupted = 0, queue_drops = 0;
    uint64_t rx_nobuf = 0;           // dropped: the receiver's pool was empty on delivery
};

class LossyLink {
public:
    // Side 0 and side 1, each with its own buffer pool; dir 0 is 0 -> 1.
    LossyLink(uint64_t seed, const LinkParams &p01, const LinkParams &p10, uint32_t nbufs = 4096,
              uint32_t mtu = 1500);
    ~LossyLink();
    LossyLink(const LossyLink &) = delete;
    LossyLink &operator=(const LossyLink &) = delete;

    struct netdev *dev(int side) { return &side_[side].dev; }
    struct nsbuf_pool *pool(int side) { return &side_[side].pool; }
    const LinkStats &stats(int dir) const { return dir_[dir].st; }
    LinkParams &params(int dir) { return dir_[dir].p; }

    uint64_t now = 0;            // the virtual clock; the driver moves it forward only
    // Earliest pending delivery time over both directions, UINT64_MAX if nothing is in flight.
    uint64_t next_delivery() const;
    // Frames in flight (both directions).
    size_t in_flight() const { return dir_[0].q.size() + dir_[1].q.size(); }
    // Frames due now for side `side` (its rx_burst would return them).
    bool rx_due(int side) const;
    // Drop everything in flight (before destroying the stacks' pools).
    void drain();
    std::string describe() const;

private:
    struct Frame {
        uint64_t at;             // delivery time
        uint64_t seq;            // FIFO among equal times
        struct nsbuf *buf;       // the sender's buffer (a reference), or a private copy
        bool corrupt;
        bool operator>(const Frame &o) const { return at != o.at ? at > o.at : seq > o.seq; }
    };
    struct Dir {
        LinkParams p;
        uint64_t rng;
        uint64_t busy_until = 0; // serialization: when the wire is free again
        uint64_t queued_bytes = 0;
        std::priority_queue<Frame, std::vector<Frame>, std::greater<Frame>> q;
        LinkStats st;
    };
    struct Side {
        LossyLink *link;
        int idx;
        struct netdev dev {};
        struct nsbuf_pool pool {};
    };
    static uint16_t rx_burst(struct netdev *d, struct nsbuf **bufs, uint16_t n);
    static uint16_t tx_burst(struct netdev *d, struct nsbuf **bufs, uint16_t n);
    static struct nsbuf *buf_alloc(struct netdev *d);
    static void buf_free(struct netdev *d, struct nsbuf *b);
    void send(int dir, struct nsbuf *b);
    uint64_t next_u64(Dir &d);
    double next_unit(Dir &d);
    void release(struct nsbuf *b);

    Dir dir_[2];
    Side side_[2];
    uint64_t seq_ = 0;
};

// Two stacks (10.0.0.1 on side 0, 10.0.0.2 on side 1) over a LossyLink, and the event loop.
class LinkPair {
public:
    LinkPair(uint64_t seed, const LinkParams &p01, const LinkParams &p10, enum ns_cc_algo cc = NS_CC_CUBIC,
             bool static_arp = true, uint32_t nbufs = 4096);
    ~LinkPair();
    LinkPair(const LinkPair &) = delete;
    LinkPair &operator=(const LinkPair &) = delete;

    // One round at the current time: app() (user work on both stacks; returns true if it made
    // progress), then ns_poll on both. Returns true if anything happened (a frame moved, the
    // app progressed); otherwise the clock jumps to the next event. Returns false when there
    // is no next event at all (everything idle forever).
    bool step(const std::function<bool()> &app);
    // Run until done() or limits; false (with why filled) if a limit was hit or idle forever.
    bool run(const std::function<bool()> &app, const std::function<bool()> &done, uint64_t max_virtual_ns,
             uint64_t max_iters, std::string *why);
    // Let virtual time pass (timers fire) with no app work.
    void idle_for(uint64_t ns);
    std::string stack_counters(int side) const;

    LossyLink link;
    struct netstack *ns[2] = {nullptr, nullptr};
    uint64_t iters = 0;
    uint64_t start_ns = 0;

private:
    uint64_t delivered_total() const;
    uint64_t frames_total() const;
};

inline uint64_t splitmix64(uint64_t &x)
{
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
