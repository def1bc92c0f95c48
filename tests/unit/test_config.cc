// Unit tests for libos/core/config.c: defaults, YAML loading, validation messages, environment overrides.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include "config.h"
}

namespace {

// Every variable core_config_load reads; saved before and restored after each test.
const char *const kEnvVars[] = {
    "DEMI_CONFIG",     "DEMI_LIBOS", "LIBOS",   "DEMI_LOCAL_IPV4",         "DEMI_LOCAL_MAC",
    "DEMI_WAIT_SPIN_US", "DEMI_SGA_POOL_MAX_BYTES", "DEMI_MTU", "DEMI_MSS", "DEMI_TCP_NODELAY",
    "DEMI_CONNECT_TIMEOUT_MS", "DEMI_CATNAP_POP_SIZE", "DEMI_IFNAME", "DEMI_EAL_ARGS",
    "DEMI_CATMEM_RING_SIZE",
};

std::string ip(const struct in_addr &a)
{
    char buf[INET_ADDRSTRLEN];
    return inet_ntop(AF_INET, &a, buf, sizeof(buf)) ? buf : "?";
}

std::string mac(const uint8_t m[6])
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

class ConfigTest : public ::testing::Test {
  protected:
    void SetUp() override
    {
        for (const char *v : kEnvVars) {
            const char *val = getenv(v);
            saved_.emplace_back(v, val ? std::make_pair(true, std::string(val)) : std::make_pair(false, std::string()));
            unsetenv(v);
        }
        char tmpl[] = "/tmp/demi-config-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
        dir_ = tmpl;
        core_config_defaults(&cfg_);
    }

    void TearDown() override
    {
        core_config_free(&cfg_);
        for (const std::string &f : files_)
            unlink(f.c_str());
        rmdir(dir_.c_str());
        for (auto &s : saved_) {
            if (s.second.first)
                setenv(s.first, s.second.second.c_str(), 1);
            else
                unsetenv(s.first);
        }
    }

    std::string Write(const std::string &name, const std::string &text)
    {
        std::string path = dir_ + "/" + name;
        FILE *fp = fopen(path.c_str(), "w");
        EXPECT_NE(fp, nullptr);
        if (fp == nullptr)
            return path;
        fwrite(text.data(), 1, text.size(), fp);
        fclose(fp);
        files_.push_back(path);
        return path;
    }

    int Load(const std::string &yaml)
    {
        core_config_free(&cfg_);
        std::string path = Write("c.yaml", yaml);
        return core_config_load(&cfg_, path.c_str(), err_, sizeof(err_));
    }

    // cfg_ must hold exactly the defaults and own no memory.
    void ExpectDefaults()
    {
        struct core_config d;
        core_config_defaults(&d);
        EXPECT_EQ(memcmp(&d, &cfg_, sizeof(d)), 0) << "cfg is not at its defaults";
    }

    struct core_config cfg_;
    char err_[512] = {0};
    std::string dir_;
    std::vector<std::string> files_;
    std::vector<std::pair<const char *, std::pair<bool, std::string>>> saved_;
};

const char kFull[] = R"(# every key this build reads, none at its default
demikernel:
  local_ipv4_addr: 10.0.0.1
  local_link_addr: "02:00:00:00:00:01"
  libos: catnap
  wait_spin_us: 75
  sga_pool_max_bytes: 2147483648
raw_socket:
  linux_interface_name: "veth0"
  xdp_interface_index: 3
dpdk:
  eal_init: ["", "--no-pci", "--no-huge", "-m", "128"]
tcp_socket_options:
  keepalive: { enabled: yes, time_millis: 7000, interval: 500 }
  linger: { enabled: true, time_seconds: 9 }
  nodelay: true
  connect_timeout_ms: 2500
inetstack_config:
  mtu: 9000
  mss: 8960
  enable_jumbo_frames: on
  udp_checksum_offload: 1
  tcp_checksum_offload: TRUE
  arp_table:
    "02:00:00:00:00:02": "10.0.0.2"
    "02-00-00-00-00-0A": 10.0.0.3
  arp_cache_ttl: 600
  arp_request_timeout: 40
  arp_request_retries: 7
  ipv4_netmask: 255.255.0.0
  ipv4_gateway: 10.0.0.254
catnap:
  pop_size: 4096
catmem:
  ring_size: 65536
)";

