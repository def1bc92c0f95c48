// Unit tests of the conformance script parser: times, segments, options, calls, and the
// errors a script author gets (with the line number) for malformed lines.
#include <gtest/gtest.h>

#include "script.h"

extern "C" {
#include "prot/tcp.h"
}

using conf::Line;
using conf::OptSpec;
using conf::Script;

namespace {

Line ev(const std::string &body)
{
    Line l;
    std::string err;
    EXPECT_TRUE(conf::parse_event(body, &l, &err)) << body << ": " << err;
    return l;
}

std::string ev_err(const std::string &body)
{
    Line l;
    std::string err;
    EXPECT_FALSE(conf::parse_event(body, &l, &err)) << body;
    return err;
}

std::string script_err(const std::string &text)
{
    Script sc;
    std::string err;
    EXPECT_FALSE(conf::parse_script(text, &sc, &err)) << text;
    return err;
}

}  // namespace

TEST(ConfParser, Seconds)
{
    uint64_t ns = 1;
    EXPECT_TRUE(conf::parse_seconds("0", &ns));
    EXPECT_EQ(ns, 0u);
    EXPECT_TRUE(conf::parse_seconds("0.25", &ns));
    EXPECT_EQ(ns, 250000000u);
    EXPECT_TRUE(conf::parse_seconds("12.000000001", &ns));
    EXPECT_EQ(ns, 12000000001u);
    EXPECT_TRUE(conf::parse_seconds("7200", &ns));
    EXPECT_EQ(ns, 7200000000000u);
    for (const char *bad : {"", ".5", "1.", "1.0000000001", "-1", "1e3", "0x10", "1.2.3"})
        EXPECT_FALSE(conf::parse_seconds(bad, &ns)) << bad;
}

TEST(ConfParser, InboundSynWithOptions)
{
    Line l = ev("< S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>");
    ASSERT_TRUE(l.is_seg);
    const conf::SegSpec &s = l.seg;
    EXPECT_TRUE(s.inbound);
    EXPECT_EQ(s.rport, -1);
    EXPECT_EQ(s.flags, NS_TCP_SYN);
    EXPECT_EQ(s.start, 0u);
    EXPECT_EQ(s.end, 0u);
    EXPECT_FALSE(s.has_ack);
    EXPECT_TRUE(s.has_win);
    EXPECT_EQ(s.win.v, 65535u);
    ASSERT_EQ(s.opts.size(), 5u);
    EXPECT_EQ(s.opts[0].kind, OptSpec::MSS);
    EXPECT_EQ(s.opts[0].val.v, 1460u);
    EXPECT_EQ(s.opts[1].kind, OptSpec::SACKOK);
    EXPECT_EQ(s.opts[2].kind, OptSpec::TS);
    EXPECT_EQ(s.opts[2].val.v, 100u);
    EXPECT_EQ(s.opts[2].ecr.v, 0u);
    EXPECT_EQ(s.opts[3].kind, OptSpec::NOP);
    EXPECT_EQ(s.opts[4].kind, OptSpec::WSCALE);
    EXPECT_EQ(s.opts[4].val.v, 7u);
}

TEST(ConfParser, OutboundWildcards)
{
    Line l = ev("> @8081 S. 0:0(0) ack 1 win * <...>");
    const conf::SegSpec &s = l.seg;
    EXPECT_FALSE(s.inbound);
    EXPECT_EQ(s.rport, 8081);
    EXPECT_EQ(s.flags, NS_TCP_SYN | NS_TCP_ACK);
    EXPECT_TRUE(s.has_ack);
    EXPECT_EQ(s.ack.v, 1u);
    EXPECT_TRUE(s.win.any);
    EXPECT_TRUE(s.opts_any);

    Line t = ev("> . 1:1(0) ack 1001 <nop,nop,TS val * ecr 700>");
    ASSERT_EQ(t.seg.opts.size(), 3u);
    EXPECT_TRUE(t.seg.opts[2].val.any);
    EXPECT_FALSE(t.seg.opts[2].ecr.any);
    EXPECT_FALSE(t.seg.has_win);
    EXPECT_FALSE(t.seg.opts_any);

    Line n = ev("> P. 1:1001(1000) ack 1");
    EXPECT_TRUE(n.seg.opts.empty());
    EXPECT_FALSE(n.seg.opts_any);
    EXPECT_EQ(n.seg.end - n.seg.start, 1000u);
}

