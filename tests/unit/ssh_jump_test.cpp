// ssh_jump against real OpenSSH servers on 127.0.0.1: the second sshd
// (other_sshd.hpp) is the jump host, and the first (local_sshd.hpp), which
// it reaches at 127.0.0.1:<port>, plays the guest behind it.
#include "local_sshd.hpp"
#include "other_sshd.hpp"
#include "test_context.hpp"

#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/ssh_jump.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using anweddol::endpoint_shell_instance;
using anweddol::endpoint_shell_options;
using anweddol::errc;
using anweddol::host_key_policy;
using anweddol::ssh_jump;
using anweddol::ssh_jump_options;
using anweddol::test::failure_of;
using anweddol::test::local_sshd;
using anweddol::test::other_sshd;
using anweddol::test::run;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using boost::asio::awaitable;
using boost::asio::use_awaitable;
using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

boost::asio::any_io_executor executor() {
    return anweddol::test::test_context().get_executor();
}

/// Options that log in to `jump_host` with its client key, its host keys pinned.
ssh_jump_options jump_options(const other_sshd& jump_host, const local_sshd& sshd) {
    ssh_jump_options options;
    options.host = "127.0.0.1";
    options.port = jump_host.port();
    options.username = sshd.user();
    options.private_key_file = jump_host.client_key_file().string();
    options.host_keys = host_key_policy::pinned_fingerprints;
    options.host_key_fingerprints = {jump_host.ed25519_fingerprint(),
                                     jump_host.ecdsa_fingerprint()};
    options.connect_timeout = 10s;
    return options;
}

/// A shell on the first sshd, reached through `jump`.
std::unique_ptr<endpoint_shell_instance> shell_via(std::shared_ptr<ssh_jump> jump,
                                                   const local_sshd& sshd,
                                                   endpoint_shell_options options = {}) {
    auto shell = std::make_unique<endpoint_shell_instance>(executor(), "127.0.0.1", sshd.user(),
                                                           sshd.password(), sshd.port());
    options.jump = std::move(jump);
    shell->set_options(std::move(options));
    return shell;
}

std::size_t open_descriptors() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++count;
    return count;
}

void warm_up_reactor() {
    boost::asio::ip::tcp::socket socket(anweddol::test::test_context());
    socket.open(boost::asio::ip::tcp::v4());
}

std::size_t occurrences(const std::string& text, const std::string& what) {
    std::size_t count = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
        ++count;
    return count;
}

/// The processes under `pid` (sshd's per-connection processes), deepest last.
std::vector<int> descendants(int pid) {
    std::vector<int> found;
    std::ifstream children("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) +
                           "/children");
    int child = 0;
    while (children >> child) {
        found.push_back(child);
        for (int grandchild : descendants(child))
            found.push_back(grandchild);
    }
    return found;
}

std::uint16_t unused_port() {
    boost::asio::ip::tcp::acceptor probe(anweddol::test::test_context(),
                                         {boost::asio::ip::make_address("127.0.0.1"), 0});
    return probe.local_endpoint().port();
}

/// A tunnel to 127.0.0.1:`port` through `jump`, with a callback token (the
/// test's run_coroutine needs a default-constructible result, which a
/// socket is not); fails the test on error.
ssh_jump::socket_type open_tunnel(ssh_jump& jump, std::uint16_t port) {
    boost::system::error_code error = boost::asio::error::would_block;
    std::optional<ssh_jump::socket_type> tunnel;
    jump.async_open_tunnel("127.0.0.1", port,
                           [&](boost::system::error_code ec, ssh_jump::socket_type socket) {
                               error = ec;
                               tunnel.emplace(std::move(socket));
                           });
    REQUIRE(run_until([&] { return error != boost::asio::error::would_block; }, 20s));
    INFO(error.message());
    REQUIRE(!error);
    return std::move(*tunnel);
}

} // namespace

