// The public structs must keep Demikernel's packed layout byte for byte: programs and
// bindings built against Demikernel's headers exchange these structs with us.
#include <gtest/gtest.h>

#include <cstddef>
#include <type_traits>

extern "C" {
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/types.h>
#include <demi/wait.h>
}

TEST(Layout, SgaSegment)
{
    EXPECT_EQ(sizeof(demi_sgaseg_t), 12u);
    EXPECT_EQ(offsetof(demi_sgaseg_t, sgaseg_buf), 0u);
    EXPECT_EQ(offsetof(demi_sgaseg_t, sgaseg_len), 8u);
    EXPECT_EQ(sizeof(((demi_sgaseg_t *)0)->sgaseg_len), 4u);
}

TEST(Layout, SgArray)
{
    EXPECT_EQ(DEMI_SGARRAY_MAXSIZE, 1);
    EXPECT_EQ(sizeof(demi_sgarray_t), 40u);
    EXPECT_EQ(offsetof(demi_sgarray_t, sga_buf), 0u);
    EXPECT_EQ(offsetof(demi_sgarray_t, sga_numsegs), 8u);
    EXPECT_EQ(offsetof(demi_sgarray_t, sga_segs), 12u);
    EXPECT_EQ(offsetof(demi_sgarray_t, sga_addr), 24u);
    EXPECT_EQ(sizeof(((demi_sgarray_t *)0)->sga_addr), sizeof(sockaddr_in));
}

TEST(Layout, AcceptResult)
{
    EXPECT_EQ(sizeof(demi_accept_result_t), 20u);
    EXPECT_EQ(offsetof(demi_accept_result_t, qd), 0u);
    EXPECT_EQ(offsetof(demi_accept_result_t, addr), 4u);
}

TEST(Layout, QResult)
{
    EXPECT_EQ(sizeof(demi_qresult_t), 64u);
    EXPECT_EQ(offsetof(demi_qresult_t, qr_opcode), 0u);
    EXPECT_EQ(offsetof(demi_qresult_t, qr_qd), 4u);
    EXPECT_EQ(offsetof(demi_qresult_t, qr_qt), 8u);
    EXPECT_EQ(offsetof(demi_qresult_t, qr_ret), 16u);
    EXPECT_EQ(offsetof(demi_qresult_t, qr_value), 24u);
    EXPECT_EQ(sizeof(((demi_qresult_t *)0)->qr_value), 40u);
    EXPECT_EQ(sizeof(((demi_qresult_t *)0)->qr_ret), 8u);
    EXPECT_EQ(sizeof(demi_opcode_t), 4u);
}

TEST(Layout, Args)
{
    EXPECT_EQ(sizeof(struct demi_args), 20u);
    EXPECT_EQ(offsetof(struct demi_args, argc), 0u);
    EXPECT_EQ(offsetof(struct demi_args, argv), 4u);
    EXPECT_EQ(offsetof(struct demi_args, callback), 12u);
}

TEST(Layout, TokenAndOpcodes)
{
    EXPECT_TRUE((std::is_same<demi_qtoken_t, uint64_t>::value));
    EXPECT_EQ(DEMI_OPC_INVALID, 0);
    EXPECT_EQ(DEMI_OPC_PUSH, 1);
    EXPECT_EQ(DEMI_OPC_POP, 2);
    EXPECT_EQ(DEMI_OPC_ACCEPT, 3);
    EXPECT_EQ(DEMI_OPC_CONNECT, 4);
    EXPECT_EQ(DEMI_OPC_CLOSE, 5);
    EXPECT_EQ(DEMI_OPC_FAILED, 6);
}

// The signatures are part of the contract: a mismatch fails to compile here.
TEST(Layout, Signatures)
{
    int (*init)(const struct demi_args *) = demi_init;
    int (*create_pipe)(int *, const char *) = demi_create_pipe;
    int (*open_pipe)(int *, const char *) = demi_open_pipe;
    int (*sock)(int *, int, int, int) = demi_socket;
    int (*lis)(int, int) = demi_listen;
    int (*bnd)(int, const struct sockaddr *, socklen_t) = demi_bind;
    int (*acc)(demi_qtoken_t *, int) = demi_accept;
    int (*con)(demi_qtoken_t *, int, const struct sockaddr *, socklen_t) = demi_connect;
    int (*cls)(int) = demi_close;
    int (*push)(demi_qtoken_t *, int, const demi_sgarray_t *) = demi_push;
    int (*pushto)(demi_qtoken_t *, int, const demi_sgarray_t *, const struct sockaddr *, socklen_t) = demi_pushto;
    int (*pop)(demi_qtoken_t *, int) = demi_pop;
    int (*sso)(int, int, int, const void *, socklen_t) = demi_setsockopt;
    int (*gso)(int, int, int, void *, socklen_t *) = demi_getsockopt;
    int (*gpn)(int, struct sockaddr *, socklen_t *) = demi_getpeername;
    int (*w)(demi_qresult_t *, demi_qtoken_t, const struct timespec *) = demi_wait;
    int (*wa)(demi_qresult_t *, int *, const demi_qtoken_t[], int, const struct timespec *) = demi_wait_any;
    int (*wn)(demi_qresult_t *, int, int *, const struct timespec *) = demi_wait_next_n;
    demi_sgarray_t (*sa)(size_t) = demi_sgaalloc;
    int (*sf)(demi_sgarray_t *) = demi_sgafree;
    const void *all[] = {(void *)init, (void *)create_pipe, (void *)open_pipe, (void *)sock, (void *)lis,
                         (void *)bnd,  (void *)acc,         (void *)con,       (void *)cls,  (void *)push,
                         (void *)pushto, (void *)pop,       (void *)sso,       (void *)gso,  (void *)gpn,
                         (void *)w,    (void *)wa,          (void *)wn,        (void *)sa,   (void *)sf};
    for (const void *p : all)
        EXPECT_NE(p, nullptr);
}
