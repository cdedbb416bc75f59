// endpoint_shell_instance against a real OpenSSH sshd on 127.0.0.1
// (local_sshd.hpp), and against fake servers for what a real one does not
// do on demand (stay silent, hang up mid-handshake).
#include "local_sshd.hpp"
#include "other_sshd.hpp"
#include "test_context.hpp"

#include <anweddol/detail/ssh/command.hpp>
#include <anweddol/detail/ssh/login.hpp>
#include <anweddol/endpoint_shell_instance.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using anweddol::command_options;
using anweddol::command_result;
using anweddol::endpoint_shell_instance;
using anweddol::endpoint_shell_options;
using anweddol::errc;
using anweddol::host_key_policy;
using anweddol::test::failure_of;
using anweddol::test::local_sshd;
using anweddol::test::other_sshd;
using anweddol::test::run;
using anweddol::test::run_coroutine;
using boost::asio::awaitable;
using boost::asio::use_awaitable;
using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

std::unique_ptr<endpoint_shell_instance> shell_for(const local_sshd& sshd,
                                                   endpoint_shell_options options = {}) {
    auto shell = std::make_unique<endpoint_shell_instance>(
        anweddol::test::test_context().get_executor(), "127.0.0.1", sshd.user(), sshd.password(),
        sshd.port());
    shell->set_options(std::move(options));
    return shell;
}

/// What detail::login needs to log in to the local sshd.
anweddol::detail::ssh_login_params login_params_for(const local_sshd& sshd) {
    anweddol::detail::ssh_login_params p;
    p.endpoint = {boost::asio::ip::make_address("127.0.0.1"), sshd.port()};
    p.host = "127.0.0.1";
    p.username = sshd.user();
    p.password.assign(std::string_view(sshd.password()));
    return p;
}

/// Makes the test context create its reactor (epoll, eventfd, timerfd), which
/// it does on first use of a socket or timer.
void warm_up_reactor() {
    boost::asio::ip::tcp::socket socket(anweddol::test::test_context());
    socket.open(boost::asio::ip::tcp::v4());
}

std::size_t open_descriptors() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++count;
    return count;
}

/// A TCP server on 127.0.0.1 that accepts and then does `behaviour` with
/// each connection: stays silent, or hangs up after a banner.
enum class fake_server_behaviour { silent, hang_up_after_banner, hang_up_at_once };

class fake_server {
public:
    explicit fake_server(fake_server_behaviour behaviour)
        : acceptor_(anweddol::test::test_context(),
                    {boost::asio::ip::make_address("127.0.0.1"), 0}) {
        boost::asio::co_spawn(acceptor_.get_executor(), serve(behaviour), boost::asio::detached);
    }
    ~fake_server() {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        for (auto& s : held_)
            s->close(ignored);
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int accepted() const { return accepted_; }

private:
    awaitable<void> serve(fake_server_behaviour behaviour) {
        while (true) {
            auto [ec, socket] =
                co_await acceptor_.async_accept(boost::asio::as_tuple(use_awaitable));
            if (ec)
                co_return;
            ++accepted_;
            if (behaviour == fake_server_behaviour::hang_up_after_banner) {
                static const std::string banner = "SSH-2.0-OpenSSH_9.2p1\r\n";
                co_await boost::asio::async_write(socket, boost::asio::buffer(banner),
                                                  boost::asio::as_tuple(use_awaitable));
                socket.close();
            } else if (behaviour == fake_server_behaviour::hang_up_at_once) {
                socket.close();
            } else {
                held_.push_back(std::make_shared<boost::asio::ip::tcp::socket>(std::move(socket)));
            }
        }
    }

    boost::asio::ip::tcp::acceptor acceptor_;
    std::vector<std::shared_ptr<boost::asio::ip::tcp::socket>> held_;
    int accepted_ = 0;
};

} // namespace

TEST_CASE("endpoint shell: opens with the endpoint password and runs a command",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    CHECK(shell->is_closed());
    CHECK(shell->get_ssh_client() == nullptr);
    const command_result result = run_coroutine([&]() -> awaitable<command_result> {
        co_await shell->open_shell();
        co_return co_await shell->execute("echo hello; id -un");
    }());
    CHECK_FALSE(shell->is_closed());
    CHECK(shell->get_ssh_client() != nullptr);
    CHECK(result.std_out == "hello\n" + sshd->user() + "\n");
    CHECK(result.std_err.empty());
    CHECK(result.exit_status == 0);
    CHECK(shell->get_host_key_fingerprint() == sshd->fingerprint());
    run(shell->close_shell());
    CHECK(shell->is_closed());
    CHECK(shell->get_ssh_client() == nullptr);
}

TEST_CASE("endpoint shell: exit status and stderr are values, not errors", "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    const command_result result = run_coroutine(shell->execute("echo out; echo err >&2; exit 3"));
    CHECK(result.std_out == "out\n");
    CHECK(result.std_err == "err\n");
    CHECK(result.exit_status == 3);
    const auto [out, err] = run_coroutine(shell->execute_command("printf a; printf b >&2"));
    CHECK(out == "a");
    CHECK(err == "b");
    const command_result killed = run_coroutine(shell->execute("kill -KILL $$"));
    CHECK(killed.exit_status == -1);
    CHECK(killed.exit_signal == "KILL");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: a second open_shell fails with shell_already_open", "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    CHECK(failure_of([&] { return shell->open_shell(); }).code() == errc::shell_already_open);
    run(shell->close_shell());
    run(shell->close_shell()); // closing twice does nothing
    CHECK(failure_of([&] { return shell->execute("true"); }).code() == errc::shell_not_open);
}