TEST_CASE("ssh jump: shells through one jump session run commands, and megabytes cross intact",
          "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    auto jump = ssh_jump::create(executor(), jump_options(jump_host, *sshd));
    CHECK(!jump->is_connected());
    CHECK(jump->login_count() == 0);
    CHECK(jump->name() == sshd->user() + "@127.0.0.1:" + std::to_string(jump_host.port()));

    // Opened all at once: one login, one tunnel each.
    constexpr std::size_t shells = 4;
    std::vector<std::unique_ptr<endpoint_shell_instance>> opened;
    std::vector<boost::system::error_code> errors(shells);
    std::size_t completed = 0;
    for (std::size_t i = 0; i < shells; ++i) {
        opened.push_back(shell_via(jump, *sshd));
        opened.back()->open_shell([&, i](boost::system::error_code ec) {
            errors[i] = ec;
            ++completed;
        });
    }
    REQUIRE(run_until([&] { return completed == shells; }, 30s));
    for (const auto& ec : errors)
        CHECK(!ec);
    CHECK(jump->login_count() == 1);
    CHECK(jump->tunnel_count() == shells);
    CHECK(jump->is_connected());

    for (std::size_t i = 0; i < shells; ++i) {
        const auto result = run_coroutine(opened[i]->execute("id -un; echo " + std::to_string(i)));
        CHECK(result.exit_status == 0);
        CHECK(result.std_out == sshd->user() + "\n" + std::to_string(i) + "\n");
        // The guest's host key, as it is when reached directly.
        CHECK(opened[i]->get_host_key_fingerprint() == sshd->fingerprint());
    }

    // Megabytes each way: the channel's windows open and close many times.
    std::ostringstream expected;
    for (int n = 1; n <= 600000; ++n)
        expected << n << '\n';
    const auto counted = run_coroutine(opened[0]->execute("seq 1 600000"));
    CHECK(counted.std_out.size() == expected.str().size());
    CHECK(counted.std_out == expected.str());
    anweddol::command_options upload;
    std::string input(3 << 20, 'x');
    for (std::size_t i = 0; i < input.size(); i += 4093)
        input[i] = static_cast<char>('a' + i % 26);
    upload.std_in = input;
    const auto summed = run_coroutine(opened[1]->execute("cksum", upload));
    const auto local = [&] {
        // The same checksum, from the same tool, over the same bytes.
        auto direct = std::make_unique<endpoint_shell_instance>(
            executor(), "127.0.0.1", sshd->user(), sshd->password(), sshd->port());
        run(direct->open_shell());
        const auto result = run_coroutine(direct->execute("cksum", upload));
        run(direct->close_shell());
        return result.std_out;
    }();
    CHECK(summed.std_out == local);
    CHECK(summed.std_out.find(std::to_string(input.size())) != std::string::npos);

    for (auto& shell : opened)
        run(shell->close_shell());
    CHECK(run_until([&] { return jump->tunnel_count() == 0; }, 5s));
    CHECK(jump->login_count() == 1);
    CHECK(jump->is_connected()); // the session stays for the next tunnels

    run(jump->async_close());
    CHECK(!jump->is_connected());
}

TEST_CASE("ssh jump: a raw tunnel carries the target's bytes, with a callback token",
          "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    auto jump = ssh_jump::create(executor(), jump_options(jump_host, *sshd));
    std::optional<ssh_jump::socket_type> tunnel(open_tunnel(*jump, sshd->port()));
    REQUIRE(tunnel->is_open());
    CHECK(jump->tunnel_count() == 1);
    // The target's banner comes through.
    std::string banner;
    const auto read = run_coroutine(
        [&]() -> awaitable<std::size_t> {
            co_return co_await boost::asio::async_read_until(
                *tunnel, boost::asio::dynamic_buffer(banner), "\r\n", use_awaitable);
        }(),
        10s);
    CHECK(read > 0);
    CHECK(banner.rfind("SSH-2.0-OpenSSH", 0) == 0);
    // Closing the local end ends the relay, channel and all.
    tunnel->close();
    CHECK(run_until([&] { return jump->tunnel_count() == 0; }, 5s));
}

TEST_CASE("ssh jump: a refused key or password fails at once with authentication_failed",
          "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    auto options = jump_options(jump_host, *sshd);
    SECTION("a key the jump host does not know") {
        // The impostor key of the first server: unencrypted, valid, not authorized.
        options.private_key_file = (sshd->dir() / "other_ed25519").string();
    }
    SECTION("a wrong password") {
        options.private_key_file.clear();
        options.password = "not-" + sshd->password();
    }
    auto jump = ssh_jump::create(executor(), options);
    auto shell = shell_via(jump, *sshd);
    const auto start = std::chrono::steady_clock::now();
    const auto error = failure_of([&] { return shell->open_shell(); });
    CHECK(error.code() == errc::authentication_failed);
    CHECK(std::chrono::steady_clock::now() - start < 10s); // final, not retried until ready
    const std::string message = error.what();
    CHECK(message.find("jump host " + jump->name()) != std::string::npos);
    CHECK(message.find(sshd->password()) == std::string::npos);
    CHECK(!jump->is_connected());
    CHECK(jump->login_count() == 0);
    CHECK(jump->tunnel_count() == 0);
    CHECK(shell->is_closed());
}

