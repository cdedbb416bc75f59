// Crash safety against the sandbox's libvirtd and QEMU: a process killed
// with SIGKILL leaves no domain; kept domains are found again by owner,
// adopted or destroyed; a guest that pauses fails its start at once; and
// every guest's console is read.
#include "../unit/libvirt_domains.hpp"
#include "../unit/test_context.hpp"
#include "sandbox_settings.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/container_sweep.hpp>
#include <anweddol/detail/domain_identity.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/console_log.hpp>
#include <anweddol/detail/libvirt/owned_domains.hpp>
#include <anweddol/detail/random.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

// Set by CMake where the tools are built (with the examples); elsewhere the
// tests that run the tool fail to spawn it, and say so.
#ifndef ANWEDDOL_PROVISION_TOOL
#define ANWEDDOL_PROVISION_TOOL "anweddol-provision (not built: configure with the examples)"
#endif

using anweddol::container_instance;
using anweddol::errc;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace boost::asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

const std::string system_uri = "qemu:///system";

std::string unique_owner(const char* what) {
    unsigned char bytes[4];
    anweddol::detail::random_bytes(bytes, sizeof bytes);
    return std::string("crash-test-") + what + "-" + anweddol::detail::to_hex(bytes, 4);
}

// The running domains whose metadata names `owner`.
std::vector<std::string> domains_of(const std::string& owner) {
    return run_coroutine([owner]() -> awaitable<std::vector<std::string>> {
        auto connection = co_await anweddol::hypervisor_connection::open(system_uri);
        // Outside the co_await expression: GCC 12 destroys captures there twice.
        auto listing = connection->call([owner](virConnectPtr c) {
            return anweddol::detail::list_owned_domains(c, owner).uuids;
        });
        co_return co_await std::move(listing);
    }());
}

// anweddol-provision, run as a child with its output on a pipe.
class provision_tool {
public:
    explicit provision_tool(std::vector<std::string> arguments) {
        int pipe_ends[2];
        REQUIRE(::pipe2(pipe_ends, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], STDERR_FILENO);
        arguments.insert(arguments.begin(), ANWEDDOL_PROVISION_TOOL);
        std::vector<char*> argv;
        for (auto& a : arguments)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        const int spawned = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(pipe_ends[1]);
        output_fd_ = pipe_ends[0];
        INFO("cannot run " << ANWEDDOL_PROVISION_TOOL);
        REQUIRE(spawned == 0);
    }
    ~provision_tool() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(output_fd_);
    }

    /// Reads its output until it contains `text`; false at the end of it,
    /// or after `limit`.
    bool wait_for_output(const std::string& text, std::chrono::seconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (output_.find(text) == std::string::npos) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return false;
            pollfd p{output_fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
                continue;
            char buffer[4096];
            const ssize_t got = ::read(output_fd_, buffer, sizeof buffer);
            if (got <= 0)
                return false;
            output_.append(buffer, static_cast<std::size_t>(got));
        }
        return true;
    }

    void kill_hard() {
        REQUIRE(::kill(pid_, SIGKILL) == 0);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    /// Waits for it to exit, reading all it says; its exit status.
    int wait() {
        wait_for_output(std::string(1, '\0'), std::chrono::seconds(600)); // until EOF
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    const std::string& output() const { return output_; }

private:
    pid_t pid_ = -1;
    int output_fd_ = -1;
    std::string output_;
};

std::vector<std::string> tool_arguments(const std::string& owner, unsigned count) {
    return {"--iso",         anweddol::test::test_iso(),
            "--count",       std::to_string(count),
            "--memory",      "512",
            "--domain-type", anweddol::test::test_domain_type(),
            "--owner",       owner};
}

// The domains of `owner` are all gone within `limit`.
bool all_gone(const std::string& owner, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!domains_of(owner).empty()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        ::usleep(200'000);
    }
    return true;
}

anweddol::start_options options_with(std::optional<std::chrono::steady_clock::duration> timeout,
                                     bool wait_available = true) {
    anweddol::start_options options;
    options.address_timeout = timeout;
    options.wait_available = wait_available;
    return options;
}

void run(awaitable<void> operation, std::chrono::milliseconds limit) {
    run_coroutine(
        [](awaitable<void> op) -> awaitable<bool> {
            co_await std::move(op);
            co_return true;
        }(std::move(operation)),
        limit);
}

std::shared_ptr<container_instance> sandbox_container(const std::string& owner = {}) {
    auto c = std::make_shared<container_instance>(test_context().get_executor(),
                                                  anweddol::test::test_iso(), "", 512, 1);
    auto options = c->get_options();
    options.domain_type = anweddol::test::test_domain_type();
    if (!owner.empty())
        options.owner = owner;
    c->set_options(options);
    return c;
}

} // namespace