TEST_CASE("endpoint shell: standard input reaches the command and is then closed",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    std::string input;
    for (int i = 0; input.size() < 3'000'000; ++i)
        input += std::to_string(i) + "\n";
    command_options options;
    options.std_in = input;
    const command_result echoed = run_coroutine(shell->execute("cat", options));
    CHECK(echoed.exit_status == 0);
    CHECK(echoed.std_out.size() == input.size());
    CHECK(echoed.std_out == input);
    // Without input, stdin is closed at once: cat ends instead of waiting.
    const command_result empty = run_coroutine(shell->execute("cat; echo done"), 10s);
    CHECK(empty.std_out == "done\n");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: 200 commands over 20 concurrent sessions from one thread",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    constexpr int sessions = 20;
    constexpr int commands_per_session = 10;
    std::vector<std::unique_ptr<endpoint_shell_instance>> shells;
    for (int i = 0; i < sessions; ++i)
        shells.push_back(shell_for(*sshd));
    int correct = 0;
    int finished = 0;
    auto session_work = [&](int s) -> awaitable<void> {
        auto& shell = *shells[s];
        co_await shell.open_shell();
        // All of this session's commands at once, each on its own channel.
        int pending = commands_per_session;
        auto executor = co_await boost::asio::this_coro::executor;
        boost::asio::steady_timer all_done(executor, std::chrono::steady_clock::time_point::max());
        for (int c = 0; c < commands_per_session; ++c) {
            const std::string expected = std::to_string(s) + "-" + std::to_string(c);
            boost::asio::co_spawn(
                executor,
                [&, expected]() -> awaitable<void> {
                    const command_result r = co_await shell.execute(
                        "echo " + expected + "; exit " + std::to_string(expected.size()));
                    if (r.std_out == expected + "\n" &&
                        r.exit_status == static_cast<int>(expected.size()))
                        ++correct;
                },
                [&](std::exception_ptr) {
                    if (--pending == 0)
                        all_done.cancel();
                });
        }
        co_await all_done.async_wait(boost::asio::as_tuple(use_awaitable));
        co_await shell.close_shell();
        ++finished;
    };
    run_coroutine(
        [&]() -> awaitable<bool> {
            auto executor = co_await boost::asio::this_coro::executor;
            int running = sessions;
            boost::asio::steady_timer all_done(executor,
                                               std::chrono::steady_clock::time_point::max());
            for (int s = 0; s < sessions; ++s)
                boost::asio::co_spawn(executor, session_work(s), [&](std::exception_ptr) {
                    if (--running == 0)
                        all_done.cancel();
                });
            co_await all_done.async_wait(boost::asio::as_tuple(use_awaitable));
            co_return true;
        }(),
        120s);
    CHECK(finished == sessions);
    CHECK(correct == sessions * commands_per_session);
}

TEST_CASE("endpoint shell: 100 MB of output streams with bounded memory, or hits the cap",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    constexpr std::size_t size = 100'000'000;
    const std::string command = "head -c " + std::to_string(size) + " /dev/zero";

    rusage before{};
    getrusage(RUSAGE_SELF, &before);
    std::size_t streamed = 0;
    command_options streaming;
    streaming.on_output = [&](anweddol::output_stream stream, std::string_view piece) {
        if (stream == anweddol::output_stream::std_out)
            streamed += piece.size();
    };
    const command_result result = run_coroutine(shell->execute(command, streaming), 120s);
    rusage after{};
    getrusage(RUSAGE_SELF, &after);
    CHECK(streamed == size);
    CHECK(result.exit_status == 0);
    CHECK(result.std_out.empty());
    // The peak resident size grew by far less than the output (ru_maxrss in
    // KiB). AddressSanitizer keeps freed memory in quarantine: not there.
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(after.ru_maxrss - before.ru_maxrss < 32 * 1024);
#endif

    // Collected in memory, it stops at the cap with a clear error...
    const auto error = failure_of([&] { return shell->execute(command); }, 120s);
    CHECK(error.code() == errc::output_limit_exceeded);
    CHECK(std::string(error.what()).find("max_output_bytes") != std::string::npos);
    // ...and the session goes on.
    CHECK(run_coroutine(shell->execute("echo still here")).std_out == "still here\n");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: a command's deadline or cancellation closes its channel only",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());

    // A sleep of a length no other run uses, to find it in ps afterwards.
    const std::string sleep = "sleep 30." + std::to_string(::getpid());
    command_options short_deadline;
    short_deadline.timeout = 300ms;
    const auto start = std::chrono::steady_clock::now();
    const auto timed_out = failure_of([&] { return shell->execute(sleep, short_deadline); }, 10s);
    CHECK(timed_out.code() == boost::asio::error::timed_out);
    CHECK(std::chrono::steady_clock::now() - start < 5s);

    // Cancelled by a race with a timer: operation_aborted, promptly.
    const auto raced = run_coroutine(
        [&]() -> awaitable<int> {
            boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, 200ms);
            auto result = co_await (shell->execute(sleep) || timer.async_wait(use_awaitable));
            co_return static_cast<int>(result.index());
        }(),
        10s);
    CHECK(raced == 1);
    CHECK(std::chrono::steady_clock::now() - start < 8s);

    // The session is still good, and the abandoned commands were killed.
    const command_result after = run_coroutine(
        shell->execute("sleep 0.5; ps -o args= -u $(id -u) | grep -c '^" + sleep + "$' || true"));
    CHECK(after.std_out == "0\n");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: close_shell ends the commands still running", "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    std::optional<boost::system::error_code> outcome;
    boost::asio::co_spawn(anweddol::test::test_context(), shell->execute("sleep 30"),
                          [&](std::exception_ptr e, command_result) {
                              try {
                                  if (e)
                                      std::rethrow_exception(e);
                                  outcome.emplace();
                              } catch (const boost::system::system_error& error) {
                                  outcome = error.code();
                              }
                          });
    anweddol::test::run_until([] { return false; }, 300ms); // the command starts
    run(shell->close_shell(), 10s);
    REQUIRE(anweddol::test::run_until([&] { return outcome.has_value(); }));
    CHECK(*outcome == boost::asio::error::operation_aborted);
    CHECK(shell->is_closed());
}