TEST_F(ConfigTest, Defaults)
{
    EXPECT_STREQ(cfg_.libos, "");
    EXPECT_FALSE(cfg_.has_local_ipv4);
    EXPECT_FALSE(cfg_.has_local_mac);
    EXPECT_EQ(cfg_.wait_spin_us, 50u);
    EXPECT_EQ(cfg_.sga_pool_max_bytes, 1ull << 30);
    EXPECT_STREQ(cfg_.linux_interface_name, "");
    EXPECT_EQ(cfg_.xdp_interface_index, 0u);
    EXPECT_EQ(cfg_.n_eal, 0);
    EXPECT_EQ(cfg_.eal_init[0], nullptr);
    EXPECT_FALSE(cfg_.keepalive_enabled);
    EXPECT_FALSE(cfg_.linger_enabled);
    EXPECT_FALSE(cfg_.nodelay);
    EXPECT_EQ(cfg_.connect_timeout_ms, 0u);
    EXPECT_EQ(cfg_.mtu, 1500u);
    EXPECT_EQ(cfg_.mss, 1460u);
    EXPECT_FALSE(cfg_.enable_jumbo_frames);
    EXPECT_FALSE(cfg_.udp_checksum_offload);
    EXPECT_FALSE(cfg_.tcp_checksum_offload);
    EXPECT_EQ(cfg_.n_arp, 0);
    EXPECT_EQ(cfg_.arp_cache_ttl_s, 15u);
    EXPECT_EQ(cfg_.arp_request_timeout_ms, 20u);
    EXPECT_EQ(cfg_.arp_request_retries, 5u);
    EXPECT_FALSE(cfg_.has_ipv4_netmask);
    EXPECT_FALSE(cfg_.has_ipv4_gateway);
    EXPECT_EQ(cfg_.catnap_pop_size, 65536u);
    EXPECT_EQ(cfg_.catmem_ring_size, 1u << 20);
}

TEST_F(ConfigTest, NoFileNoEnvGivesDefaults)
{
    strcpy(err_, "stale");
    ASSERT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), 0) << err_;
    EXPECT_STREQ(err_, "");
    ExpectDefaults();
}

TEST_F(ConfigTest, FullFileFillsEveryField)
{
    ASSERT_EQ(Load(kFull), 0) << err_;
    EXPECT_STREQ(cfg_.libos, "catnap");
    ASSERT_TRUE(cfg_.has_local_ipv4);
    EXPECT_EQ(ip(cfg_.local_ipv4), "10.0.0.1");
    ASSERT_TRUE(cfg_.has_local_mac);
    EXPECT_EQ(mac(cfg_.local_mac), "02:00:00:00:00:01");
    EXPECT_EQ(cfg_.wait_spin_us, 75u);
    EXPECT_EQ(cfg_.sga_pool_max_bytes, 2147483648ull);
    EXPECT_STREQ(cfg_.linux_interface_name, "veth0");
    EXPECT_EQ(cfg_.xdp_interface_index, 3u);
    ASSERT_EQ(cfg_.n_eal, 5);
    EXPECT_STREQ(cfg_.eal_init[0], "");
    EXPECT_STREQ(cfg_.eal_init[1], "--no-pci");
    EXPECT_STREQ(cfg_.eal_init[2], "--no-huge");
    EXPECT_STREQ(cfg_.eal_init[3], "-m");
    EXPECT_STREQ(cfg_.eal_init[4], "128");
    EXPECT_TRUE(cfg_.keepalive_enabled);
    EXPECT_EQ(cfg_.keepalive_time_ms, 7000u);
    EXPECT_EQ(cfg_.keepalive_interval_ms, 500u);
    EXPECT_TRUE(cfg_.linger_enabled);
    EXPECT_EQ(cfg_.linger_time_s, 9u);
    EXPECT_TRUE(cfg_.nodelay);
    EXPECT_EQ(cfg_.connect_timeout_ms, 2500u);
    EXPECT_EQ(cfg_.mtu, 9000u);
    EXPECT_EQ(cfg_.mss, 8960u);
    EXPECT_TRUE(cfg_.enable_jumbo_frames);
    EXPECT_TRUE(cfg_.udp_checksum_offload);
    EXPECT_TRUE(cfg_.tcp_checksum_offload);
    ASSERT_EQ(cfg_.n_arp, 2);
    EXPECT_EQ(mac(cfg_.arp_table[0].mac), "02:00:00:00:00:02");
    EXPECT_EQ(ip(cfg_.arp_table[0].ip), "10.0.0.2");
    EXPECT_EQ(mac(cfg_.arp_table[1].mac), "02:00:00:00:00:0a");
    EXPECT_EQ(ip(cfg_.arp_table[1].ip), "10.0.0.3");
    EXPECT_EQ(cfg_.arp_cache_ttl_s, 600u);
    EXPECT_EQ(cfg_.arp_request_timeout_ms, 40u);
    EXPECT_EQ(cfg_.arp_request_retries, 7u);
    ASSERT_TRUE(cfg_.has_ipv4_netmask);
    EXPECT_EQ(ip(cfg_.ipv4_netmask), "255.255.0.0");
    ASSERT_TRUE(cfg_.has_ipv4_gateway);
    EXPECT_EQ(ip(cfg_.ipv4_gateway), "10.0.0.254");
    EXPECT_EQ(cfg_.catnap_pop_size, 4096u);
    EXPECT_EQ(cfg_.catmem_ring_size, 65536u);
}