TEST(ConfParser, SackBlocksAndWrappingRange)
{
    Line l = ev("< . 1:1(0) ack 1 win 1000 <nop,nop,sack 2001:3001 4001:5001>");
    ASSERT_EQ(l.seg.opts.size(), 3u);
    ASSERT_EQ(l.seg.opts[2].blocks.size(), 2u);
    EXPECT_EQ(l.seg.opts[2].blocks[1].first, 4001u);
    EXPECT_EQ(l.seg.opts[2].blocks[1].second, 5001u);
    Line w = ev("< . 4294967000:704(1000) ack 1");
    EXPECT_EQ(w.seg.end - w.seg.start, 1000u);
}

TEST(ConfParser, InboundEcrMayEchoTheLastValue)
{
    Line l = ev("< . 1:1(0) ack 1 <nop,nop,TS val 200 ecr *>");
    EXPECT_TRUE(l.seg.opts[2].ecr.any);
    EXPECT_NE(ev_err("< . 1:1(0) ack 1 <nop,nop,TS val * ecr 1>"), "");
}

TEST(ConfParser, SegmentErrors)
{
    EXPECT_NE(ev_err("< S 0:10(5) win 100").find("len"), std::string::npos);
    EXPECT_NE(ev_err("< SX 0:0(0)").find("flags"), std::string::npos);
    EXPECT_NE(ev_err("< S 0:0(0) ack 1").find("'.'"), std::string::npos);
    EXPECT_NE(ev_err("> . 1:1(0)").find("ack value"), std::string::npos);
    EXPECT_NE(ev_err("< . 1:1(0) ack *").find("ack"), std::string::npos);  // no wildcards inbound
    EXPECT_NE(ev_err("< . 1:1(0) ack 1 win 70000").find("win"), std::string::npos);
    EXPECT_NE(ev_err("< S 0:0(0) <...>").find("outbound"), std::string::npos);
    EXPECT_NE(ev_err("< S 0:0(0) <mss>").find("option"), std::string::npos);
    EXPECT_NE(ev_err("< S 0:0(0) <foo 1>").find("option"), std::string::npos);
    EXPECT_NE(ev_err("< @0 S 0:0(0)").find("port"), std::string::npos);
    EXPECT_NE(ev_err("< S").find("start:end"), std::string::npos);
    EXPECT_NE(ev_err("< S 0:0(0) bogus 1").find("bogus"), std::string::npos);
    EXPECT_NE(ev_err("< S 0:0(0) <mss 1460> win 5").find("end"), std::string::npos);
}

TEST(ConfParser, Calls)
{
    Line s = ev("s = socket");
    EXPECT_FALSE(s.is_seg);
    EXPECT_EQ(s.call.assign, "s");
    EXPECT_EQ(s.call.fn, "socket");
    EXPECT_TRUE(s.call.args.empty());

    Line a = ev("c = accept(s)");
    EXPECT_EQ(a.call.assign, "c");
    EXPECT_EQ(a.call.fn, "accept");
    ASSERT_EQ(a.call.args.size(), 1u);
    EXPECT_EQ(a.call.args[0], "s");
    EXPECT_EQ(a.call.op, "");

    Line e = ev("accept(s) = -EAGAIN");
    EXPECT_EQ(e.call.assign, "");
    EXPECT_EQ(e.call.op, "=");
    EXPECT_EQ(e.call.expect, "-EAGAIN");

    Line c = ev("connect(s, 192.0.2.1:8080) = -EINPROGRESS");
    ASSERT_EQ(c.call.args.size(), 2u);
    EXPECT_EQ(c.call.args[1], "192.0.2.1:8080");

    Line i = ev("info(c).cwnd >= 14600");
    EXPECT_EQ(i.call.fn, "info");
    EXPECT_EQ(i.call.field, "cwnd");
    EXPECT_EQ(i.call.op, ">=");
    EXPECT_EQ(i.call.expect, "14600");

    Line v = ev("events(c) == IN|OUT");
    EXPECT_EQ(v.call.op, "=");
    EXPECT_EQ(v.call.expect, "IN|OUT");

    Line h = ev("events(c) & OUT|ERR");
    EXPECT_EQ(h.call.op, "&");
    EXPECT_EQ(h.call.expect, "OUT|ERR");

    Line o = ev("setsockopt(c, TCP_NODELAY, 1) = 0");
    ASSERT_EQ(o.call.args.size(), 3u);
    EXPECT_EQ(o.call.args[2], "1");
}