TEST_CASE("endpoint shell: a wrong password fails at once with authentication_failed",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    endpoint_shell_instance shell(anweddol::test::test_context().get_executor(), "127.0.0.1",
                                  sshd->user(), "not-the-password", sshd->port());
    const auto start = std::chrono::steady_clock::now();
    const auto error = failure_of([&] { return shell.open_shell(); });
    CHECK(error.code() == errc::authentication_failed);
    CHECK(std::string(error.what()).find("not-the-password") == std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start < 10s); // not retried for 60 s
    CHECK(shell.is_closed());
}

TEST_CASE("endpoint shell: host keys are pinned, learnt, and a changed one is refused",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    endpoint_shell_options pinned;
    pinned.host_keys = host_key_policy::pinned_fingerprint;
    pinned.host_key_fingerprint = sshd->fingerprint();
    auto good = shell_for(*sshd, pinned);
    run(good->open_shell());
    CHECK_FALSE(good->is_closed());
    run(good->close_shell());

    pinned.host_key_fingerprint = sshd->other_fingerprint();
    auto impostor = shell_for(*sshd, pinned);
    CHECK(failure_of([&] { return impostor->open_shell(); }).code() == errc::host_key_mismatch);
    CHECK(impostor->is_closed());

    // known_hosts: a new host is added, then recognised.
    const auto known_hosts = sshd->dir() / "known_hosts";
    std::filesystem::remove(known_hosts);
    endpoint_shell_options learning;
    learning.host_keys = host_key_policy::known_hosts;
    learning.known_hosts_file = known_hosts.string();
    for (int i = 0; i < 2; ++i) {
        auto shell = shell_for(*sshd, learning);
        run(shell->open_shell());
        run(shell->close_shell());
    }
    std::ifstream learnt(known_hosts);
    const std::string entry{std::istreambuf_iterator<char>(learnt), {}};
    CHECK(entry.find("[127.0.0.1]:" + std::to_string(sshd->port())) != std::string::npos);

    // A different key on record for this host: refused.
    std::ofstream(known_hosts) << "[127.0.0.1]:" << sshd->port() << " " << sshd->other_public_key()
                               << "\n";
    auto changed = shell_for(*sshd, learning);
    const auto error = failure_of([&] { return changed->open_shell(); });
    CHECK(error.code() == errc::host_key_mismatch);
    CHECK(changed->is_closed());
}

namespace {

std::size_t occurrences(const std::string& text, const std::string& what) {
    std::size_t count = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
        ++count;
    return count;
}

/// Waits until the server has logged the end of `count` SSH sessions: its
/// per-connection children log through the listener, a little later.
bool sessions_ended(const other_sshd& server, std::size_t count) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (occurrences(server.log(), "Disconnected from") < count) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

/// `fingerprint` with one base64 character changed, still well formed.
std::string tampered(std::string fingerprint) {
    char& c = fingerprint[20];
    c = c == 'A' ? 'B' : 'A';
    return fingerprint;
}

std::unique_ptr<endpoint_shell_instance> shell_at(std::uint16_t port, const local_sshd& sshd,
                                                  endpoint_shell_options options) {
    auto shell =
        std::make_unique<endpoint_shell_instance>(anweddol::test::test_context().get_executor(),
                                                  "127.0.0.1", sshd.user(), sshd.password(), port);
    shell->set_options(std::move(options));
    return shell;
}

} // namespace