TEST_CASE("ssh jump: logs in with a password given by move, and opens a tunnel", "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    auto options = jump_options(jump_host, *sshd);
    options.private_key_file.clear();
    std::string password = sshd->password();
    options.password = std::move(password);
    auto jump = ssh_jump::create(executor(), std::move(options));
    std::optional<ssh_jump::socket_type> tunnel(open_tunnel(*jump, sshd->port()));
    CHECK(tunnel->is_open());
    CHECK(jump->login_count() == 1);
    CHECK(run_until(
        [&] { return occurrences(jump_host.log(), "Accepted password for " + sshd->user()) == 1; },
        5s));
}

// A password short enough to live inside the std::string object, which a
// move copies and leaves behind in the moved-from object. Each moved-from
// object is alive, read through a pointer to its own buffer.
TEST_CASE("ssh jump: a short password moved into the options, or the options moved into "
          "create(), is wiped where it was moved from",
          "[ssh_jump]") {
    constexpr std::string_view short_password = "hunter2!";
    const auto all_zero = [](const char* bytes, std::size_t size) {
        return std::all_of(bytes, bytes + size, [](char c) { return c == '\0'; });
    };
    ssh_jump_options options;
    options.host = "10.77.1.2";
    options.username = "root";
    options.host_keys = host_key_policy::accept_new;
    std::string password(short_password);
    const char* storage = password.data();
    options.password = std::move(password);
    REQUIRE(password.data() == storage);
    CHECK(all_zero(storage, short_password.size()));

    const char* in_options = options.password.reveal().data();
    auto jump = ssh_jump::create(executor(), std::move(options));
    CHECK(jump->get_options().password.reveal() == short_password);
    REQUIRE(options.password.reveal().data() == in_options);
    CHECK(all_zero(in_options, short_password.size()));
}

TEST_CASE("ssh jump: a jump host key that does not match fails with host_key_mismatch, "
          "before any credential is sent",
          "[ssh_jump][host_keys]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    auto options = jump_options(jump_host, *sshd);
    options.private_key_file.clear();
    options.password = sshd->password(); // would log in, were it sent
    // In the jump host's directory: removed with it.
    const auto known_hosts_file = jump_host.log_file().parent_path() / "known_hosts";
    SECTION("pinned to another server's fingerprint") {
        options.host_key_fingerprints = {sshd->fingerprint()};
    }
    SECTION("known_hosts holds another key for it") {
        options.host_keys = host_key_policy::known_hosts;
        options.known_hosts_file = known_hosts_file.string();
        std::ofstream(known_hosts_file)
            << "[127.0.0.1]:" << jump_host.port() << " " << sshd->other_public_key() << "\n";
    }
    auto jump = ssh_jump::create(executor(), options);
    const auto error =
        failure_of([&] { return jump->async_open_tunnel("127.0.0.1", sshd->port()); });
    CHECK(error.code() == errc::host_key_mismatch);
    CHECK(std::string(error.what()).find("jump host") != std::string::npos);
    CHECK(jump->login_count() == 0);
    // The jump host saw the key exchange, and no authentication request.
    CHECK(run_until([&] { return occurrences(jump_host.log(), "KEX done") >= 1; }, 5s));
    run_until([] { return false; }, 200ms); // let it log the rest of the session
    const std::string log = jump_host.log();
    INFO("the jump host's log:\n" << log);
    CHECK(occurrences(log, "userauth-request") == 0);
    CHECK(occurrences(log, "password") == 0);
}