TEST(ConfParser, CallErrors)
{
    EXPECT_NE(ev_err("frobnicate(s)").find("unknown call"), std::string::npos);
    EXPECT_NE(ev_err("send(s)").find("argument"), std::string::npos);
    EXPECT_NE(ev_err("x = send(s, 1)").find("no socket"), std::string::npos);
    EXPECT_NE(ev_err("socket").find("name"), std::string::npos);
    EXPECT_NE(ev_err("info(c)").find("field"), std::string::npos);
    EXPECT_NE(ev_err("info(c).cwnd").find("comparison"), std::string::npos);
    EXPECT_NE(ev_err("events(c).x = 1").find("field"), std::string::npos);
    EXPECT_NE(ev_err("close(c) 0").find("expected"), std::string::npos);
    EXPECT_NE(ev_err("close(c").find(")"), std::string::npos);
    EXPECT_NE(ev_err("send(c, ) = 1").find("argument"), std::string::npos);
    EXPECT_NE(ev_err("1x = socket").find("name"), std::string::npos);
    EXPECT_NE(ev_err("recv(c, 1) & 1").find("events"), std::string::npos);
}

TEST(ConfParser, WholeScript)
{
    Script sc;
    std::string err;
    const char *text =
        "// passive open\n"
        "--tolerance=0.002   # tighter\n"
        "--cc=newreno\n"
        "\n"
        "0     s = socket\n"
        "+0    bind(s, 8080) = 0\n"
        "+0    listen(s, 1) = 0\n"
        "0.100 < S 0:0(0) win 65535 <mss 1460>\n"
        "+0    > S. 0:0(0) ack 1 <mss 1460>\n"
        "+0.9~+1.1 > S. 0:0(0) ack 1 <mss 1460>  // retransmitted\n";
    ASSERT_TRUE(conf::parse_script(text, &sc, &err)) << err;
    EXPECT_EQ(sc.flags.at("tolerance"), "0.002");
    EXPECT_EQ(sc.flags.at("cc"), "newreno");
    ASSERT_EQ(sc.lines.size(), 6u);
    EXPECT_EQ(sc.lines[0].lineno, 5);
    EXPECT_FALSE(sc.lines[0].time.lo_rel);
    EXPECT_TRUE(sc.lines[1].time.lo_rel);
    EXPECT_EQ(sc.lines[3].time.lo, 100000000u);
    const conf::TimeSpec &r = sc.lines[5].time;
    EXPECT_TRUE(r.range);
    EXPECT_TRUE(r.lo_rel && r.hi_rel);
    EXPECT_EQ(r.lo, 900000000u);
    EXPECT_EQ(r.hi, 1100000000u);
    EXPECT_EQ(sc.lines[5].text, "+0.9~+1.1 > S. 0:0(0) ack 1 <mss 1460>  // retransmitted");
}

TEST(ConfParser, ScriptErrorsNameTheLine)
{
    EXPECT_EQ(script_err("0 s = socket\n--cc=cubic\n"), "line 2: --flags must come before the first event");
    EXPECT_EQ(script_err("\nfoo s = socket\n"), "line 2: expected a time (0.100, +0.010 or a~b) first");
    EXPECT_EQ(script_err("0~1 s = socket\n"), "line 1: a time range only fits an outbound segment");
    EXPECT_EQ(script_err("0~1 < S 0:0(0)\n"), "line 1: a time range only fits an outbound segment");
    EXPECT_EQ(script_err("// nothing\n"), "no events");
    EXPECT_EQ(script_err("--x\n"), "line 1: expected --name=value");
    EXPECT_NE(script_err("0 < Q 0:0(0)\n").find("line 1: bad flags"), std::string::npos);
}

TEST(ConfParser, Errnos)
{
    int v = 0;
    EXPECT_TRUE(conf::errno_by_name("ECONNREFUSED", &v));
    EXPECT_EQ(conf::errno_name(v), "ECONNREFUSED");
    EXPECT_FALSE(conf::errno_by_name("EWHATEVER", &v));
    EXPECT_EQ(conf::errno_name(99999), "99999");
}
