// What a guest announces on its console, read as the bytes arrive
// (detail/ssh/console_scanner.hpp, detail/libvirt/console_log.hpp) and
// waited for (detail/console_announcement.hpp), and provision()'s use of it
// (issue 19, section 3: host keys fail closed). Each way the old reading,
// which parsed the log's 8 KiB ring every 100 ms, fell back to trusting the
// first key: a block after the lease, a block pushed out of the ring, CR-only
// lines, a later injected block.
#include "libvirt_domains.hpp"
#include "scratch_directory.hpp"
#include "test_context.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/container_pool.hpp>
#include <anweddol/detail/console_announcement.hpp>
#include <anweddol/detail/libvirt/console_log.hpp>
#include <anweddol/detail/ssh/console_scanner.hpp>
#include <anweddol/provisioning.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>

#include <catch2/catch.hpp>

#include <ctime>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using anweddol::errc;
using anweddol::detail::console_announcement;
using anweddol::detail::console_host_key;
using anweddol::detail::console_ring;
using anweddol::detail::console_scanner;
using anweddol::detail::scan_console;
using anweddol::test::run_until;
using anweddol::test::test_context;
using namespace std::chrono_literals;

namespace {

const std::string ed25519 = "SHA256:pvPLIxg3DubizDUKemTJSv9d35jbNzI5dgsNf91uM44";
const std::string ecdsa = "SHA256:grlvoMqMQ8gjyhejG+dcmxoCOuC5aG7wFuPq4WHnUlI";
const std::string password = "Q7pWx2Lr9TzK4mNc8VbJ3hYd6FgS1aEo";
const std::vector<console_host_key> both = {{"ECDSA", ecdsa}, {"ED25519", ed25519}};

// The guest's host-key block, as tests/guest's rcS prints it.
std::string host_key_block(const std::vector<std::string>& fingerprints = {ecdsa, ed25519},
                           const std::string& eol = "\r\n") {
    const std::string prefix = "<14>Nov 29 17:02:14 ec2: ";
    std::string text = prefix + "-----BEGIN SSH HOST KEY FINGERPRINTS-----" + eol;
    for (const auto& f : fingerprints)
        text += prefix + "256 " + f + " root@anweddol-container (" +
                (f == ecdsa ? "ECDSA" : "ED25519") + ")" + eol;
    return text + prefix + "-----END SSH HOST KEY FINGERPRINTS-----" + eol;
}

// The endpoint block the guest prints right before it.
std::string endpoint_block(const std::string& secret = password,
                           const std::string& features = "features sftp port-forwarding",
                           const std::string& eol = "\r\n") {
    return "rcS: -----BEGIN ANWEDDOL ENDPOINT-----" + eol + "password " + secret + eol + features +
           eol + "rcS: -----END ANWEDDOL ENDPOINT-----" + eol;
}

std::string kernel_noise(std::size_t bytes) {
    std::string noise;
    for (int i = 0; noise.size() < bytes; ++i)
        noise += "[   " + std::to_string(i) + ".000000] virtio_net virtio0: link up\r\n";
    return noise;
}

// Feeds `text` to a scanner in pieces of `piece` bytes (0: byte by byte),
// returning what the log was given.
std::string feed_in_pieces(console_scanner& scanner, const std::string& text, std::size_t piece) {
    std::string log;
    const auto to_log = [&](std::string_view shown) {
        log += shown;
    };
    for (std::size_t at = 0; at < text.size(); at += std::max<std::size_t>(piece, 1))
        scanner.feed(std::string_view(text).substr(at, std::max<std::size_t>(piece, 1)), to_log);
    return log;
}

// Runs `waiting` on the test context; its result once done.
struct waiter {
    std::optional<console_announcement> result;
    std::exception_ptr error;
    bool done = false;
};

void start(waiter& w, boost::asio::awaitable<console_announcement> waiting,
           boost::asio::cancellation_slot slot = {}) {
    boost::asio::co_spawn(test_context(), std::move(waiting),
                          boost::asio::bind_cancellation_slot(
                              slot, [&w](std::exception_ptr e, console_announcement a) {
                                  w.error = e;
                                  if (!e)
                                      w.result.emplace(std::move(a));
                                  w.done = true;
                              }));
}

// Runs the test context until nothing is ready to run: a waiter is then
// suspended on its wait.
void run_ready_handlers() {
    test_context().restart();
    test_context().poll();
}

} // namespace