TEST_CASE("ssh jump: a target port nobody listens on fails within the ready timeout, naming "
          "jump and target",
          "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    auto jump = ssh_jump::create(executor(), jump_options(jump_host, *sshd));
    const std::uint16_t closed = unused_port();
    const std::string target = "127.0.0.1:" + std::to_string(closed);

    // One tunnel: refused by the jump host, said so.
    const auto refused =
        failure_of([&] { return jump->async_open_tunnel("127.0.0.1", closed); }, 20s);
    CHECK(refused.code() == boost::asio::error::connection_refused);
    const std::string refusal = refused.what();
    CHECK(refusal.find(jump->name()) != std::string::npos);
    CHECK(refusal.find(target) != std::string::npos);
    CHECK(jump->tunnel_count() == 0);
    CHECK(jump->is_connected()); // a refused channel leaves the session as it was

    // A shell: retried as a refused TCP connection is, until ready_timeout.
    endpoint_shell_options quick;
    quick.ready_timeout = 2s;
    quick.attempt_timeout = 1s;
    auto shell = std::make_unique<endpoint_shell_instance>(executor(), "127.0.0.1", sshd->user(),
                                                           sshd->password(), closed);
    quick.jump = jump;
    shell->set_options(quick);
    const auto start = std::chrono::steady_clock::now();
    const auto error = failure_of([&] { return shell->open_shell(); }, 20s);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(error.code() == boost::asio::error::timed_out);
    const std::string message = error.what();
    INFO(message);
    CHECK(message.find(target + " via " + jump->name()) != std::string::npos);
    CHECK(message.find("could not connect") != std::string::npos);
    CHECK(jump->login_count() == 1);
    CHECK(jump->tunnel_count() == 0);
}

TEST_CASE("ssh jump: cancelling open_shell midway leaves no tunnel and no descriptor",
          "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    warm_up_reactor();
    const std::size_t before_jump = open_descriptors();

    // Cancelled while the jump logs in: the login goes on for the next
    // tunnel; closing the jump then leaves nothing.
    {
        auto jump = ssh_jump::create(executor(), jump_options(jump_host, *sshd));
        auto shell = shell_via(jump, *sshd);
        const auto winner = run_coroutine(
            [&]() -> awaitable<int> {
                boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, 2ms);
                auto result = co_await (shell->open_shell() || timer.async_wait(use_awaitable));
                co_return static_cast<int>(result.index());
            }(),
            10s);
        CHECK(winner == 1);
        CHECK(shell->is_closed());
        CHECK(jump->tunnel_count() == 0);
        run_until([&] { return jump->is_connected(); }, 5s);
        run(jump->async_close());
        run_until([] { return false; }, 50ms);
        CHECK(open_descriptors() == before_jump);
    }

    // Cancelled at points through the tunnel's opening and the guest's
    // handshake, on a connected jump.
    auto jump = ssh_jump::create(executor(), jump_options(jump_host, *sshd));
    {
        auto warm = shell_via(jump, *sshd);
        run(warm->open_shell());
        run(warm->close_shell());
    }
    REQUIRE(run_until([&] { return jump->tunnel_count() == 0; }, 5s));
    const std::size_t connected = open_descriptors();
    for (auto delay : {0ms, 1ms, 2ms, 4ms, 8ms, 16ms, 32ms}) {
        auto shell = shell_via(jump, *sshd);
        const auto winner = run_coroutine(
            [&]() -> awaitable<int> {
                boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, delay);
                auto result = co_await (shell->open_shell() || timer.async_wait(use_awaitable));
                co_return static_cast<int>(result.index());
            }(),
            10s);
        if (winner == 0) // it was quicker than the delay
            run(shell->close_shell());
        CHECK(shell->is_closed());
        CHECK(run_until([&] { return jump->tunnel_count() == 0; }, 5s));
        run_until([] { return false; }, 50ms); // a channel still opening is closed on its answer
        INFO("cancelled after " << delay.count() << " ms");
        CHECK(open_descriptors() == connected);
    }
    CHECK(jump->login_count() == 1);
    CHECK(jump->is_connected());
}

TEST_CASE("ssh jump: a dropped jump session fails the shells through it, and the next tunnel "
          "logs in again",
          "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    auto jump = ssh_jump::create(executor(), jump_options(jump_host, *sshd));
    auto shell = shell_via(jump, *sshd);
    run(shell->open_shell());
    CHECK(run_coroutine(shell->execute("echo before")).std_out == "before\n");
    REQUIRE(jump->tunnel_count() == 1);

    // The jump host's processes for this session die: the TCP connection goes.
    const auto serving = descendants(jump_host.pid());
    REQUIRE(!serving.empty());
    for (int pid : serving)
        ::kill(pid, SIGKILL);

    CHECK(run_until([&] { return jump->tunnel_count() == 0; }, 10s));
    CHECK(!jump->is_connected());
    const auto error = failure_of([&] { return shell->execute("echo after"); }, 10s);
    INFO(error.what());
    CHECK(error.code() != errc::shell_not_open); // it failed on the way, not beforehand
    run(shell->close_shell());

    auto again = shell_via(jump, *sshd);
    run(again->open_shell());
    CHECK(run_coroutine(again->execute("echo again")).std_out == "again\n");
    CHECK(jump->login_count() == 2);
    CHECK(jump->tunnel_count() == 1);
    run(again->close_shell());
    CHECK(run_until([&] { return jump->tunnel_count() == 0; }, 5s));

    // Dropped while no tunnel reads it: the session still looks open, and
    // the next tunnel finds out and logs in again instead of failing.
    for (int pid : descendants(jump_host.pid()))
        ::kill(pid, SIGKILL);
    run_until([] { return false; }, 200ms);
    auto tunnel = open_tunnel(*jump, sshd->port());
    CHECK(tunnel.is_open());
    CHECK(jump->login_count() == 3);
    CHECK(jump->tunnel_count() == 1);
    tunnel.close();
    CHECK(run_until([&] { return jump->tunnel_count() == 0; }, 5s));
}