TEST_F(ConfigTest, ShippedExampleConfigLoads)
{
    std::string path = std::string(DEMI_SOURCE_DIR) + "/scripts/config/default.yaml";
    ASSERT_EQ(core_config_load(&cfg_, path.c_str(), err_, sizeof(err_)), 0) << err_;
    EXPECT_TRUE(cfg_.has_local_ipv4);
}

TEST_F(ConfigTest, DemikernelTemplateWithItsOwnSectionsLoads)
{
    // Demikernel's own files carry app sections and AF_XDP knobs this build does not use.
    const char yaml[] = R"(
client:
  connect_to: { host: 10.0.0.2, port: 12345 }
server:
  bind: { host: 10.0.0.1, port: 12345 }
catnip:
  my_ipv4_addr: 10.0.0.1
demikernel:
  local_ipv4_addr: 10.0.0.1
  local_link_addr: "02:00:00:00:00:01"
raw_socket:
  linux_interface_name: "eth1"
  xdp_interface_index: 0
  xdp_cohost_mode: false
  xdp_always_poke_tx: false
  xdp_always_send_on_vf: false
  xdp_tcp_ports: [80, 443]
  tx_buffer_count: 4096
  rx_buffer_count: 4096
  tx_ring_size: 128
  rx_ring_size: 128
tcp_socket_options:
  keepalive:
    enabled: false
    time_millis: 0
    interval: 0
  linger:
    enabled: true
    time_seconds: 0
  nodelay: true
inetstack_config:
  mtu: 1500
  mss: 1500
)";
    ASSERT_EQ(Load(yaml), 0) << err_;
    EXPECT_STREQ(cfg_.linux_interface_name, "eth1");
    EXPECT_EQ(cfg_.mss, 1500u);
    EXPECT_TRUE(cfg_.nodelay);
}

TEST_F(ConfigTest, EmptyFileAndEmptySectionsKeepDefaults)
{
    ASSERT_EQ(Load(""), 0) << err_;
    ExpectDefaults();
    ASSERT_EQ(Load("# only a comment\n"), 0) << err_;
    ExpectDefaults();
    ASSERT_EQ(Load("demikernel:\ninetstack_config: {}\ntcp_socket_options:\n  keepalive:\n"), 0) << err_;
    ExpectDefaults();
}

TEST_F(ConfigTest, BooleanSpellings)
{
    const std::pair<const char *, bool> cases[] = {
        {"true", true}, {"True", true}, {"yes", true}, {"on", true},   {"1", true},  {"\"YES\"", true},
        {"false", false}, {"no", false}, {"off", false}, {"0", false}, {"OFF", false},
    };
    for (const auto &c : cases) {
        SCOPED_TRACE(c.first);
        std::string yaml = std::string("tcp_socket_options:\n  nodelay: ") + c.first + "\n";
        ASSERT_EQ(Load(yaml), 0) << err_;
        EXPECT_EQ(cfg_.nodelay, c.second);
    }
}