TEST_CASE("console scanner: a block pushed out of the log's 8 KiB ring by more output is still "
          "announced") {
    console_ring ring(8192);
    ring.append(host_key_block());
    ring.append(kernel_noise(64 * 1024));
    // Gone from the log the old code parsed...
    CHECK(ring.text().find("BEGIN SSH HOST KEY") == std::string::npos);
    CHECK(ring.truncated());
    // ...but read as it arrived.
    const auto seen = ring.announcement();
    CHECK(seen.host_keys_complete);
    CHECK(seen.host_keys == both);
}

TEST_CASE("console scanner: CR-only lines end lines, in the scanner and in the log's text") {
    console_ring ring(8192);
    ring.append("udhcpc: lease obtained\r" + host_key_block({ecdsa, ed25519}, "\r") + "done\r");
    CHECK(ring.announcement().host_keys == both);
    // The log's text shows the lines apart (the old one dropped bare CRs,
    // gluing the block into one line that no parser could read).
    const std::string text = ring.text();
    CHECK(text.find("lease obtained\n<14>") != std::string::npos);
    CHECK(text.find("-----END SSH HOST KEY FINGERPRINTS-----\ndone") != std::string::npos);
}

TEST_CASE("console scanner: the first complete block of a boot counts, a later injected one is "
          "ignored") {
    const std::string injected_password = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    console_ring ring(8192);
    ring.append(endpoint_block() + host_key_block());
    ring.append("$ echo attack >/dev/console\r\n" + endpoint_block(injected_password) +
                host_key_block({ed25519}));
    const auto seen = ring.announcement();
    CHECK(seen.host_keys == both);
    REQUIRE(seen.endpoint);
    CHECK(seen.endpoint->password == password);
    CHECK(seen.endpoint->features == std::vector<std::string>{"sftp", "port-forwarding"});
    CHECK_FALSE(seen.block_open);
    // The later block's password is kept out of the log all the same.
    CHECK(ring.text().find(injected_password) == std::string::npos);
}

TEST_CASE("console scanner: any split of the bytes into pieces announces the same") {
    const std::string console = kernel_noise(300) + "\x1b[0m" + endpoint_block("", "features") +
                                endpoint_block() + host_key_block() + "rcS: container ready\r\n";
    const auto whole = scan_console(console);
    REQUIRE(whole.host_keys == both);
    REQUIRE(whole.endpoint);
    CHECK(whole.endpoint->features.empty() == false);
    for (std::size_t piece : {0, 1, 2, 3, 7, 64, 4096}) {
        INFO("pieces of " << piece << " bytes");
        console_scanner scanner;
        feed_in_pieces(scanner, console, piece);
        const auto seen = scanner.announcement();
        CHECK(seen.host_keys == both);
        REQUIRE(seen.endpoint);
        CHECK(seen.endpoint->password == password);
    }
}

TEST_CASE("console scanner: the endpoint block's format, exactly") {
    const auto endpoint_of = [](const std::string& console) {
        return scan_console(console).endpoint;
    };
    // No features at all, LF endings, any prefix before the markers.
    auto endpoint = endpoint_of(endpoint_block(password, "features", "\n"));
    REQUIRE(endpoint);
    CHECK(endpoint->features.empty());
    CHECK(endpoint_of(endpoint_block(std::string(20, 'a'))));
    CHECK(endpoint_of(endpoint_block(std::string(128, 'Z'))));
    // Refused: a password too short, too long or not alphanumeric; a
    // feature with a capital; a prefix before a line; a line missing; two
    // password lines; no end.
    CHECK_FALSE(endpoint_of(endpoint_block(std::string(19, 'a'))));
    CHECK_FALSE(endpoint_of(endpoint_block(std::string(129, 'a'))));
    CHECK_FALSE(endpoint_of(endpoint_block(password + "!")));
    CHECK_FALSE(endpoint_of(endpoint_block(password, "features SFTP")));
    CHECK_FALSE(endpoint_of(endpoint_block(password, "rcS: features")));
    CHECK_FALSE(endpoint_of("-----BEGIN ANWEDDOL ENDPOINT-----\npassword " + password +
                            "\n-----END ANWEDDOL ENDPOINT-----\n"));
    CHECK_FALSE(endpoint_of("-----BEGIN ANWEDDOL ENDPOINT-----\npassword " + password +
                            "\npassword " + password +
                            "\nfeatures\n-----END ANWEDDOL ENDPOINT-----\n"));
    const auto open = scan_console("-----BEGIN ANWEDDOL ENDPOINT-----\npassword " + password);
    CHECK_FALSE(open.endpoint);
    CHECK(open.block_open);
}