TEST_CASE("a provisioning process killed with SIGKILL while booting leaves no domain") {
    const std::string owner = unique_owner("booting");
    provision_tool tool(tool_arguments(owner, 2));
    // Both domains exist, and their guests boot.
    REQUIRE(tool.wait_for_output(": boot", 120s));
    REQUIRE(run_until([&] { return domains_of(owner).size() == 2; }, 60s));
    tool.kill_hard();
    CHECK(all_gone(owner, 10s));
}

TEST_CASE("a provisioning process killed with SIGKILL while administering leaves no domain") {
    const std::string owner = unique_owner("administering");
    provision_tool tool(tool_arguments(owner, 1));
    INFO(tool.output());
    REQUIRE(tool.wait_for_output(": administer", 300s));
    REQUIRE(domains_of(owner).size() == 1);
    tool.kill_hard();
    CHECK(all_gone(owner, 10s));
}

TEST_CASE("kept domains outlive their process, and a sweep adopts or destroys them and no "
          "one else's") {
    const std::string owner = unique_owner("kept");
    auto args = tool_arguments(owner, 2);
    args.insert(args.end(), {"--keep", "--json"});
    provision_tool tool(args);
    const int status = tool.wait();
    INFO(tool.output());
    REQUIRE(status == 0);
    // What the tool handed out: uuid -> ip.
    const auto json_at = tool.output().find("{\"containers\"");
    REQUIRE(json_at != std::string::npos);
    const auto report = boost::json::parse(tool.output().substr(json_at)).as_object();
    std::map<std::string, std::string> handed_out;
    for (const auto& entry : report.at("containers").as_array())
        handed_out[std::string(entry.at("uuid").as_string())] =
            std::string(entry.at("ip").as_string());
    REQUIRE(handed_out.size() == 2);
    REQUIRE(domains_of(owner).size() == 2);

    // Someone else's container, running beside them.
    auto foreign = sandbox_container(unique_owner("foreign"));
    run(foreign->start_domain(options_with(std::nullopt, false)), 2min);

    anweddol::sweep_options options;
    options.owner = owner;
    options.action = anweddol::sweep_action::adopt;
    const auto adopted =
        run_coroutine(anweddol::sweep_containers(test_context().get_executor(), options), 2min);
    CHECK(adopted.destroyed.empty());
    CHECK(adopted.left_alone >= 1);
    REQUIRE(adopted.adopted.size() == 2);
    for (const auto& c : adopted.adopted) {
        INFO(c->get_uuid());
        REQUIRE(handed_out.contains(c->get_uuid()));
        CHECK(c->get_ip() == handed_out[c->get_uuid()]); // from dnsmasq's status file
        // The reservation the killed process made is found again, to be
        // released with the domain.
        CHECK(c->get_reserved_address() == handed_out[c->get_uuid()]);
        CHECK(c->get_iso_file_path() == anweddol::test::test_iso());
        CHECK(c->get_memory() == 512);
    }
    const std::string first_mac = adopted.adopted[0]->get_mac().value();
    const std::string second_mac = adopted.adopted[1]->get_mac().value();
    const std::string second_address = adopted.adopted[1]->get_reserved_address().value();
    // An adopted container stops as its own: destroy the first, and its
    // reservation goes...
    run(adopted.adopted[0]->stop_domain(), 1min);
    CHECK(domains_of(owner).size() == 1);
    CHECK(run_until(
        [&] {
            return !anweddol::test::reserved_for(anweddol::test::dhcp_host_entries(system_uri),
                                                 first_mac);
        },
        10s));

    // ...and sweep the other away, with its reservation and one that a
    // process that died left an hour ago without a domain; not one just
    // made (its domain may be being created), nor an operator's entry.
    // Planted on addresses no entry has (a guest may hold any of them), for
    // MACs of no domain, under names no earlier run left.
    const auto plant = [](const std::string& name) {
        const auto tail = anweddol::detail::random_array<3>();
        const std::string mac = "52:54:00:" + anweddol::detail::to_hex(tail.data(), 1) + ":" +
                                anweddol::detail::to_hex(tail.data() + 1, 1) + ":" +
                                anweddol::detail::to_hex(tail.data() + 2, 1);
        for (int last = 254; last > 200; --last) {
            const anweddol::detail::dhcp_reservation entry{"default", mac, name,
                                                           "192.168.122." + std::to_string(last)};
            try {
                anweddol::test::update_dhcp_host(system_uri, host_entry_xml(entry), true);
                return entry;
            } catch (const boost::system::system_error&) {
                // taken: the next one
            }
        }
        FAIL("no address free for a DHCP host entry in 192.168.122.201-254");
        return anweddol::detail::dhcp_reservation{};
    };
    const auto now = anweddol::detail::unix_now();
    const auto stale = plant(anweddol::detail::reservation_name(now - 3600));
    const auto young = plant(anweddol::detail::reservation_name(now));
    const auto operators = plant("operators-vm-" + anweddol::detail::random_uuid().substr(0, 8));
    options.action = anweddol::sweep_action::destroy;
    const auto swept =
        run_coroutine(anweddol::sweep_containers(test_context().get_executor(), options), 2min);
    CHECK(swept.destroyed == std::vector<std::string>{adopted.adopted[1]->get_uuid()});
    // Entries of other runs may go too: the sandbox's network is shared.
    const std::set<std::string> released(swept.released_addresses.begin(),
                                         swept.released_addresses.end());
    CHECK(released.contains(second_address));
    CHECK(released.contains(stale.ip));
    CHECK_FALSE(released.contains(young.ip));
    CHECK_FALSE(released.contains(operators.ip));
    const auto entries = anweddol::test::dhcp_host_entries(system_uri);
    CHECK_FALSE(anweddol::test::reserved_for(entries, second_mac));
    CHECK_FALSE(anweddol::test::has_entry_named(entries, stale.name));
    CHECK(anweddol::test::reserved_for(entries, young.mac) == young.ip);
    CHECK(anweddol::test::has_entry_named(entries, operators.name));
    // The running foreign container's reservation is its own to release.
    CHECK(anweddol::test::reserved_for(entries, foreign->get_mac().value()) ==
          foreign->get_reserved_address());
    anweddol::test::update_dhcp_host(system_uri, host_entry_xml(young), false);
    anweddol::test::update_dhcp_host(system_uri, host_entry_xml(operators), false);
    CHECK(domains_of(owner).empty());
    CHECK(foreign->is_domain_running());
    CHECK(domains_of(foreign->get_options().owner).size() == 1);
    run(foreign->stop_domain(), 1min);
}