TEST_CASE("endpoint shell: pinned fingerprints refuse another server before the password is "
          "sent, and accept the right one",
          "[endpoint_shell][host_keys]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    // A second server at the address the shell connects to: same user, same
    // password, keys of its own. Had the password been sent, it would have
    // logged in and said so (LogLevel DEBUG1 logs every userauth-request).
    other_sshd impostor(*sshd);
    REQUIRE(impostor.ed25519_fingerprint() != impostor.ecdsa_fingerprint());
    // Its sessions: connections that got as far as the client's banner.
    const std::string session = "Remote protocol version";

    endpoint_shell_options pinned;
    pinned.host_keys = host_key_policy::pinned_fingerprints;
    const auto refused = [&](std::vector<std::string> fingerprints) {
        pinned.host_key_fingerprints = std::move(fingerprints);
        auto shell = shell_at(impostor.port(), *sshd, pinned);
        const auto start = std::chrono::steady_clock::now();
        const auto error = failure_of([&] { return shell->open_shell(); });
        CHECK(std::chrono::steady_clock::now() - start < 10s); // not retried until ready_timeout
        CHECK(shell->is_closed());
        CHECK(error.code() == errc::host_key_mismatch);
        return std::string(error.what()); // the diagnostics' messages, then the code's
    };

    SECTION("the first server's key is refused: the diagnostics say which was seen and expected") {
        const std::string message = refused({sshd->fingerprint()});
        // libssh prefers ed25519, so that is the key the server presents.
        CHECK(message.find(impostor.ed25519_fingerprint()) != std::string::npos);
        CHECK(message.find("ssh-ed25519") != std::string::npos);
        CHECK(message.find(sshd->fingerprint()) != std::string::npos);
        CHECK(message.find("127.0.0.1:" + std::to_string(impostor.port())) != std::string::npos);
        CHECK(message.find(sshd->password()) == std::string::npos);
    }
    SECTION("its own fingerprints, tampered, are refused") {
        const std::string message = refused(
            {tampered(impostor.ed25519_fingerprint()), tampered(impostor.ecdsa_fingerprint())});
        CHECK(message.find(tampered(impostor.ed25519_fingerprint())) != std::string::npos);
        CHECK(message.find(tampered(impostor.ecdsa_fingerprint())) != std::string::npos);
    }
    SECTION("a key it has but does not present is refused: the presented one must match") {
        const std::string message = refused({impostor.ecdsa_fingerprint()});
        CHECK(message.find(impostor.ed25519_fingerprint()) != std::string::npos);
    }
    // The handshake reached the server (it logged its end) exactly once, and
    // no authentication request ever did.
    const bool refusal_logged = sessions_ended(impostor, 1);
    std::string log = impostor.log();
    INFO("the second sshd's log:\n" << log);
    REQUIRE(refusal_logged);
    CHECK(occurrences(log, session) == 1);
    CHECK(occurrences(log, "KEX done") == 1);
    CHECK(occurrences(log, "userauth-request") == 0);
    CHECK(occurrences(log, "password") == 0);

    // The control: pinned to its real keys, in any order and as a user may
    // write them (no "SHA256:", '=' padding), the same server takes the
    // password, and its log shows it: the checks above can fail.
    pinned.host_key_fingerprints = {tampered(impostor.ed25519_fingerprint()),
                                    impostor.ecdsa_fingerprint(),
                                    impostor.ed25519_fingerprint().substr(7) + "="};
    auto shell = shell_at(impostor.port(), *sshd, pinned);
    run(shell->open_shell());
    CHECK(shell->get_host_key_fingerprint() == impostor.ed25519_fingerprint());
    CHECK(run_coroutine(shell->execute("id -un")).std_out == sshd->user() + "\n");
    run(shell->close_shell());
    const bool login_logged = sessions_ended(impostor, 2);
    log = impostor.log();
    INFO("the second sshd's log after the login:\n" << log);
    REQUIRE(login_logged);
    CHECK(occurrences(log, "userauth-request for user " + sshd->user() +
                               " service ssh-connection method password") == 1);
    CHECK(occurrences(log, "Accepted password for " + sshd->user()) == 1);
    CHECK(occurrences(log, session) == 2);
}

TEST_CASE("endpoint shell: the first server's own fingerprint, pinned as a set, logs in",
          "[endpoint_shell][host_keys]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    endpoint_shell_options pinned;
    pinned.host_keys = host_key_policy::pinned_fingerprints;
    pinned.host_key_fingerprints = {sshd->other_fingerprint(), sshd->fingerprint()};
    auto shell = shell_for(*sshd, pinned);
    run(shell->open_shell());
    CHECK(shell->get_host_key_fingerprint() == sshd->fingerprint());
    CHECK(run_coroutine(shell->execute("echo pinned")).std_out == "pinned\n");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: an empty or malformed fingerprint set is refused before connecting",
          "[endpoint_shell][host_keys]") {
    // A listener that counts connections: none may arrive.
    fake_server server(fake_server_behaviour::silent);
    endpoint_shell_instance shell(anweddol::test::test_context().get_executor(), "127.0.0.1",
                                  "endpoint", "endpoint", server.port());
    endpoint_shell_options pinned;
    pinned.host_keys = host_key_policy::pinned_fingerprints;
    const auto message_for = [&](std::vector<std::string> fingerprints) {
        pinned.host_key_fingerprints = std::move(fingerprints);
        const auto error = failure_of([&] { return shell.open_shell(pinned); }, 10s);
        CHECK(error.code() == errc::invalid_argument);
        return std::string(error.what());
    };
    CHECK(message_for({}).find("host_key_fingerprints") != std::string::npos);
    const std::string md5 = "MD5:d0:10:ba:b4:56:38:c1:36:00:74:b6:3d:52:ee:ad:30";
    CHECK(message_for({"SHA256:pvPLIxg3DubizDUKemTJSv9d35jbNzI5dgsNf91uM44", md5}).find(md5) !=
          std::string::npos);
    CHECK(message_for({""}).find("no SHA-256 fingerprint") != std::string::npos);
    CHECK(message_for({"SHA256:pvPLIxg3DubizDUKemTJSv9d35jbNzI5dgsNf91uM4"})
              .find("no SHA-256 fingerprint") != std::string::npos);
    anweddol::test::run_until([] { return false; }, 200ms); // a connection would arrive by now
    CHECK(server.accepted() == 0);
    CHECK(shell.is_closed());
}