TEST_F(ConfigTest, IntegerBoundsAreInclusive)
{
    ASSERT_EQ(Load("inetstack_config:\n  mtu: 68\n"), 0) << err_;
    EXPECT_EQ(cfg_.mtu, 68u);
    ASSERT_EQ(Load("inetstack_config:\n  mtu: 9216\n"), 0) << err_;
    EXPECT_EQ(cfg_.mtu, 9216u);
    ASSERT_EQ(Load("inetstack_config:\n  mtu: \"1400\"\n"), 0) << err_;
    EXPECT_EQ(cfg_.mtu, 1400u);
}

struct BadCase {
    const char *what;
    const char *yaml;
    const char *key;   // the err message must name this
    const char *extra; // and contain this (what is allowed), or nullptr
};

const BadCase kBad[] = {
    {"non-integer", "inetstack_config:\n  mtu: abc\n", "inetstack_config.mtu", "68..9216"},
    {"too small", "inetstack_config:\n  mtu: 67\n", "inetstack_config.mtu", "68..9216"},
    {"too large", "inetstack_config:\n  mtu: 9217\n", "inetstack_config.mtu", "68..9216"},
    {"negative", "inetstack_config:\n  mss: -1\n", "inetstack_config.mss", "integer"},
    {"trailing junk", "inetstack_config:\n  mtu: 1500x\n", "inetstack_config.mtu", "\"1500x\""},
    {"hex", "inetstack_config:\n  mtu: 0x5dc\n", "inetstack_config.mtu", "integer"},
    {"float", "catnap:\n  pop_size: 1.5\n", "catnap.pop_size", "integer"},
    {"not a power of two", "catmem:\n  ring_size: 65535\n", "catmem.ring_size", "power of two in 4096..268435456"},
    {"power of two too small", "catmem:\n  ring_size: 2048\n", "catmem.ring_size", "4096..268435456"},
    {"power of two too large", "catmem:\n  ring_size: 536870912\n", "catmem.ring_size", "4096..268435456"},
    {"empty", "inetstack_config:\n  mtu: \"\"\n", "inetstack_config.mtu", "integer"},
    {"u64 overflow", "demikernel:\n  sga_pool_max_bytes: 18446744073709551616\n", "demikernel.sga_pool_max_bytes",
     "integer"},
    {"u32 field past 2^32", "demikernel:\n  wait_spin_us: 4294967346\n", "demikernel.wait_spin_us", "integer"},
    {"nested integer", "tcp_socket_options:\n  keepalive:\n    time_millis: soon\n",
     "tcp_socket_options.keepalive.time_millis", "integer"},
    {"bad IP", "demikernel:\n  local_ipv4_addr: 10.0.0.256\n", "demikernel.local_ipv4_addr", "IPv4"},
    {"IP with junk", "inetstack_config:\n  ipv4_gateway: 10.0.0.1x\n", "inetstack_config.ipv4_gateway", "IPv4"},
    {"bad netmask", "inetstack_config:\n  ipv4_netmask: 255.0.255.0\n", "inetstack_config.ipv4_netmask", "netmask"},
    {"bad MAC", "demikernel:\n  local_link_addr: zz\n", "demikernel.local_link_addr",
     "is not a MAC address like 02:00:00:00:00:01"},
    {"short MAC", "demikernel:\n  local_link_addr: \"02:00:00:00:00\"\n", "demikernel.local_link_addr", "MAC"},
    {"mixed MAC separators", "demikernel:\n  local_link_addr: \"02:00-00:00:00:01\"\n", "demikernel.local_link_addr",
     "MAC"},
    {"bad bool", "tcp_socket_options:\n  nodelay: maybe\n", "tcp_socket_options.nodelay", "true/false"},
    {"nested bad bool", "tcp_socket_options:\n  linger: { enabled: 2 }\n", "tcp_socket_options.linger.enabled",
     "boolean"},
    {"unknown key", "inetstack_config:\n  mtux: 1500\n", "inetstack_config.mtux", "unknown key"},
    {"unknown nested key", "tcp_socket_options:\n  keepalive: { enable: true }\n",
     "tcp_socket_options.keepalive.enable", "unknown key"},
    {"unknown section", "inetstack_cofnig:\n  mtu: 1500\n", "inetstack_cofnig", "unknown section"},
    {"duplicate key", "inetstack_config:\n  mtu: 1500\n  mtu: 1400\n", "inetstack_config.mtu", "duplicate"},
    {"section not a mapping", "demikernel: 3\n", "demikernel", "mapping"},
    {"scalar expected", "inetstack_config:\n  mtu: [1500]\n", "inetstack_config.mtu", "sequence"},
    {"libos characters", "demikernel:\n  libos: Cat-Nap\n", "demikernel.libos", "a-z"},
    {"interface name too long", "raw_socket:\n  linux_interface_name: abcdefghijklmnop\n",
     "raw_socket.linux_interface_name", "interface name"},
    {"interface name with slash", "raw_socket:\n  linux_interface_name: a/b\n", "raw_socket.linux_interface_name",
     "interface name"},
    {"eal not a sequence", "dpdk:\n  eal_init: \"--no-pci\"\n", "dpdk.eal_init", "sequence"},
    {"eal item not a string", "dpdk:\n  eal_init: [\"-m\", [1]]\n", "dpdk.eal_init[1]", "string"},
    {"arp bad MAC", "inetstack_config:\n  arp_table:\n    \"02:00:00:00:00\": 10.0.0.2\n",
     "inetstack_config.arp_table", "MAC"},
    {"arp bad IP", "inetstack_config:\n  arp_table:\n    \"02:00:00:00:00:02\": 10.0.0\n",
     "inetstack_config.arp_table", "IPv4"},
    {"arp not a mapping", "inetstack_config:\n  arp_table: [1, 2]\n", "inetstack_config.arp_table", "mapping"},
    {"NUL in scalar", "inetstack_config:\n  mtu: \"1500\\0junk\"\n", "inetstack_config.mtu", "NUL"},
    {"top level not a mapping", "- a\n- b\n", "top level", "mapping"},
    {"two documents", "catnap: {pop_size: 10}\n---\ncatnap: {pop_size: 20}\n", "more than one", nullptr},
};