TEST_CASE("console log: an endpoint block's password never reaches the log, however the bytes "
          "are split") {
    const std::string console = "rcS: starting\r\n" + endpoint_block() + host_key_block() +
                                "rcS: container ready\r\npartial line";
    for (std::size_t split = 0; split <= console.size(); ++split) {
        console_ring ring(8192);
        ring.append(console.substr(0, split));
        ring.append(console.substr(split));
        INFO("split at byte " << split);
        const std::string text = ring.text();
        REQUIRE(text.find(password) == std::string::npos);
        REQUIRE(ring.raw().find(password) == std::string::npos);
        REQUIRE(text.find("password [redacted]\n") != std::string::npos);
        // Everything else reads as it was printed.
        REQUIRE(text.find("rcS: starting\nrcS: -----BEGIN ANWEDDOL ENDPOINT-----\n") !=
                std::string::npos);
        REQUIRE(text.find("features sftp port-forwarding\nrcS: -----END ANWEDDOL "
                          "ENDPOINT-----\n<14>") != std::string::npos);
        REQUIRE(text.ends_with("rcS: container ready\npartial line"));
        REQUIRE(ring.announcement().endpoint);
        REQUIRE(ring.announcement().endpoint->password == password);
    }
    // Byte by byte, and with bare CRs.
    console_ring ring(8192);
    for (const char c : endpoint_block(password, "features", "\r"))
        ring.append(std::string(1, c));
    CHECK(ring.text().find(password) == std::string::npos);
    CHECK(ring.text().find("\npassword [redacted]\nfeatures\n") != std::string::npos);
    // Prefixed or malformed, a password line is hidden too.
    console_ring odd(8192);
    odd.append("-----BEGIN ANWEDDOL ENDPOINT-----\nec2: password " + password + "\npassword " +
               password + "!\n");
    CHECK(odd.text().find(password) == std::string::npos);
}

TEST_CASE("console scanner: a line longer than 4 KiB is dropped, and what follows still reads") {
    console_scanner scanner;
    std::string log;
    const auto to_log = [&](std::string_view shown) {
        log += shown;
    };
    // A marker at the end of an overlong line is no marker.
    scanner.feed(std::string(1 << 20, 'x') + "-----BEGIN ANWEDDOL ENDPOINT-----\r\n", to_log);
    CHECK_FALSE(scanner.announcement().block_open);
    // An overlong line inside an endpoint block is hidden from the log.
    scanner.feed("-----BEGIN ANWEDDOL ENDPOINT-----\npassword " + std::string(5000, 'p') + "\n",
                 to_log);
    CHECK(log.find("ppp") == std::string::npos);
    CHECK(log.find("over 4096 bytes, hidden") != std::string::npos);
    scanner.feed(host_key_block(), to_log);
    CHECK(scanner.announcement().host_keys == both);
}

TEST_CASE("await_console_announcement: a block that is already there completes it at once") {
    auto ring = std::make_shared<console_ring>(8192);
    ring->append(host_key_block());
    waiter w;
    start(w, anweddol::detail::await_console_announcement(ring, 1h, true));
    run_ready_handlers();
    REQUIRE(w.done);
    CHECK(w.result->host_keys == both);
}