TEST_CASE("endpoint shell: administrate_container quotes every argument", "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    // The fake sudo on the user's PATH records its arguments in $HOME and
    // refuses invalid usernames as the real setup script does.
    auto shell = shell_for(*sshd);
    CHECK(failure_of([&] { return shell->administrate_container(); }).code() ==
          errc::shell_not_open);
    run(shell->open_shell());
    CHECK(failure_of([&] { return shell->administrate_container(); }).code() ==
          errc::client_credentials_not_set);

    const auto home = sshd->dir() / "home";
    const auto args_file = home / "sudo.args";
    const auto read_args = [&] {
        std::ifstream in(args_file);
        std::vector<std::string> lines;
        for (std::string line; std::getline(in, line);)
            lines.push_back(line);
        return lines;
    };

    const auto [user, password] = shell->generate_client_ssh_credentials(64);
    shell->store_client_ssh_credentials(user, password, 2222);
    run(shell->administrate_container());
    CHECK(read_args() ==
          std::vector<std::string>{"/bin/anweddol_container_setup.sh", user, password, "2222"});

    const auto marker = home / "injected";
    const std::string injection = "x; touch " + marker.string() + "; echo $(id)";
    shell->store_client_ssh_credentials(injection, "p'w\"$(touch " + marker.string() + ")`id`");
    const auto error = failure_of([&] { return shell->administrate_container(); });
    CHECK(error.code() == errc::administration_failed);
    CHECK(std::string(error.what()).find("invalid username") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(marker));
    const auto args = read_args();
    REQUIRE(args.size() == 4);
    CHECK(args[1] == injection);
    CHECK(args[2] == "p'w\"$(touch " + marker.string() + ")`id`");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: administrate_container can send the password on standard input, in "
          "no argument", "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    auto options = shell->get_options();
    CHECK(options.setup_password_delivery == anweddol::password_delivery::argument); // the reference's
    options.setup_password_delivery = anweddol::password_delivery::standard_input;
    shell->set_options(options);
    run(shell->open_shell());
    const auto home = sshd->dir() / "home";
    const auto read_file = [&](const char* name) {
        std::ifstream in(home / name);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    const auto [user, password] = shell->generate_client_ssh_credentials(120);
    shell->store_client_ssh_credentials(user, password, 2222);
    run(shell->administrate_container());
    CHECK(read_file("sudo.args") ==
          "/bin/anweddol_container_setup.sh\n--password-stdin\n" + user + "\n2222\n");
    CHECK(read_file("sudo.stdin") == password + "\n");

    // A password the script would read cut short is refused before it runs.
    shell->store_client_ssh_credentials(user, "two\nlines", 2222);
    CHECK(failure_of([&] { return shell->administrate_container(); }).code() ==
          errc::invalid_argument);
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: administrate_container gives up on a setup script that hangs, at its "
          "deadline", "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    auto options = shell->get_options();
    CHECK(options.administration_timeout > 0s); // every hand-over step has a deadline
    options.administration_timeout = 1s;
    shell->set_options(options);
    run(shell->open_shell());
    shell->store_client_ssh_credentials("slow_user", "password", 2222);
    const auto began = std::chrono::steady_clock::now();
    const auto error = failure_of([&] { return shell->administrate_container(); }, 30s);
    CHECK(error.code() == boost::asio::error::timed_out);
    CHECK(std::chrono::steady_clock::now() - began < 10s);
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: bad arguments are refused before connecting", "[endpoint_shell]") {
    auto executor = anweddol::test::test_context().get_executor();
    endpoint_shell_instance no_ip(executor);
    CHECK(failure_of([&] { return no_ip.open_shell(); }).code() == errc::invalid_argument);
    endpoint_shell_instance not_an_ip(executor, "example.invalid");
    CHECK(failure_of([&] { return not_an_ip.open_shell(); }).code() == errc::invalid_argument);
    endpoint_shell_instance port_zero(executor, "127.0.0.1", "endpoint", "endpoint", 0);
    CHECK(failure_of([&] { return port_zero.open_shell(); }).code() == errc::invalid_argument);
    endpoint_shell_instance no_password(executor, "127.0.0.1", "endpoint", "");
    CHECK(failure_of([&] { return no_password.open_shell(); }).code() ==
          errc::endpoint_credentials_not_set);
    CHECK_THROWS_AS(no_ip.generate_client_ssh_credentials(0), boost::system::system_error);
    CHECK_THROWS_AS(no_ip.generate_client_ssh_credentials(4097), boost::system::system_error);
    CHECK(no_ip.generate_client_ssh_credentials(4096).second.size() == 4096);
}

TEST_CASE("endpoint shell: servers that never get ready end in timed_out, leaking nothing",
          "[endpoint_shell]") {
    endpoint_shell_options quick;
    quick.ready_timeout = 1500ms;
    quick.attempt_timeout = 400ms;
    warm_up_reactor(); // its descriptors are not a leak
    const std::size_t descriptors = open_descriptors();
    auto executor = anweddol::test::test_context().get_executor();

    for (auto behaviour :
         {fake_server_behaviour::silent, fake_server_behaviour::hang_up_after_banner,
          fake_server_behaviour::hang_up_at_once}) {
        fake_server server(behaviour);
        endpoint_shell_instance shell(executor, "127.0.0.1", "endpoint", "endpoint", server.port());
        shell.set_options(quick);
        const auto start = std::chrono::steady_clock::now();
        const auto error = failure_of([&] { return shell.open_shell(); }, 10s);
        CHECK(error.code() == boost::asio::error::timed_out);
        CHECK(std::chrono::steady_clock::now() - start < 4s);
        CHECK(server.accepted() >= 2); // it retried
        CHECK(shell.is_closed());
    }

    // Nothing listens: refused, retried until the deadline.
    std::uint16_t closed_port;
    {
        boost::asio::ip::tcp::acceptor probe(anweddol::test::test_context(),
                                             {boost::asio::ip::make_address("127.0.0.1"), 0});
        closed_port = probe.local_endpoint().port();
    }
    endpoint_shell_instance refused(executor, "127.0.0.1", "endpoint", "endpoint", closed_port);
    refused.set_options(quick);
    const auto error = failure_of([&] { return refused.open_shell(); }, 10s);
    CHECK(error.code() == boost::asio::error::timed_out);
    CHECK(std::string(error.what()).find("refused") != std::string::npos);

    anweddol::test::run_until([] { return false; }, 50ms); // let closed sockets' handlers run
    CHECK(open_descriptors() == descriptors);
}

TEST_CASE("endpoint shell: cancelling open_shell completes promptly and leaks nothing",
          "[endpoint_shell]") {
    warm_up_reactor(); // its descriptors are not a leak
    const std::size_t descriptors = open_descriptors();
    fake_server silent(fake_server_behaviour::silent);
    endpoint_shell_instance shell(anweddol::test::test_context().get_executor(), "127.0.0.1",
                                  "endpoint", "endpoint", silent.port());
    const auto start = std::chrono::steady_clock::now();
    const auto winner = run_coroutine(
        [&]() -> awaitable<int> {
            boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, 300ms);
            auto result = co_await (shell.open_shell() || timer.async_wait(use_awaitable));
            co_return static_cast<int>(result.index());
        }(),
        10s);
    CHECK(winner == 1);
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    CHECK(shell.is_closed());
    anweddol::test::run_until([] { return false; }, 50ms);
    CHECK(open_descriptors() <= descriptors + 2); // the fake server's own sockets
}