TEST_F(ConfigTest, BadValuesAreRejectedNamingTheKey)
{
    for (const BadCase &b : kBad) {
        SCOPED_TRACE(b.what);
        // Something allocated before the bad value must be freed and undone.
        std::string yaml = std::string("dpdk:\n  eal_init: [\"a\", \"b\"]\n") + b.yaml;
        if (strncmp(b.yaml, "- ", 2) == 0 || strncmp(b.yaml, "dpdk", 4) == 0)
            yaml = b.yaml;
        strcpy(err_, "");
        EXPECT_EQ(Load(yaml), -EINVAL);
        EXPECT_NE(strstr(err_, b.key), nullptr) << "err: " << err_;
        if (b.extra != nullptr) {
            EXPECT_NE(strstr(err_, b.extra), nullptr) << "err: " << err_;
        }
        EXPECT_EQ(strchr(err_, '\n'), nullptr) << "err must be one line: " << err_;
        if (getenv("DEMI_TEST_VERBOSE") != nullptr)
            printf("%-24s %s\n", b.what, err_);
        ExpectDefaults();
    }
}

TEST_F(ConfigTest, ValueErrorsSayWhereInTheFile)
{
    ASSERT_EQ(Load("catnap:\n  pop_size: 1\ninetstack_config:\n  mtu: abc\n"), -EINVAL);
    EXPECT_NE(strstr(err_, "inetstack_config.mtu: \"abc\" is not an integer in 68..9216"), nullptr) << err_;
    EXPECT_NE(strstr(err_, "line 4"), nullptr) << err_;
    EXPECT_NE(strstr(err_, "c.yaml"), nullptr) << err_;
}