TEST_CASE("await_console_announcement: a block printed after the lease wakes the wait, fed from "
          "another thread") {
    auto ring = std::make_shared<console_ring>(8192);
    ring->append(kernel_noise(500) + "udhcpc: lease of 10.0.0.7 obtained\r\n");
    waiter w;
    start(w, anweddol::detail::await_console_announcement(ring, 1h, true));
    run_ready_handlers();
    REQUIRE_FALSE(w.done); // waiting, with no block yet
    // The block arrives later, in pieces, from the thread that reads the
    // console.
    const std::string late = endpoint_block() + host_key_block();
    std::thread guest([&] {
        ring->append(late.substr(0, 100));
        ring->append(late.substr(100));
    });
    guest.join();
    REQUIRE(run_until([&] { return w.done; }, 5s));
    REQUIRE_FALSE(w.error);
    CHECK(w.result->host_keys == both);
    REQUIRE(w.result->endpoint);
    CHECK(w.result->endpoint->password == password);
}

TEST_CASE("await_console_announcement: without wait_for_host_keys, it waits only while a block "
          "is arriving") {
    auto ring = std::make_shared<console_ring>(8192);
    ring->append("rcS: starting\r\n");
    waiter idle;
    start(idle, anweddol::detail::await_console_announcement(ring, 1h, false));
    run_ready_handlers();
    REQUIRE(idle.done); // no block has begun: nothing to wait for
    CHECK_FALSE(idle.result->host_keys_complete);

    // The endpoint block ended: its host-key block follows right after.
    const std::string blocks = endpoint_block() + host_key_block();
    const auto cut = blocks.find("256 SHA256");
    for (const std::size_t at : {blocks.find("-----BEGIN SSH"), cut}) {
        auto partial = std::make_shared<console_ring>(8192);
        partial->append(blocks.substr(0, at));
        waiter w;
        start(w, anweddol::detail::await_console_announcement(partial, 1h, false));
        run_ready_handlers();
        REQUIRE_FALSE(w.done);
        partial->append(blocks.substr(at));
        REQUIRE(run_until([&] { return w.done; }, 5s));
        CHECK(w.result->host_keys == both);
    }
}

TEST_CASE("await_console_announcement: after its limit it returns what there is, and the console's "
          "end and a cancellation end it at once") {
    auto ring = std::make_shared<console_ring>(8192);
    ring->append("-----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n");
    waiter late;
    start(late, anweddol::detail::await_console_announcement(ring, 200ms, true));
    REQUIRE(run_until([&] { return late.done; }, 5s));
    CHECK_FALSE(late.error);
    CHECK_FALSE(late.result->host_keys_complete);
    CHECK(late.result->block_open);

    waiter ended;
    start(ended, anweddol::detail::await_console_announcement(ring, 1h, true));
    run_ready_handlers();
    REQUIRE_FALSE(ended.done);
    ring->end();
    REQUIRE(run_until([&] { return ended.done; }, 5s));
    CHECK(ended.result->console_ended);

    auto quiet = std::make_shared<console_ring>(8192);
    boost::asio::cancellation_signal cancel;
    waiter cancelled;
    start(cancelled, anweddol::detail::await_console_announcement(quiet, 1h, true), cancel.slot());
    run_ready_handlers();
    REQUIRE_FALSE(cancelled.done);
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(run_until([&] { return cancelled.done; }, 5s));
    REQUIRE(cancelled.error);
    try {
        std::rethrow_exception(cancelled.error);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == boost::asio::error::operation_aborted);
    }

    waiter no_console;
    start(no_console, anweddol::detail::await_console_announcement(nullptr, 1h, true));
    run_ready_handlers();
    REQUIRE(no_console.done);
    CHECK(no_console.result->console_ended);
}