TEST_CASE("ssh internals: coroutines own their arguments: temporaries may end before the await",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto executor = anweddol::test::test_context().get_executor();
    // The parameters are a temporary that is gone (and its password wiped)
    // before the login starts.
    auto connection = std::make_shared<anweddol::detail::ssh_connection>(executor);
    auto login = anweddol::detail::login(connection, login_params_for(*sshd),
                                         std::chrono::steady_clock::now() + 10s);
    run(std::move(login), 15s);
    REQUIRE(connection->is_open());

    // The command is a temporary too; its memory is reused before it runs.
    const std::string expected(100, 'a');
    auto running = anweddol::detail::run_command(connection, "echo " + expected, {});
    const std::string reuse = "echo " + std::string(100, 'b');
    const command_result result = run_coroutine(std::move(running), 10s);
    CHECK(result.std_out == expected + "\n");
    CHECK(reuse.size() == expected.size() + 5);
    run(connection->close(0ms));
    CHECK_FALSE(connection->is_open());
}

TEST_CASE("ssh internals: a cancelled close stops lingering and completes without error",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto executor = anweddol::test::test_context().get_executor();
    auto connection = std::make_shared<anweddol::detail::ssh_connection>(executor);
    run(anweddol::detail::login(connection, login_params_for(*sshd),
                                std::chrono::steady_clock::now() + 10s),
        15s);
    REQUIRE(connection->is_open());
    // An operation that does not end makes the close linger, and wait again
    // after each wake-up: the first wait after the cancellation threw.
    anweddol::detail::ssh_connection::operation_guard busy(connection);
    boost::asio::cancellation_signal cancel;
    std::optional<std::exception_ptr> outcome;
    boost::asio::co_spawn(executor, connection->close(30s),
                          boost::asio::bind_cancellation_slot(
                              cancel.slot(), [&](std::exception_ptr e) { outcome = e; }));
    anweddol::test::run_until([] { return false; }, 100ms); // lingering
    const auto start = std::chrono::steady_clock::now();
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(anweddol::test::run_until([&] { return outcome.has_value(); }, 5s));
    CHECK(*outcome == nullptr);
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    CHECK_FALSE(connection->is_open());
}

TEST_CASE("endpoint shell: an exception from on_output kills the command and propagates",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    const std::string sleep = "sleep 31." + std::to_string(::getpid());
    command_options options;
    options.on_output = [](anweddol::output_stream, std::string_view) {
        throw std::runtime_error("the consumer failed");
    };
    try {
        run_coroutine(shell->execute("echo started; " + sleep, options), 10s);
        FAIL("no exception");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "the consumer failed");
    }
    // The session goes on, and the command was killed, not just abandoned.
    const command_result after = run_coroutine(
        shell->execute("sleep 0.5; ps -o args= -u $(id -u) | grep -c '^" + sleep + "$' || true"));
    CHECK(after.std_out == "0\n");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell: close_shell during open_shell aborts the open and leaves it closed",
          "[endpoint_shell]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    std::optional<boost::system::error_code> open_outcome;
    boost::asio::co_spawn(anweddol::test::test_context(), shell->open_shell(),
                          [&](std::exception_ptr e) {
                              try {
                                  if (e)
                                      std::rethrow_exception(e);
                                  open_outcome.emplace();
                              } catch (const boost::system::system_error& error) {
                                  open_outcome = error.code();
                              }
                          });
    bool closed = false;
    boost::asio::co_spawn(anweddol::test::test_context(), shell->close_shell(),
                          [&](std::exception_ptr e) { closed = !e; });
    REQUIRE(anweddol::test::run_until([&] { return closed && open_outcome.has_value(); }, 10s));
    CHECK(*open_outcome == boost::asio::error::operation_aborted);
    CHECK(shell->is_closed());
    CHECK(shell->get_ssh_client() == nullptr);
    // The shell can be opened again afterwards.
    run(shell->open_shell());
    CHECK_FALSE(shell->is_closed());
    run(shell->close_shell());
}