TEST_CASE("ssh jump: destroying the jump ends its relays, and the shells see the end",
          "[ssh_jump]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    other_sshd jump_host(*sshd);
    warm_up_reactor();
    const std::size_t before = open_descriptors();
    {
        auto shell = std::make_unique<endpoint_shell_instance>(
            executor(), "127.0.0.1", sshd->user(), sshd->password(), sshd->port());
        {
            endpoint_shell_options options;
            options.jump = ssh_jump::create(executor(), jump_options(jump_host, *sshd));
            shell->set_options(options);
            run(shell->open_shell());
            CHECK(run_coroutine(shell->execute("echo up")).std_out == "up\n");
            std::weak_ptr<ssh_jump> weak = options.jump;
            options.jump.reset();
            shell->set_options({}); // the last owner of the jump lets it go
            CHECK(weak.expired());
        }
        const auto error = failure_of([&] { return shell->execute("echo after"); }, 10s);
        INFO(error.what());
        CHECK(error.code() != errc::shell_not_open);
        run(shell->close_shell());
    }
    run_until([] { return false; }, 100ms);
    CHECK(open_descriptors() == before);
}

TEST_CASE("ssh jump: invalid options are refused with invalid_argument, saying what to fix",
          "[ssh_jump]") {
    ssh_jump_options valid;
    valid.host = "10.77.1.2";
    valid.username = "root";
    valid.password = "secret";
    valid.host_keys = host_key_policy::accept_new;
    CHECK(ssh_jump::create(executor(), valid)->name() == "root@10.77.1.2:22");
    auto v6 = valid;
    v6.host = "fd00::2";
    CHECK(ssh_jump::create(executor(), v6)->name() == "root@[fd00::2]:22");

    const auto refused = [](ssh_jump_options options, const std::string& says) {
        try {
            ssh_jump::create(executor(), std::move(options));
            FAIL("accepted, expected a refusal mentioning " << says);
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == errc::invalid_argument);
            INFO(e.what());
            CHECK(std::string(e.what()).find(says) != std::string::npos);
        }
    };
    auto o = valid;
    o.host.clear();
    refused(o, "host is empty");
    o = valid;
    o.host = "hypervisor.example";
    refused(o, "is not an IP address");
    o = valid;
    o.port = 0;
    refused(o, "port is 0");
    o = valid;
    o.username.clear();
    refused(o, "username is empty");
    o = valid;
    o.password.clear();
    refused(o, "no credentials");
    o = valid;
    o.private_key_file = "/etc/hostname";
    refused(o, "both a password and a private_key_file");
    o = valid;
    o.password.clear();
    o.private_key_file = "/nonexistent/id_ed25519";
    refused(o, "/nonexistent/id_ed25519");
    o = valid;
    o.password.clear();
    o.private_key_file = "/etc/hostname"; // a file, but no key
    refused(o, "unencrypted OpenSSH private key");
    o = valid;
    o.host_keys = host_key_policy::known_hosts;
    refused(o, "known_hosts_file");
    o = valid;
    o.host_keys = host_key_policy::pinned_fingerprint;
    refused(o, "needs a fingerprint");
    o = valid;
    o.host_keys = host_key_policy::pinned_fingerprints;
    refused(o, "at least one fingerprint");
    o.host_key_fingerprints = {"SHA256:tooshort"};
    refused(o, "no SHA-256 fingerprint");
    o = valid;
    o.connect_timeout = 0s;
    refused(o, "connect_timeout");
    // The default policy is known_hosts: a jump host's key is checked unless told otherwise.
    ssh_jump_options defaults;
    defaults.host = "10.77.1.2";
    defaults.username = "root";
    defaults.password = "secret";
    refused(defaults, "known_hosts_file");
}
