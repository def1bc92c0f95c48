// The conformance script language: its parsed form and the parser (script.cc); the
// runner (runner.cc) executes a Script against one netstack. Grammar: README.md here.
#ifndef NS_CONF_SCRIPT_H
#define NS_CONF_SCRIPT_H

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace conf {

// When a line happens, in ns. `lo` and `hi` equal unless the line gave a range (a~b).
// Relative times (+x) count from the previous line's actual time.
struct TimeSpec {
    bool lo_rel = false, hi_rel = false;
    uint64_t lo = 0, hi = 0;
    bool range = false;
};

// A number in a segment that an outbound line may leave open with '*'.
struct Num {
    bool any = false;
    uint32_t v = 0;
};

struct OptSpec {
    enum Kind { NOP, EOL, MSS, WSCALE, SACKOK, TS, SACK };
    Kind kind = NOP;
    Num val;                                  // MSS, WSCALE value; TS val
    Num ecr;                                  // TS ecr (inbound: '*' echoes the stack's last TS val)
    std::vector<std::pair<uint32_t, uint32_t>> blocks;  // SACK left:right, relative
};

struct SegSpec {
    bool inbound = false;
    int rport = -1;                           // @port: the remote peer's port; -1: the default flow
    uint8_t flags = 0;                        // NS_TCP_* bits
    uint32_t start = 0, end = 0;              // relative sequence numbers; end - start == payload length
    bool has_ack = false;
    Num ack;
    bool has_win = false;
    Num win;
    bool opts_any = false;                    // <...>
    std::vector<OptSpec> opts;                // empty and !opts_any: no options
};

// A socket call: [assign =] fn(args)[.field] [op expect].
struct CallSpec {
    std::string assign;
    std::string fn;
    std::vector<std::string> args;
    std::string field;                        // info(c).<field>
    std::string op;                           // "", "=", "!=", "<", "<=", ">", ">=", "&" (events: has bits)
    std::string expect;                       // raw text, interpreted by fn (see README.md)
};

struct Line {
    int lineno = 0;
    std::string text;                         // the source line, for messages
    TimeSpec time;
    bool is_seg = false;
    SegSpec seg;
    CallSpec call;
};

struct Script {
    std::string name;
    std::map<std::string, std::string> flags;  // --name=value lines before the first event
    std::vector<Line> lines;
};

// Parses a whole script. On error returns false and sets *err to "line N: what".
bool parse_script(const std::string &text, Script *out, std::string *err);
// Parses one event line (without the time) into *line; for tests and parse_script.
bool parse_event(const std::string &body, Line *line, std::string *err);
// Seconds as text ("0.25", "1", "+0.010" without the sign) to ns; false when malformed.
bool parse_seconds(const std::string &s, uint64_t *ns);
// Errno names used in scripts ("EAGAIN") to their positive value, and back.
bool errno_by_name(const std::string &name, int *val);
std::string errno_name(int val);
// The payload byte at stream offset k, for both directions: data is checked end to end.
inline uint8_t pattern_byte(uint64_t k) { return uint8_t(k % 251u); }

}  // namespace conf

#endif