// --- Completion tokens and diagnostics --------------------------------------

using boost::system::error_code;

TEST_CASE("endpoint shell tokens: a plain callback gets the error code and the result",
          "[endpoint_shell][tokens]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    std::optional<error_code> opened;
    shell->open_shell([&](error_code ec) { opened = ec; });
    REQUIRE(anweddol::test::run_until([&] { return opened.has_value(); }, 20s));
    CHECK_FALSE(*opened);

    std::optional<std::pair<error_code, command_result>> executed;
    shell->execute("echo callback; exit 4", [&](error_code ec, command_result result) {
        executed.emplace(ec, std::move(result));
    });
    std::optional<std::pair<error_code, std::pair<std::string, std::string>>> pair;
    shell->execute_command("printf out; printf err >&2",
                           [&](error_code ec, std::pair<std::string, std::string> output) {
                               pair.emplace(ec, std::move(output));
                           });
    REQUIRE(anweddol::test::run_until([&] { return executed && pair; }, 20s));
    CHECK_FALSE(executed->first);
    CHECK(executed->second.std_out == "callback\n");
    CHECK(executed->second.exit_status == 4);
    CHECK_FALSE(pair->first);
    CHECK(pair->second == std::pair<std::string, std::string>("out", "err"));

    // An error arrives as a code, with the diagnostics filled.
    anweddol::diagnostics diag;
    std::optional<error_code> again;
    shell->open_shell(diag, [&](error_code ec) { again = ec; });
    REQUIRE(anweddol::test::run_until([&] { return again.has_value(); }));
    CHECK(*again == errc::shell_already_open);
    CHECK_FALSE(diag.client_message().empty());

    std::optional<error_code> closed;
    shell->close_shell([&](error_code ec) { closed = ec; });
    REQUIRE(anweddol::test::run_until([&] { return closed.has_value(); }, 10s));
    CHECK_FALSE(*closed);
    CHECK(shell->is_closed());
}

TEST_CASE("endpoint shell tokens: use_future works with the io_context on another thread",
          "[endpoint_shell][tokens]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    boost::asio::io_context context;
    auto work = boost::asio::make_work_guard(context);
    std::thread runner([&] { context.run(); });
    struct join_at_exit {
        std::thread& thread;
        decltype(work)& guard;
        ~join_at_exit() {
            guard.reset();
            thread.join();
        }
    } joiner{runner, work};
    endpoint_shell_instance shell(context.get_executor(), "127.0.0.1", sshd->user(),
                                  sshd->password(), sshd->port());
    // Futures block this thread only; the shell runs on the context's.
    shell.open_shell(boost::asio::use_future).get();
    const command_result result = shell.execute("echo future", boost::asio::use_future).get();
    CHECK(result.std_out == "future\n");
    CHECK(shell.execute_command("printf x", boost::asio::use_future).get().first == "x");
    try {
        shell.open_shell(boost::asio::use_future).get();
        FAIL("opened twice");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == errc::shell_already_open);
    }
    shell.close_shell(boost::asio::use_future).get();
    CHECK(boost::asio::post(context, boost::asio::use_future([&] { return shell.is_closed(); }))
              .get());
}

TEST_CASE("endpoint shell tokens: as_tuple(use_awaitable) returns errors as values",
          "[endpoint_shell][tokens]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    const auto tuple = boost::asio::as_tuple(use_awaitable);
    run([&]() -> awaitable<void> {
        auto [not_open, nothing] = co_await shell->execute("true", tuple);
        CHECK(not_open == errc::shell_not_open);
        auto [opened] = co_await shell->open_shell(tuple);
        CHECK_FALSE(opened);
        auto [ec, result] = co_await shell->execute("echo tuple", tuple);
        CHECK_FALSE(ec);
        CHECK(result.std_out == "tuple\n");
        // The shell's timeouts compare equal to std::errc::timed_out.
        command_options quick;
        quick.timeout = 200ms;
        anweddol::diagnostics diag;
        auto [timed_out, partial] = co_await shell->execute("sleep 5", quick, diag, tuple);
        CHECK(timed_out == std::errc::timed_out);
        CHECK(diag.client_message().find("did not end within 200 ms") != std::string::npos);
        auto [closed] = co_await shell->close_shell(tuple);
        CHECK_FALSE(closed);
    }());
    CHECK(shell->is_closed());
}

