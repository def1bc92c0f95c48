// Parser for conformance scripts: text -> conf::Script. Only syntax and the shape of each
// call are checked here; values that depend on the stack (errno names, states) are resolved
// by the runner, which still reports them with the script line.
#include "script.h"

#include <cerrno>
#include <cctype>
#include <sstream>

extern "C" {
#include "prot/tcp.h"
}

namespace conf {
namespace {

std::string trim(const std::string &s)
{
    size_t b = 0, e = s.size();
    while (b < e && isspace(static_cast<unsigned char>(s[b])))
        b++;
    while (e > b && isspace(static_cast<unsigned char>(s[e - 1])))
        e--;
    return s.substr(b, e - b);
}

std::vector<std::string> split_ws(const std::string &s)
{
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string t;
    while (in >> t)
        out.push_back(t);
    return out;
}

std::vector<std::string> split_on(const std::string &s, char c)
{
    std::vector<std::string> out;
    std::string cur;
    for (char ch : s) {
        if (ch == c) {
            out.push_back(trim(cur));
            cur.clear();
        } else {
            cur += ch;
        }
    }
    out.push_back(trim(cur));
    return out;
}

bool parse_u32(const std::string &s, uint32_t *v)
{
    if (s.empty() || s.size() > 10)
        return false;
    uint64_t x = 0;
    for (char c : s) {
        if (!isdigit(static_cast<unsigned char>(c)))
            return false;
        x = x * 10 + uint64_t(c - '0');
    }
    if (x > UINT32_MAX)
        return false;
    *v = uint32_t(x);
    return true;
}

bool parse_num(const std::string &s, Num *n, bool allow_any)
{
    if (s == "*") {
        n->any = true;
        return allow_any;
    }
    n->any = false;
    return parse_u32(s, &n->v);
}

// "a:b(len)" with b - a == len (mod 2^32, so ranges may wrap like the sequence space).
bool parse_seq(const std::string &s, uint32_t *a, uint32_t *b)
{
    size_t colon = s.find(':'), lp = s.find('('), rp = s.find(')');
    if (colon == std::string::npos || lp == std::string::npos || rp != s.size() - 1 || lp < colon)
        return false;
    uint32_t len;
    if (!parse_u32(s.substr(0, colon), a) || !parse_u32(s.substr(colon + 1, lp - colon - 1), b) ||
        !parse_u32(s.substr(lp + 1, rp - lp - 1), &len))
        return false;
    return *b - *a == len;
}

bool parse_opts(const std::string &body, SegSpec *seg, bool inbound, std::string *err)
{
    if (trim(body) == "...") {
        if (inbound) {
            *err = "<...> only matches outbound segments";
            return false;
        }
        seg->opts_any = true;
        return true;
    }
    for (const std::string &item : split_on(body, ',')) {
        std::vector<std::string> w = split_ws(item);
        OptSpec o;
        bool ok = !w.empty();
        if (!ok) {
        } else if (w[0] == "nop" && w.size() == 1) {
            o.kind = OptSpec::NOP;
        } else if (w[0] == "eol" && w.size() == 1) {
            o.kind = OptSpec::EOL;
        } else if (w[0] == "sackOK" && w.size() == 1) {
            o.kind = OptSpec::SACKOK;
        } else if (w[0] == "mss" && w.size() == 2) {
            o.kind = OptSpec::MSS;
            ok = parse_num(w[1], &o.val, !inbound) && o.val.v <= 0xffff;
        } else if (w[0] == "wscale" && w.size() == 2) {
            o.kind = OptSpec::WSCALE;
            ok = parse_num(w[1], &o.val, !inbound) && o.val.v <= 0xff;
        } else if (w[0] == "TS" && w.size() == 5 && w[1] == "val" && w[3] == "ecr") {
            o.kind = OptSpec::TS;
            // An inbound ecr may be '*': echo whatever the stack sent last.
            ok = parse_num(w[2], &o.val, !inbound) && parse_num(w[4], &o.ecr, true);
        } else if (w[0] == "sack" && w.size() >= 2 && w.size() <= 5) {
            o.kind = OptSpec::SACK;
            for (size_t i = 1; ok && i < w.size(); i++) {
                size_t c = w[i].find(':');
                uint32_t l, r;
                ok = c != std::string::npos && parse_u32(w[i].substr(0, c), &l) &&
                     parse_u32(w[i].substr(c + 1), &r);
                if (ok)
                    o.blocks.emplace_back(l, r);
            }
        } else {
            ok = false;
        }
        if (!ok) {
            *err = "bad option '" + item + "'";
            return false;
        }
        seg->opts.push_back(o);
    }
    return true;
}

bool parse_segment(const std::string &body, SegSpec *seg, std::string *err)
{
    seg->inbound = body[0] == '<';
    std::string rest = body.substr(1);
    std::string opts;
    size_t lt = rest.find('<');
    if (lt != std::string::npos) {
        size_t gt = rest.rfind('>');
        if (gt == std::string::npos || gt < lt || !trim(rest.substr(gt + 1)).empty()) {
            *err = "options must be one <...> group at the end";
            return false;
        }
        opts = rest.substr(lt + 1, gt - lt - 1);
        rest = rest.substr(0, lt);
    }
    std::vector<std::string> w = split_ws(rest);
    size_t i = 0;
    if (i < w.size() && w[i][0] == '@') {
        uint32_t p;
        if (!parse_u32(w[i].substr(1), &p) || p == 0 || p > 65535) {
            *err = "bad remote port '" + w[i] + "'";
            return false;
        }
        seg->rport = int(p);
        i++;
    }
    if (i >= w.size()) {
        *err = "missing flags";
        return false;
    }
    for (char c : w[i]) {
        switch (c) {
        case 'S': seg->flags |= NS_TCP_SYN; break;
        case 'F': seg->flags |= NS_TCP_FIN; break;
        case 'R': seg->flags |= NS_TCP_RST; break;
        case 'P': seg->flags |= NS_TCP_PSH; break;
        case '.': seg->flags |= NS_TCP_ACK; break;
        case 'U': seg->flags |= NS_TCP_URG; break;
        case 'E': seg->flags |= NS_TCP_ECE; break;
        case 'W': seg->flags |= NS_TCP_CWR; break;
        default:
            *err = "bad flags '" + w[i] + "' (use S . F R P U E W)";
            return false;
        }
    }
    i++;
    if (i >= w.size() || !parse_seq(w[i], &seg->start, &seg->end)) {
        *err = "expected start:end(len) with end - start == len";
        return false;
    }
    i++;
    while (i < w.size()) {
        const std::string &k = w[i];
        if ((k != "ack" && k != "win") || i + 1 >= w.size()) {
            *err = "unexpected '" + k + "' (ack N, win N, <options>)";
            return false;
        }
        Num n;
        if (!parse_num(w[i + 1], &n, !seg->inbound) || (k == "win" && n.v > 0xffff)) {
            *err = "bad " + k + " value '" + w[i + 1] + "'";
            return false;
        }
        if (k == "ack") {
            seg->has_ack = true;
            seg->ack = n;
        } else {
            seg->has_win = true;
            seg->win = n;
        }
        i += 2;
    }
    if (seg->has_ack != bool(seg->flags & NS_TCP_ACK)) {
        *err = seg->has_ack ? "ack given without the '.' flag" : "the '.' flag needs an ack value";
        return false;
    }
    if (lt != std::string::npos)
        return parse_opts(opts, seg, seg->inbound, err);
    return true;
}

struct FnShape {
    const char *name;
    int nargs;
    bool assign;      // may assign a socket name
    bool field;       // takes .field
};
const FnShape kFns[] = {
    {"socket", 0, true, false},   {"bind", 2, false, false},       {"listen", 2, false, false},
    {"accept", 1, true, false},   {"connect", 2, false, false},    {"send", 2, false, false},
    {"recv", 2, false, false},    {"close", 1, false, false},      {"shutdown", 2, false, false},
    {"setsockopt", 3, false, false}, {"getsockopt", 2, false, false}, {"events", 1, false, false},
    {"info", 1, false, true},     {"stat", 1, false, false},       {"getpeername", 1, false, false},
    {"getsockname", 1, false, false},
};

bool is_ident(const std::string &s)
{
    if (s.empty() || !(isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_'))
        return false;
    for (char c : s)
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '_'))
            return false;
    return true;
}

bool parse_call(const std::string &body, CallSpec *call, std::string *err)
{
    std::string s = body;
    // "name = fn(...)": an assignment precedes the call's own '(' (result comparisons follow it).
    size_t paren = s.find('('), eq = s.find('=');
    if (eq != std::string::npos && (paren == std::string::npos || eq < paren)) {
        call->assign = trim(s.substr(0, eq));
        if (!is_ident(call->assign)) {
            *err = "bad socket name '" + call->assign + "'";
            return false;
        }
        s = trim(s.substr(eq + 1));
        paren = s.find('(');
    }
    std::string after;
    if (paren == std::string::npos) {
        // "s = socket" without parentheses.
        call->fn = trim(s);
    } else {
        call->fn = trim(s.substr(0, paren));
        size_t close = s.find(')', paren);
        if (close == std::string::npos) {
            *err = "missing ')'";
            return false;
        }
        std::string args = trim(s.substr(paren + 1, close - paren - 1));
        if (!args.empty())
            call->args = split_on(args, ',');
        after = trim(s.substr(close + 1));
    }
    const FnShape *shape = nullptr;
    for (const FnShape &f : kFns)
        if (call->fn == f.name)
            shape = &f;
    if (!shape) {
        *err = "unknown call '" + call->fn + "'";
        return false;
    }
    if (int(call->args.size()) != shape->nargs) {
        *err = call->fn + " takes " + std::to_string(shape->nargs) + " argument(s)";
        return false;
    }
    for (const std::string &a : call->args)
        if (a.empty()) {
            *err = "empty argument";
            return false;
        }
    if (!call->assign.empty() && !shape->assign) {
        *err = call->fn + " returns no socket to name";
        return false;
    }
    if (call->fn == "socket" && call->assign.empty()) {
        *err = "socket needs a name: s = socket";
        return false;
    }
    if (!after.empty() && after[0] == '.') {
        size_t e = 1;
        while (e < after.size() && (isalnum(static_cast<unsigned char>(after[e])) || after[e] == '_'))
            e++;
        call->field = after.substr(1, e - 1);
        after = trim(after.substr(e));
    }
    if (shape->field != !call->field.empty()) {
        *err = shape->field ? "info needs a field: info(c).cwnd" : "only info takes a .field";
        return false;
    }
    if (!after.empty()) {
        static const char *ops[] = {"<=", ">=", "!=", "==", "=", "<", ">", "&"};
        for (const char *op : ops) {
            std::string o = op;
            if (after.compare(0, o.size(), o) == 0) {
                call->op = o == "==" ? "=" : o;
                call->expect = trim(after.substr(o.size()));
                break;
            }
        }
        if (call->op.empty() || call->expect.empty()) {
            *err = "expected '= value' (or != < <= > >=) after the call, got '" + after + "'";
            return false;
        }
    }
    if (call->op == "&" && call->fn != "events") {
        *err = "'&' (has these bits) only fits events()";
        return false;
    }
    if (shape->field && call->op.empty()) {
        *err = "info(...).field needs a comparison";
        return false;
    }
    if (call->fn == "stat" && call->op.empty()) {
        *err = "stat(name) needs a comparison";
        return false;
    }
    return true;
}

bool parse_time(const std::string &tok, TimeSpec *t)
{
    auto one = [](std::string s, bool *rel, uint64_t *v) {
        *rel = !s.empty() && s[0] == '+';
        if (*rel)
            s = s.substr(1);
        return parse_seconds(s, v);
    };
    size_t tilde = tok.find('~');
    if (tilde == std::string::npos) {
        if (!one(tok, &t->lo_rel, &t->lo))
            return false;
        t->hi_rel = t->lo_rel;
        t->hi = t->lo;
        return true;
    }
    t->range = true;
    return one(tok.substr(0, tilde), &t->lo_rel, &t->lo) && one(tok.substr(tilde + 1), &t->hi_rel, &t->hi);
}

}  // namespace

bool parse_seconds(const std::string &s, uint64_t *ns)
{
    if (s.empty())
        return false;
    uint64_t whole = 0, frac = 0;
    size_t i = 0, nint = 0, nfrac = 0;
    for (; i < s.size() && isdigit(static_cast<unsigned char>(s[i])); i++, nint++) {
        whole = whole * 10 + uint64_t(s[i] - '0');
        if (whole > 1000000000ull)
            return false;
    }
    if (i < s.size() && s[i] == '.') {
        for (i++; i < s.size() && isdigit(static_cast<unsigned char>(s[i])); i++, nfrac++) {
            if (nfrac >= 9)
                return false;
            frac = frac * 10 + uint64_t(s[i] - '0');
        }
        if (nfrac == 0)
            return false;
    }
    if (i != s.size() || nint == 0)
        return false;
    for (size_t k = nfrac; k < 9; k++)
        frac *= 10;
    *ns = whole * 1000000000ull + frac;
    return true;
}

namespace {
const std::pair<const char *, int> kErrnos[] = {
    {"EAGAIN", EAGAIN},         {"EINPROGRESS", EINPROGRESS}, {"ECONNREFUSED", ECONNREFUSED},
    {"ECONNRESET", ECONNRESET}, {"ECONNABORTED", ECONNABORTED}, {"ETIMEDOUT", ETIMEDOUT},
    {"EPIPE", EPIPE},           {"ENOTCONN", ENOTCONN},       {"EISCONN", EISCONN},
    {"EALREADY", EALREADY},     {"EADDRINUSE", EADDRINUSE},   {"EADDRNOTAVAIL", EADDRNOTAVAIL},
    {"EINVAL", EINVAL},         {"EBADF", EBADF},             {"ENOSYS", ENOSYS},
    {"EHOSTUNREACH", EHOSTUNREACH}, {"ENETUNREACH", ENETUNREACH}, {"EMSGSIZE", EMSGSIZE},
    {"ENOBUFS", ENOBUFS},       {"ENOMEM", ENOMEM},           {"EOPNOTSUPP", EOPNOTSUPP},
    {"ENOPROTOOPT", ENOPROTOOPT}, {"EMFILE", EMFILE},
};
}  // namespace

bool errno_by_name(const std::string &name, int *val)
{
    for (const auto &e : kErrnos)
        if (name == e.first) {
            *val = e.second;
            return true;
        }
    return false;
}

std::string errno_name(int val)
{
    for (const auto &e : kErrnos)
        if (val == e.second)
            return e.first;
    return std::to_string(val);
}

bool parse_event(const std::string &body, Line *line, std::string *err)
{
    std::string b = trim(body);
    if (b.empty()) {
        *err = "missing event after the time";
        return false;
    }
    if (b[0] == '<' || b[0] == '>') {
        line->is_seg = true;
        return parse_segment(b, &line->seg, err);
    }
    line->is_seg = false;
    return parse_call(b, &line->call, err);
}

bool parse_script(const std::string &text, Script *out, std::string *err)
{
    std::istringstream in(text);
    std::string raw;
    int lineno = 0;
    while (std::getline(in, raw)) {
        lineno++;
        std::string s = raw;
        size_t c = s.find("//");
        if (c != std::string::npos)
            s = s.substr(0, c);
        c = s.find('#');
        if (c != std::string::npos)
            s = s.substr(0, c);
        s = trim(s);
        if (s.empty())
            continue;
        if (s.compare(0, 2, "--") == 0) {
            if (!out->lines.empty()) {
                *err = "line " + std::to_string(lineno) + ": --flags must come before the first event";
                return false;
            }
            size_t eq = s.find('=');
            if (eq == std::string::npos || eq == 2) {
                *err = "line " + std::to_string(lineno) + ": expected --name=value";
                return false;
            }
            out->flags[s.substr(2, eq - 2)] = trim(s.substr(eq + 1));
            continue;
        }
        Line line;
        line.lineno = lineno;
        line.text = trim(raw);
        size_t sp = s.find_first_of(" \t");
        std::string e;
        if (sp == std::string::npos || !parse_time(s.substr(0, sp), &line.time)) {
            *err = "line " + std::to_string(lineno) + ": expected a time (0.100, +0.010 or a~b) first";
            return false;
        }
        if (!parse_event(s.substr(sp + 1), &line, &e)) {
            *err = "line " + std::to_string(lineno) + ": " + e;
            return false;
        }
        if (line.time.range && !line.is_seg) {
            *err = "line " + std::to_string(lineno) + ": a time range only fits an outbound segment";
            return false;
        }
        if (line.time.range && line.seg.inbound) {
            *err = "line " + std::to_string(lineno) + ": a time range only fits an outbound segment";
            return false;
        }
        out->lines.push_back(line);
    }
    if (out->lines.empty()) {
        *err = "no events";
        return false;
    }
    return true;
}

}  // namespace conf