namespace {

const std::string test_uri = "test:///default";

std::string lease_json(const std::string& mac, const std::string& ip, long expiry) {
    return "[{\"ip-address\": \"" + ip + "\", \"mac-address\": \"" + mac +
           "\", \"hostname\": \"live\", \"expiry-time\": " + std::to_string(expiry) + "}]";
}

// provision() on test:///, which has no console: a ring the test feeds
// stands in for the guest's, and the lease points at 127.0.0.1, where no
// endpoint answers (no traffic leaves loopback). `feed(ring)` runs once the
// address is known; returns the error provision() completed with.
template <class Feed>
std::pair<boost::system::error_code, std::string>
provision_with_console(anweddol::provisioning_options options, Feed feed,
                       std::shared_ptr<anweddol::container_instance>& container) {
    anweddol::test::scratch s;
    container = std::make_shared<anweddol::container_instance>(test_context().get_executor(),
                                                               s.iso.string(), "", 512, 1);
    auto container_options = container->get_options();
    container_options.lease_directory = s.leases;
    container_options.bypass_admission = true;
    container_options.address_poll_interval = 0ms;
    container->set_options(container_options);
    auto ring = std::make_shared<console_ring>(8192);
    options.driver_uri = test_uri;
    options.address_timeout = 20s;
    options.on_progress = [&](const anweddol::provisioning_event& e) {
        if (e.phase == anweddol::provisioning_phase::waiting_for_address) {
            anweddol::detail::console_access::attach(*container, ring);
            s.replace_status_file("virbr0.status", lease_json(*container->get_mac(), "127.0.0.1",
                                                              std::time(nullptr) + 3600));
        } else if (e.phase == anweddol::provisioning_phase::waiting_for_ssh) {
            feed(ring);
        }
    };
    anweddol::diagnostics diag;
    std::optional<boost::system::error_code> result;
    anweddol::provision(container, options, diag,
                        [&](boost::system::error_code ec, anweddol::provisioned_container p) {
                            CHECK(p.password.empty());
                            result = ec;
                        });
    REQUIRE(run_until([&] { return result.has_value(); }, 30s));
    return {*result, diag.client_message()};
}

} // namespace

TEST_CASE("provision: require_console_host_keys fails closed when no block arrives, naming the "
          "container and the wait, and leaves no domain") {
    anweddol::provisioning_options options;
    options.require_console_host_keys = true;
    options.shell.ready_timeout = 300ms;
    std::shared_ptr<anweddol::container_instance> container;
    const auto began = std::chrono::steady_clock::now();
    const auto [error, message] = provision_with_console(
        options, [](const auto& ring) { ring->append("rcS: no keys today\r\n"); }, container);
    INFO(message);
    CHECK(error == errc::console_host_keys_missing);
    CHECK(std::chrono::steady_clock::now() - began >= 300ms);
    CHECK(message.find("container " + container->get_uuid()) != std::string::npos);
    CHECK(message.find("within 0.3 s") != std::string::npos);
    CHECK_FALSE(container->is_domain_running());
    CHECK_FALSE(anweddol::test::domain_uuids(test_uri).contains(container->get_uuid()));
}

TEST_CASE("provision: a required block printed after the address is known is waited for") {
    anweddol::provisioning_options options;
    options.require_console_host_keys = true;
    options.shell.ready_timeout = 2s;
    options.shell.attempt_timeout = 200ms;
    std::optional<boost::asio::steady_timer> guest;
    std::shared_ptr<anweddol::container_instance> container;
    // The guest prints its block a little after its lease, as cloud-init's
    // final stage does.
    const auto [error, message] = provision_with_console(
        options,
        [&](const auto& ring) {
            guest.emplace(test_context(), 300ms);
            guest->async_wait(
                [ring](boost::system::error_code) { ring->append(host_key_block()); });
        },
        container);
    INFO(message);
    // Past the host keys, to the endpoint's login, which nothing answers.
    CHECK(error != errc::console_host_keys_missing);
    CHECK((error == std::errc::timed_out || error == errc::authentication_failed ||
           error == errc::host_key_mismatch));
    CHECK_FALSE(container->is_domain_running());
}

TEST_CASE("provision: without require_console_host_keys, a console without keys falls back to "
          "accept_new as before") {
    anweddol::provisioning_options options;
    options.shell.ready_timeout = 300ms;
    options.shell.attempt_timeout = 100ms;
    std::shared_ptr<anweddol::container_instance> container;
    const auto [error, message] = provision_with_console(
        options, [](const auto& ring) { ring->append("rcS: no keys today\r\n"); }, container);
    INFO(message);
    CHECK(error != errc::console_host_keys_missing);
    CHECK_FALSE(container->is_domain_running());
}

TEST_CASE("container pool: requires the console's host keys by default") {
    CHECK(anweddol::container_pool_options().provisioning.require_console_host_keys);
    CHECK_FALSE(anweddol::provisioning_options().require_console_host_keys);
}