TEST_CASE("endpoint shell tokens: deferred operations run in a parallel group",
          "[endpoint_shell][tokens]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    using boost::asio::deferred;
    using boost::asio::experimental::make_parallel_group;
    run([&]() -> awaitable<void> {
        auto [order, ec1, first, ec2, second] =
            co_await make_parallel_group(shell->execute("sleep 0.2; echo one", deferred),
                                         shell->execute("echo two", deferred))
                .async_wait(boost::asio::experimental::wait_for_all(), use_awaitable);
        CHECK(order[0] == 1); // the quick one ended first: they ran at once
        CHECK_FALSE(ec1);
        CHECK_FALSE(ec2);
        CHECK(first.std_out == "one\n");
        CHECK(second.std_out == "two\n");

        // The group cancels the loser: it completes with operation_aborted.
        boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, 200ms);
        auto [race, aborted, result, timer_ec] =
            co_await make_parallel_group(shell->execute("sleep 30", deferred),
                                         timer.async_wait(deferred))
                .async_wait(boost::asio::experimental::wait_for_one(), use_awaitable);
        CHECK(race[0] == 1);
        CHECK(aborted == boost::asio::error::operation_aborted);
        CHECK_FALSE(timer_ec);
    }());
    CHECK(run_coroutine(shell->execute("echo still open")).std_out == "still open\n");
    run(shell->close_shell());
}

TEST_CASE("endpoint shell tokens: a bound cancellation slot aborts, leaving no channel or fd",
          "[endpoint_shell][tokens]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    warm_up_reactor(); // its descriptors are not a leak
    auto shell = shell_for(*sshd);
    run(shell->open_shell());
    const std::size_t descriptors = open_descriptors();

    // A command: aborted promptly, killed on the server, the session goes on.
    const std::string sleep = "sleep 32." + std::to_string(::getpid());
    boost::asio::cancellation_signal cancel;
    std::optional<error_code> outcome;
    shell->execute(sleep, boost::asio::bind_cancellation_slot(
                              cancel.slot(), [&](error_code ec, command_result) { outcome = ec; }));
    anweddol::test::run_until([] { return false; }, 300ms); // the command starts
    const auto start = std::chrono::steady_clock::now();
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(anweddol::test::run_until([&] { return outcome.has_value(); }, 5s));
    CHECK(*outcome == boost::asio::error::operation_aborted);
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    const command_result after = run_coroutine(
        shell->execute("sleep 0.5; ps -o args= -u $(id -u) | grep -c '^" + sleep + "$' || true"));
    CHECK(after.std_out == "0\n");
    anweddol::test::run_until([] { return false; }, 50ms);
    CHECK(open_descriptors() == descriptors);

    // close_shell: a cancellation only cuts the linger short; it succeeds.
    std::optional<error_code> closed;
    shell->close_shell(
        boost::asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec) { closed = ec; }));
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(anweddol::test::run_until([&] { return closed.has_value(); }, 5s));
    CHECK_FALSE(*closed);
    CHECK(shell->is_closed());

    // open_shell against a server that never answers: aborted, nothing kept.
    fake_server silent(fake_server_behaviour::silent);
    endpoint_shell_instance stuck(anweddol::test::test_context().get_executor(), "127.0.0.1",
                                  "endpoint", "endpoint", silent.port());
    const std::size_t before_open = open_descriptors();
    std::optional<error_code> opened;
    stuck.open_shell(
        boost::asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec) { opened = ec; }));
    anweddol::test::run_until([] { return false; }, 200ms);
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(anweddol::test::run_until([&] { return opened.has_value(); }, 5s));
    CHECK(*opened == boost::asio::error::operation_aborted);
    CHECK(stuck.is_closed());
    anweddol::test::run_until([] { return false; }, 50ms);
    CHECK(open_descriptors() <= before_open + 1); // the fake server's accepted socket
}

TEST_CASE("endpoint shell diagnostics: a wrong password says why, in both modes",
          "[endpoint_shell][tokens]") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    endpoint_shell_instance shell(anweddol::test::test_context().get_executor(), "127.0.0.1",
                                  sshd->user(), "not-the-password", sshd->port());
    anweddol::diagnostics diag;
    std::optional<error_code> outcome;
    shell.open_shell(diag, [&](error_code ec) { outcome = ec; });
    REQUIRE(anweddol::test::run_until([&] { return outcome.has_value(); }, 20s));
    CHECK(*outcome == errc::authentication_failed);
    CHECK(diag.client_message().find(sshd->user()) != std::string::npos);
    CHECK_FALSE(diag.server_message().empty()); // libssh's own account
    CHECK(diag.full_message().find("not-the-password") == std::string::npos);

    // Coroutine mode: error_with_diagnostics, and the diagnostics& overload
    // is filled too.
    anweddol::diagnostics filled;
    run([&]() -> awaitable<void> {
        try {
            co_await shell.open_shell(filled);
            FAIL("logged in with a wrong password");
        } catch (const anweddol::error_with_diagnostics& e) {
            CHECK(e.code() == errc::authentication_failed);
            CHECK(e.get_diagnostics() == diag);
        }
    }());
    CHECK(filled == diag);
    CHECK(shell.is_closed());

    // libssh's message for a server that hangs up mid-handshake travels in
    // the timeout's diagnostics.
    fake_server rude(fake_server_behaviour::hang_up_after_banner);
    endpoint_shell_options quick;
    quick.ready_timeout = 800ms;
    quick.attempt_timeout = 400ms;
    endpoint_shell_instance hung_up(anweddol::test::test_context().get_executor(), "127.0.0.1",
                                    "endpoint", "endpoint", rude.port());
    outcome.reset();
    hung_up.open_shell(quick, diag, [&](error_code ec) { outcome = ec; });
    REQUIRE(anweddol::test::run_until([&] { return outcome.has_value(); }, 10s));
    CHECK(*outcome == std::errc::timed_out);
    CHECK(diag.client_message().find("was not ready within 800 ms") != std::string::npos);
    CHECK_FALSE(diag.server_message().empty());
}
