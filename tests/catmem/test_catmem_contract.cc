// The API contract of pipes on catmem (the socket-centric battery in tests/contract does not apply: catmem has no sockets): names, EEXIST/ENOENT/EBUSY, bad qds and sgas, close cancelling pending pops.
#include <gtest/gtest.h>

#include "common.h"

using namespace cmtest;

namespace {

void expect_child_ok(const ChildResult &r)
{
    if (r.skipped())
        GTEST_SKIP() << skip_note();
    EXPECT_TRUE(r.ok()) << r.describe();
}

TEST(CatmemContract, NamesAreValidated)
{
    auto r = run_one([] {
        child_init("catmem");
        int qd;
        CHECK(demi_create_pipe(&qd, "") == EINVAL, "empty name");
        std::string longname(65, 'a');
        CHECK(demi_create_pipe(&qd, longname.c_str()) == EINVAL, "65 characters");
        for (const char *bad : {"a/b", "a b", "..", ".", "x\n", "caf\xc3\xa9", "a*"})
            CHECK(demi_create_pipe(&qd, bad) == EINVAL && demi_open_pipe(&qd, bad) == EINVAL, "name '%s'", bad);
        std::string ok64 = unique_name("n");
        ok64.resize(64, 'z');
        CHECK_DEMI(demi_create_pipe(&qd, ok64.c_str()));
        CHECK_DEMI(demi_close(qd));
        std::string chars = unique_name("Az09._-");
        CHECK_DEMI(demi_create_pipe(&qd, chars.c_str()));
        CHECK_DEMI(demi_close(qd));
        CHECK(demi_create_pipe(&qd, NULL) == EINVAL, "NULL name");
        return kExitOk;
    });
    expect_child_ok(r);
}

TEST(CatmemContract, ExistsMissingBusyAndMode)
{
    auto r = run_one([] {
        child_init("catmem");
        std::string name = unique_name("c");
        int a, b, c, d;
        CHECK(demi_open_pipe(&a, name.c_str()) == ENOENT, "open of a missing pipe");
        CHECK_DEMI(demi_create_pipe(&a, name.c_str()));
        struct stat st;
        CHECK(stat(shm_path(name).c_str(), &st) == 0, "stat: %s", strerror(errno));
        CHECK((st.st_mode & 0777) == 0600 && st.st_uid == geteuid(), "mode %o uid %u", st.st_mode & 0777,
              (unsigned)st.st_uid);
        CHECK(demi_create_pipe(&b, name.c_str()) == EEXIST, "second create");
        CHECK_DEMI(demi_open_pipe(&b, name.c_str()));
        CHECK(demi_open_pipe(&c, name.c_str()) == EBUSY, "third party open");
        CHECK_DEMI(demi_close(b));
        CHECK(demi_open_pipe(&c, name.c_str()) == EBUSY, "reopen after the opener closed");
        CHECK_DEMI(demi_close(a));
        CHECK(demi_open_pipe(&d, name.c_str()) == ENOENT, "the creator's close removes the name");
        CHECK(access(shm_path(name).c_str(), F_OK) != 0, "region file left behind");
        return kExitOk;
    });
    expect_child_ok(r);
}

TEST(CatmemContract, SocketsAreNotSupportedAndBadCallsAreRejected)
{
    auto r = run_one([] {
        child_init("catmem");
        int qd;
        CHECK(demi_socket(&qd, AF_INET, SOCK_STREAM, 0) == ENOTSUP, "socket on catmem");
        std::string name = unique_name("s");
        int p;
        CHECK_DEMI(demi_create_pipe(&p, name.c_str()));
        demi_qtoken_t qt;
        demi_sgarray_t sga;
        memset(&sga, 0, sizeof(sga));
        CHECK(demi_push(&qt, p, &sga) == EINVAL, "push of an empty sga");
        CHECK(demi_push(&qt, p + 1000, &sga) == EBADF || demi_push(&qt, p + 1000, &sga) == EINVAL, "bad qd");
        struct sockaddr_in a = loopback(1);
        CHECK(demi_bind(p, (struct sockaddr *)&a, sizeof(a)) != 0, "bind on a pipe");
        // A pending pop is cancelled by close.
        CHECK_DEMI(demi_pop(&qt, p));
        CHECK_DEMI(demi_close(p));
        demi_qresult_t qr;
        struct timespec to = secs(5);
        int rc = demi_wait(&qr, qt, &to);
        CHECK(rc == 0 && qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == ECANCELED, "rc %d opcode %s ret %lld", rc,
              opname(qr.qr_opcode), (long long)qr.qr_ret);
        return kExitOk;
    });
    expect_child_ok(r);
}

TEST(CatmemContract, PushBeforeThePeerOpensIsKept)
{
    auto r = run_one([] {
        child_init("catmem");
        std::string name = unique_name("k");
        int a, b;
        CHECK_DEMI(demi_create_pipe(&a, name.c_str()));
        const char msg[] = "early";
        demi_qresult_t qr = push_msg(a, msg, sizeof(msg));
        CHECK(qr.qr_opcode == DEMI_OPC_PUSH, "push before open: %s", opname(qr.qr_opcode));
        CHECK_DEMI(demi_open_pipe(&b, name.c_str()));
        qr = pop_msg(b);
        CHECK(qr.qr_opcode == DEMI_OPC_POP && qr.qr_value.sga.sga_segs[0].sgaseg_len == sizeof(msg) &&
                  memcmp(qr.qr_value.sga.sga_segs[0].sgaseg_buf, msg, sizeof(msg)) == 0,
              "message lost");
        CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
        CHECK_DEMI(demi_close(b));
        CHECK_DEMI(demi_close(a));
        return kExitOk;
    });
    expect_child_ok(r);
}

} // namespace