TEST_F(ConfigTest, TooManyEalArgs)
{
    std::string yaml = "dpdk:\n  eal_init: [";
    for (int i = 0; i <= CORE_CONFIG_MAX_EAL; i++)
        yaml += (i ? ", \"-x" : "\"-x") + std::to_string(i) + "\"";
    yaml += "]\n";
    EXPECT_EQ(Load(yaml), -EINVAL);
    EXPECT_NE(strstr(err_, "dpdk.eal_init"), nullptr) << err_;
    ExpectDefaults();

    // Exactly the maximum is fine.
    yaml = "dpdk:\n  eal_init: [";
    for (int i = 0; i < CORE_CONFIG_MAX_EAL; i++)
        yaml += (i ? ", \"-x" : "\"-x") + std::to_string(i) + "\"";
    yaml += "]\n";
    ASSERT_EQ(Load(yaml), 0) << err_;
    EXPECT_EQ(cfg_.n_eal, CORE_CONFIG_MAX_EAL);
    EXPECT_STREQ(cfg_.eal_init[CORE_CONFIG_MAX_EAL - 1], "-x63");
}

TEST_F(ConfigTest, TooManyArpEntries)
{
    std::string yaml = "inetstack_config:\n  arp_table:\n";
    for (int i = 0; i <= CORE_CONFIG_MAX_ARP; i++) {
        char line[80];
        snprintf(line, sizeof(line), "    \"02:00:00:00:01:%02x\": 10.0.1.%d\n", i, i + 1);
        yaml += line;
    }
    EXPECT_EQ(Load(yaml), -EINVAL);
    EXPECT_NE(strstr(err_, "inetstack_config.arp_table"), nullptr) << err_;
    ExpectDefaults();
}

TEST_F(ConfigTest, YamlSyntaxErrorGivesLineAndColumn)
{
    EXPECT_EQ(Load("demikernel:\n  libos: catnap\n  mtu: [1500\ncatnap:\n  pop_size: 1\n"), -EINVAL);
    EXPECT_NE(strstr(err_, "YAML syntax error"), nullptr) << err_;
    EXPECT_NE(strstr(err_, "line "), nullptr) << err_;
    EXPECT_NE(strstr(err_, "column "), nullptr) << err_;
    EXPECT_NE(strstr(err_, "c.yaml"), nullptr) << err_;
    ExpectDefaults();

    EXPECT_EQ(Load("demikernel:\n  libos: catnap\n bad indent: 1\n"), -EINVAL);
    EXPECT_NE(strstr(err_, "line 3"), nullptr) << err_;
    ExpectDefaults();
}

TEST_F(ConfigTest, MissingFileIsENOENT)
{
    std::string path = dir_ + "/does-not-exist.yaml";
    EXPECT_EQ(core_config_load(&cfg_, path.c_str(), err_, sizeof(err_)), -ENOENT);
    EXPECT_NE(strstr(err_, path.c_str()), nullptr) << err_;
    ExpectDefaults();
}

TEST_F(ConfigTest, DirectoryIsRejected)
{
    EXPECT_EQ(core_config_load(&cfg_, dir_.c_str(), err_, sizeof(err_)), -EISDIR);
    EXPECT_NE(strstr(err_, dir_.c_str()), nullptr) << err_;
}

TEST_F(ConfigTest, DemiConfigNamesTheFileWhenNoPathIsGiven)
{
    std::string path = Write("env.yaml", "inetstack_config:\n  mtu: 1400\n");
    setenv("DEMI_CONFIG", path.c_str(), 1);
    ASSERT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), 0) << err_;
    EXPECT_EQ(cfg_.mtu, 1400u);

    // An explicit path wins over DEMI_CONFIG.
    std::string other = Write("other.yaml", "inetstack_config:\n  mtu: 1300\n");
    ASSERT_EQ(core_config_load(&cfg_, other.c_str(), err_, sizeof(err_)), 0) << err_;
    EXPECT_EQ(cfg_.mtu, 1300u);

    setenv("DEMI_CONFIG", (dir_ + "/missing.yaml").c_str(), 1);
    EXPECT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), -ENOENT);
    EXPECT_NE(strstr(err_, "missing.yaml"), nullptr) << err_;
}