TEST_CASE("a guest paused while it boots fails its start at once, with its console, and is "
          "destroyed") {
    const std::string owner = unique_owner("paused");
    auto container = sandbox_container(owner);
    const auto began = std::chrono::steady_clock::now();
    anweddol::diagnostics diag;
    boost::system::error_code error;
    run_coroutine(
        [&]() -> awaitable<bool> {
            anweddol::start_options options;
            options.address_timeout = 240s;
            auto starting = container->start_domain(
                options, diag, boost::asio::as_tuple(boost::asio::use_awaitable));
            // Pause the guest from outside 2 s into its boot, as QEMU does
            // on an I/O error or an emulation failure. Its domain exists only
            // once its definition is done, which takes 1-6 s here (its
            // address is reserved and its filter's rules made first).
            auto pausing = [&]() -> awaitable<void> {
                auto executor = co_await boost::asio::this_coro::executor;
                auto connection = co_await anweddol::hypervisor_connection::open(system_uri);
                const auto exists = [&]() -> awaitable<bool> {
                    auto looking =
                        connection->call([uuid = container->get_uuid()](virConnectPtr c) {
                            anweddol::detail::domain_handle d(
                                virDomainLookupByUUIDString(c, uuid.c_str()));
                            virResetLastError();
                            return d && virDomainIsActive(d.get()) == 1;
                        });
                    co_return co_await std::move(looking);
                };
                boost::asio::steady_timer wait(executor);
                for (;;) {
                    auto checking = exists(); // built outside the co_await: GCC 12
                    if (co_await std::move(checking))
                        break;
                    wait.expires_after(100ms);
                    co_await wait.async_wait(boost::asio::use_awaitable);
                }
                wait.expires_after(2s);
                co_await wait.async_wait(boost::asio::use_awaitable);
                auto suspending = connection->call([uuid = container->get_uuid()](virConnectPtr c) {
                    anweddol::detail::domain_handle d(virDomainLookupByUUIDString(c, uuid.c_str()));
                    if (!d || virDomainSuspend(d.get()) < 0)
                        anweddol::detail::throw_last_libvirt_error("cannot pause the guest");
                });
                co_await std::move(suspending);
                boost::asio::steady_timer forever(co_await boost::asio::this_coro::executor, 10min);
                co_await forever.async_wait(boost::asio::use_awaitable);
            };
            auto raced = co_await (std::move(starting) || pausing());
            error = std::get<0>(std::get<0>(raced));
            co_return true;
        }(),
        3min);
    const auto took = std::chrono::steady_clock::now() - began;
    INFO(diag.full_message());
    CHECK(error == errc::domain_paused);
    CHECK(took < 60s);
    CHECK(diag.client_message().find("paused") != std::string::npos);
    CHECK_FALSE(diag.guest_console().empty()); // SeaBIOS, isolinux, the kernel
    CHECK_FALSE(container->is_domain_running());
    CHECK(domains_of(owner).empty());
}

TEST_CASE("a KVM guest that cannot run fails fast, and the automatic type then picks qemu") {
    // On this kind of machine /dev/kvm exists but KVM guests stop with an
    // emulation failure a few seconds in; where KVM works, the first boot
    // simply succeeds, and there is nothing to check.
    auto kvm = sandbox_container();
    auto options = kvm->get_options();
    options.domain_type = "kvm";
    kvm->set_options(options);
    anweddol::diagnostics diag;
    const auto began = std::chrono::steady_clock::now();
    const auto [error] =
        run_coroutine(kvm->start_domain(options_with(240s), diag,
                                        boost::asio::as_tuple(boost::asio::use_awaitable)),
                      5min);
    if (!error) {
        WARN("KVM guests run on this host: nothing to check");
        run(kvm->stop_domain(), 1min);
        return;
    }
    INFO(diag.full_message());
    CHECK(error == errc::domain_paused);
    CHECK(std::chrono::steady_clock::now() - began < 60s);
    CHECK_FALSE(kvm->is_domain_running());

    // The automatic type learns it from its first boot, and says so.
    auto automatic = sandbox_container();
    options = automatic->get_options();
    options.domain_type.clear();
    automatic->set_options(options);
    run(automatic->start_domain(options_with(240s)), 6min);
    CHECK(automatic->get_domain_type() == "qemu");
    CHECK(automatic->get_domain_type_choice().find("KVM guest") != std::string::npos);
    CHECK(automatic->get_ip());
    run(automatic->stop_domain(), 1min);
}

TEST_CASE("a guest's console is read from its first line, and a timed-out start carries it") {
    auto& feeds = anweddol::detail::console_feeds::instance();
    const std::size_t feeds_before = feeds.size();
    auto container = sandbox_container();
    run(container->start_domain(options_with(240s)), 5min);
    // The guest's init says so on its console once DHCP is done; its line
    // ends (the newline may come in a later read than the text).
    CHECK(run_until(
        [&] {
            return container->get_console_log().find("rcS: container ready\n") != std::string::npos;
        },
        30s));
    const std::string log = container->get_console_log();
    INFO(log);
    CHECK(log.find("SeaBIOS") != std::string::npos); // the firmware's first line
    CHECK(log.find('\x1b') == std::string::npos);    // as text, without escapes
    run(container->stop_domain(), 1min);
    CHECK(container->get_console_log() == log); // kept after the domain is gone

    auto too_slow = sandbox_container();
    anweddol::diagnostics diag;
    const auto [error] =
        run_coroutine(too_slow->start_domain(options_with(2s), diag,
                                             boost::asio::as_tuple(boost::asio::use_awaitable)),
                      2min);
    CHECK(error == std::errc::timed_out);
    CHECK(diag.guest_console().find("SeaBIOS") != std::string::npos);
    CHECK_FALSE(too_slow->is_domain_running());
    // Each console's entry goes when it is closed (libvirt never frees a
    // stream callback's opaque itself).
    CHECK(run_until([&] { return feeds.size() == feeds_before; }, 10s));

    // A container that keeps no console log reads none.
    auto silent = sandbox_container();
    auto silent_options = silent->get_options();
    silent_options.console_log_bytes = 0;
    silent->set_options(silent_options);
    run(silent->start_domain(options_with(std::nullopt, false)), 2min);
    CHECK(silent->is_domain_running());
    CHECK(feeds.size() == feeds_before);
    run(silent->stop_domain(), 1min);
    CHECK(silent->get_console_log().empty());
}