TEST_F(ConfigTest, EnvironmentOverridesWinOverTheFile)
{
    setenv("DEMI_LIBOS", "catmem", 1);
    setenv("DEMI_LOCAL_IPV4", "192.168.7.1", 1);
    setenv("DEMI_LOCAL_MAC", "02:aa:bb:cc:dd:ee", 1);
    setenv("DEMI_WAIT_SPIN_US", "0", 1);
    setenv("DEMI_SGA_POOL_MAX_BYTES", "65536", 1);
    setenv("DEMI_MTU", "1400", 1);
    setenv("DEMI_MSS", "1360", 1);
    setenv("DEMI_TCP_NODELAY", "off", 1);
    setenv("DEMI_CONNECT_TIMEOUT_MS", "100", 1);
    setenv("DEMI_CATNAP_POP_SIZE", "1024", 1);
    setenv("DEMI_CATMEM_RING_SIZE", "4096", 1);
    setenv("DEMI_IFNAME", "eth9", 1);
    setenv("DEMI_EAL_ARGS", "  prog --no-pci\t-m 64 ", 1);
    ASSERT_EQ(Load(kFull), 0) << err_;
    EXPECT_STREQ(cfg_.libos, "catmem");
    EXPECT_EQ(ip(cfg_.local_ipv4), "192.168.7.1");
    EXPECT_EQ(mac(cfg_.local_mac), "02:aa:bb:cc:dd:ee");
    EXPECT_EQ(cfg_.wait_spin_us, 0u);
    EXPECT_EQ(cfg_.sga_pool_max_bytes, 65536u);
    EXPECT_EQ(cfg_.mtu, 1400u);
    EXPECT_EQ(cfg_.mss, 1360u);
    EXPECT_FALSE(cfg_.nodelay);
    EXPECT_EQ(cfg_.connect_timeout_ms, 100u);
    EXPECT_EQ(cfg_.catnap_pop_size, 1024u);
    EXPECT_EQ(cfg_.catmem_ring_size, 4096u);
    EXPECT_STREQ(cfg_.linux_interface_name, "eth9");
    ASSERT_EQ(cfg_.n_eal, 4);
    EXPECT_STREQ(cfg_.eal_init[0], "prog");
    EXPECT_STREQ(cfg_.eal_init[1], "--no-pci");
    EXPECT_STREQ(cfg_.eal_init[2], "-m");
    EXPECT_STREQ(cfg_.eal_init[3], "64");
    // Keys with no variable keep the file's values.
    EXPECT_EQ(cfg_.arp_request_retries, 7u);
}

TEST_F(ConfigTest, EnvironmentWorksWithoutAFile)
{
    setenv("DEMI_MTU", "9000", 1);
    setenv("DEMI_LOCAL_IPV4", "10.1.2.3", 1);
    ASSERT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), 0) << err_;
    EXPECT_EQ(cfg_.mtu, 9000u);
    ASSERT_TRUE(cfg_.has_local_ipv4);
    EXPECT_EQ(ip(cfg_.local_ipv4), "10.1.2.3");
}

TEST_F(ConfigTest, EmptyVariableMeansUnset)
{
    setenv("DEMI_MTU", "", 1);
    setenv("DEMI_EAL_ARGS", "", 1);
    ASSERT_EQ(Load("inetstack_config:\n  mtu: 1400\ndpdk:\n  eal_init: [x]\n"), 0) << err_;
    EXPECT_EQ(cfg_.mtu, 1400u);
    EXPECT_EQ(cfg_.n_eal, 1);
}

TEST_F(ConfigTest, DemiLibosWinsOverLibos)
{
    setenv("LIBOS", "catnap", 1);
    ASSERT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), 0) << err_;
    EXPECT_STREQ(cfg_.libos, "catnap");

    setenv("DEMI_LIBOS", "catloop", 1);
    ASSERT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), 0) << err_;
    EXPECT_STREQ(cfg_.libos, "catloop");

    // The file says one thing, LIBOS another: the environment wins.
    unsetenv("DEMI_LIBOS");
    ASSERT_EQ(Load("demikernel:\n  libos: catmem\n"), 0) << err_;
    EXPECT_STREQ(cfg_.libos, "catnap");
}

TEST_F(ConfigTest, LibosNameIsNotCheckedAgainstTheRegistry)
{
    setenv("DEMI_LIBOS", "no_such_libos_9", 1);
    ASSERT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), 0) << err_;
    EXPECT_STREQ(cfg_.libos, "no_such_libos_9");

    setenv("DEMI_LIBOS", std::string(CORE_CONFIG_NAME_MAX, 'a').c_str(), 1);
    EXPECT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), -EINVAL);
    EXPECT_NE(strstr(err_, "DEMI_LIBOS"), nullptr) << err_;
}

TEST_F(ConfigTest, BadEnvironmentValuesNameTheVariable)
{
    const std::pair<const char *, const char *> cases[] = {
        {"DEMI_LIBOS", "Cat Nap"},      {"LIBOS", "cat/nap"},          {"DEMI_LOCAL_IPV4", "10.0.0"},
        {"DEMI_LOCAL_MAC", "02:00"},    {"DEMI_WAIT_SPIN_US", "fast"}, {"DEMI_SGA_POOL_MAX_BYTES", "1"},
        {"DEMI_MTU", "abc"},            {"DEMI_MSS", "99999"},         {"DEMI_TCP_NODELAY", "sometimes"},
        {"DEMI_CONNECT_TIMEOUT_MS", "-5"}, {"DEMI_CATNAP_POP_SIZE", "0"}, {"DEMI_IFNAME", "has space"},
        {"DEMI_CATMEM_RING_SIZE", "100000"}, {"DEMI_CATMEM_RING_SIZE", "2048"},
        {"DEMI_CATMEM_RING_SIZE", "536870912"},
    };
    for (const auto &c : cases) {
        SCOPED_TRACE(c.first);
        setenv(c.first, c.second, 1);
        // The file's EAL list is allocated before the environment fails; it must not leak or survive.
        EXPECT_EQ(Load("dpdk:\n  eal_init: [a, b]\ninetstack_config:\n  mtu: 1400\n"), -EINVAL);
        EXPECT_NE(strstr(err_, c.first), nullptr) << "err: " << err_;
        EXPECT_NE(strstr(err_, c.second), nullptr) << "err: " << err_;
        ExpectDefaults();
        unsetenv(c.first);
    }
}

TEST_F(ConfigTest, TooManyEalArgsFromTheEnvironment)
{
    std::string args;
    for (int i = 0; i <= CORE_CONFIG_MAX_EAL; i++)
        args += " -a";
    setenv("DEMI_EAL_ARGS", args.c_str(), 1);
    EXPECT_EQ(core_config_load(&cfg_, nullptr, err_, sizeof(err_)), -EINVAL);
    EXPECT_NE(strstr(err_, "DEMI_EAL_ARGS"), nullptr) << err_;
    ExpectDefaults();
}

TEST_F(ConfigTest, NullErrBufferIsAllowed)
{
    std::string path = Write("bad.yaml", "inetstack_config:\n  mtu: abc\n");
    EXPECT_EQ(core_config_load(&cfg_, path.c_str(), nullptr, 0), -EINVAL);
    char tiny[4] = "xyz";
    EXPECT_EQ(core_config_load(&cfg_, path.c_str(), tiny, sizeof(tiny)), -EINVAL);
    EXPECT_EQ(strlen(tiny), 3u);
    EXPECT_EQ(core_config_load(nullptr, path.c_str(), nullptr, 0), -EINVAL);
}

TEST_F(ConfigTest, LongBadValueIsShortenedInTheMessage)
{
    std::string v(5000, '7');
    EXPECT_EQ(Load("inetstack_config:\n  mtu: " + v + "\n"), -EINVAL);
    EXPECT_NE(strstr(err_, "inetstack_config.mtu"), nullptr) << err_;
    EXPECT_NE(strstr(err_, "68..9216"), nullptr) << err_;
}

TEST_F(ConfigTest, ReloadAfterFreeDoesNotLeak)
{
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(Load(kFull), 0) << err_; // Load() frees the previous result first
        EXPECT_EQ(cfg_.n_eal, 5);
    }
    core_config_free(&cfg_);
    EXPECT_EQ(cfg_.n_eal, 0);
    EXPECT_EQ(cfg_.eal_init[0], nullptr);
    core_config_free(&cfg_); // twice is harmless
}

} // namespace
