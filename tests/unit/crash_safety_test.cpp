// What keeps containers from being lost or waited out, on libvirt's
// test:///default driver: reading a domain's XML back, adopting and sweeping
// the domains an earlier process left, the console ring, and the lifecycle
// events that end a start at once.
#include "libvirt_domains.hpp"
#include "scratch_directory.hpp"
#include "test_context.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/container_sweep.hpp>
#include <anweddol/detail/libvirt/console_log.hpp>
#include <anweddol/detail/libvirt/domain_description.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/libvirt/stop_signal.hpp>
#include <anweddol/detail/random.hpp>
#include <anweddol/error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

using anweddol::container_instance;
using anweddol::errc;
using anweddol::test::run_coroutine;
using anweddol::test::scratch;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace std::chrono_literals;

namespace {

const std::string test_uri = "test:///default";

std::shared_ptr<container_instance> owned_container(const scratch& s, const std::string& owner,
                                                    std::string iso = {}) {
    auto container = std::make_shared<container_instance>(
        test_context().get_executor(), iso.empty() ? s.iso.string() : iso, "", 768, 2);
    auto options = container->get_options();
    options.lease_directory = s.leases;
    options.bypass_admission = true;
    options.owner = owner;
    container->set_options(options);
    return container;
}

void start(container_instance& c) {
    run_coroutine([&]() -> awaitable<bool> {
        co_await c.start_domain(false, 20, test_uri);
        co_return true;
    }());
}

// The domains libvirt runs now, by UUID.
std::set<std::string> running_domains() {
    return anweddol::test::domain_uuids(test_uri);
}

anweddol::sweep_result sweep(const std::string& owner, anweddol::sweep_action action,
                             const scratch& s) {
    anweddol::sweep_options options;
    options.driver_uri = test_uri;
    options.owner = owner;
    options.action = action;
    options.container_options.lease_directory = s.leases;
    return run_coroutine(anweddol::sweep_containers(test_context().get_executor(), options));
}

std::string unique_owner(const char* what) {
    unsigned char bytes[4];
    anweddol::detail::random_bytes(bytes, sizeof bytes);
    return std::string("unit-") + what + "-" + anweddol::detail::to_hex(bytes, sizeof bytes);
}

} // namespace

TEST_CASE("domain description: what domain_xml() wrote comes back from libvirt intact") {
    scratch s;
    const auto hostile = s.root / "a 'b' \"c\" <d> & e\tf.iso";
    std::ofstream(hostile) << "iso";
    auto container = owned_container(s, "owner", hostile.string());
    start(*container);
    char* xml = virDomainGetXMLDesc(container->get_domain_descriptor(), 0);
    REQUIRE(xml);
    const std::string text = xml;
    std::free(xml);
    const auto d = anweddol::detail::describe_domain(text);
    REQUIRE(d);
    CHECK(d->uuid == container->get_uuid());
    CHECK(d->type == "test");
    CHECK(d->memory_mib == 768);
    CHECK(d->vcpus == 2);
    CHECK(d->iso_path == hostile.string());
    CHECK(d->bridge == "virbr0");
    CHECK(d->mac == container->get_mac());
    container.reset();
}

TEST_CASE("domain description: malformed XML and references give up instead of guessing") {
    using anweddol::detail::describe_domain;
    using anweddol::detail::xml_unescape;
    CHECK(xml_unescape("a&amp;b&#9;c&#x41;&lt;&gt;&apos;&quot;") == "a&b\tcA<>'\"");
    CHECK(xml_unescape("&#233;") == "\xc3\xa9");
    CHECK_FALSE(xml_unescape("&nbsp;"));
    CHECK_FALSE(xml_unescape("&#;"));
    CHECK_FALSE(xml_unescape("&#0;"));
    CHECK_FALSE(xml_unescape("&#xD800;"));
    CHECK_FALSE(xml_unescape("&#1114112;"));
    CHECK_FALSE(xml_unescape("&amp"));
    CHECK_FALSE(describe_domain(""));
    CHECK_FALSE(describe_domain("<domain type='kvm'><uuid>x</uuid></domain>"));
    // No NIC on a bridge: not a container's.
    CHECK_FALSE(describe_domain("<domain type='kvm'><uuid>x</uuid><memory unit='KiB'>1024</memory>"
                                "<vcpu>1</vcpu><devices></devices></domain>"));
    const auto d = describe_domain(
        "<domain type=\"qemu\"><uuid>u</uuid><memory unit=\"GiB\">2</memory><vcpu>3</vcpu>"
        "<devices><interface type='network'><mac address='m1'/><source network='x'/></interface>"
        "<interface type='bridge'><mac address='m2'/><source bridge='br'/></interface>"
        "</devices></domain>");
    REQUIRE(d);
    CHECK(d->memory_mib == 2048);
    CHECK(d->vcpus == 3);
    CHECK(d->mac == "m2");
    CHECK(d->bridge == "br");
    CHECK(d->iso_path.empty());
}

TEST_CASE("sweep: adopts this owner's domains with their address, and leaves others alone") {
    scratch s;
    const std::string owner = unique_owner("adopt");
    auto first = owned_container(s, owner);
    auto second = owned_container(s, owner);
    auto foreign = owned_container(s, unique_owner("foreign"));
    for (auto* c : {first.get(), second.get(), foreign.get()})
        start(*c);
    const std::string first_uuid = first->get_uuid(), second_uuid = second->get_uuid();
    const std::string first_mac = *first->get_mac();
    s.replace_status_file("virbr0.status", "[{\"ip-address\": \"10.0.0.42\", \"mac-address\": \"" +
                                               first_mac +
                                               "\", \"hostname\": \"x\", \"expiry-time\": " +
                                               std::to_string(std::time(nullptr) + 3600) + "}]");
    // The process that made them is gone: they run, and nobody holds them.
    first->set_domain_descriptor(nullptr);
    second->set_domain_descriptor(nullptr);
    first.reset();
    second.reset();

    const auto result = sweep(owner, anweddol::sweep_action::adopt, s);
    CHECK(result.destroyed.empty());
    CHECK(result.left_alone >= 1);
    REQUIRE(result.adopted.size() == 2);
    std::set<std::string> uuids;
    for (const auto& c : result.adopted) {
        uuids.insert(c->get_uuid());
        CHECK(c->is_domain_running());
        CHECK(c->get_memory() == 768);
        CHECK(c->get_vcpus() == 2);
        CHECK(c->get_iso_file_path() == s.iso.string());
        CHECK(c->get_nat_interface_name() == "virbr0");
        CHECK(c->get_options().owner == owner);
        CHECK(c->get_domain_type() == "test");
        if (c->get_uuid() == first_uuid) {
            CHECK(c->get_mac() == first_mac);
            CHECK(c->get_ip() == "10.0.0.42"); // from the status file
        } else {
            CHECK(c->get_ip() == "192.168.0.1"); // from libvirt's test driver
        }
    }
    CHECK(uuids == std::set<std::string>{first_uuid, second_uuid});

    // Adopted containers stop their domains as their own.
    for (const auto& c : result.adopted)
        run_coroutine([&]() -> awaitable<bool> {
            co_await c->stop_domain();
            co_return true;
        }());
    const auto running = running_domains();
    CHECK_FALSE(running.contains(first_uuid));
    CHECK_FALSE(running.contains(second_uuid));
    CHECK(running.contains(foreign->get_uuid()));
    CHECK(sweep(owner, anweddol::sweep_action::adopt, s).adopted.empty());
}

TEST_CASE("sweep: destroys this owner's domains, and only those") {
    scratch s;
    const std::string owner = unique_owner("destroy");
    auto mine = owned_container(s, owner);
    auto foreign = owned_container(s, owner + "-not");
    start(*mine);
    start(*foreign);
    const std::string uuid = mine->get_uuid();
    mine->set_domain_descriptor(nullptr);

    const auto result = sweep(owner, anweddol::sweep_action::destroy, s);
    CHECK(result.adopted.empty());
    CHECK(result.destroyed == std::vector<std::string>{uuid});
    const auto running = running_domains();
    CHECK_FALSE(running.contains(uuid));
    CHECK(running.contains(foreign->get_uuid()));
}

TEST_CASE("sweep: an empty owner is refused before anything is touched") {
    scratch s;
    auto foreign = owned_container(s, unique_owner("kept"));
    start(*foreign);
    anweddol::sweep_options options;
    options.driver_uri = test_uri;
    try {
        (void)anweddol::sweep_containers(test_context().get_executor(), options);
        FAIL("an empty owner was accepted");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == errc::invalid_argument);
        CHECK(std::string(e.what()).find("owner") != std::string::npos);
    }
    CHECK(running_domains().contains(foreign->get_uuid()));
}

TEST_CASE("adopt_domain: refuses a container that runs, and a UUID libvirt does not run") {
    scratch s;
    auto running = owned_container(s, "x");
    start(*running);
    const auto adopt = [](container_instance& c) {
        try {
            run_coroutine([&]() -> awaitable<bool> {
                co_await c.adopt_domain(test_uri);
                co_return true;
            }());
        } catch (const boost::system::system_error& e) {
            return e.code();
        }
        return boost::system::error_code();
    };
    CHECK(adopt(*running) == errc::domain_already_running);
    auto nobody = owned_container(s, "x");
    CHECK(adopt(*nobody) == errc::domain_not_running);
    CHECK_FALSE(nobody->is_domain_running());
}

TEST_CASE("console ring: keeps the last bytes, as text without terminal escapes") {
    anweddol::detail::console_ring ring(32);
    ring.append("\x1b"
                "c\x1b[?7l\x1b[2JSeaBIOS\r\n"); // 20 bytes
    CHECK(ring.text() == "SeaBIOS\n");
    CHECK_FALSE(ring.truncated());
    ring.append("0123456789abcdef-tail"); // 41 in all: the first 9 go
    CHECK(ring.raw().size() == 32);
    CHECK(ring.raw().ends_with("SeaBIOS\r\n0123456789abcdef-tail"));
    CHECK(ring.truncated());
    CHECK(ring.text().starts_with("[...] "));
    ring.append(std::string(40, 'x'));
    CHECK(ring.raw() == std::string(32, 'x'));
    anweddol::detail::console_ring controls(64);
    controls.append(std::string("a\x01"
                                "b\tc\x7f",
                                6));
    CHECK(controls.text() == "a?b\tc\x7f");
}

TEST_CASE("stop signal: a pause after the guest ran ends a start, and one before it does not") {
    boost::asio::io_context context;
    using anweddol::detail::stop_signal;
    SECTION("created paused, resumed, then paused on its own") {
        stop_signal s(context.get_executor());
        s.on_event(VIR_DOMAIN_EVENT_STARTED, 0, true);
        s.on_event(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED, true);
        CHECK_FALSE(s.raised());
        s.on_event(VIR_DOMAIN_EVENT_RESUMED, 0, true);
        CHECK_FALSE(s.raised());
        s.on_event(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_IOERROR, true);
        REQUIRE(s.raised());
        CHECK(s.code() == errc::domain_paused);
        CHECK(s.describe().find("I/O error") != std::string::npos);
    }
    SECTION("a stop watch ignores pauses") {
        stop_signal s(context.get_executor());
        s.on_event(VIR_DOMAIN_EVENT_RESUMED, 0, false);
        s.on_event(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED, false);
        CHECK_FALSE(s.raised());
        s.on_event(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED, false);
        CHECK(s.code() == errc::domain_not_running);
        CHECK(s.describe() == "was destroyed");
    }
    SECTION("a panic, and the first event wins") {
        stop_signal s(context.get_executor());
        s.on_event(VIR_DOMAIN_EVENT_CRASHED, VIR_DOMAIN_EVENT_CRASHED_PANICKED, true);
        s.on_event(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_CRASHED, true);
        CHECK(s.code() == errc::domain_crashed);
        CHECK(s.describe().find("panicked") != std::string::npos);
    }
}

TEST_CASE("diagnostics: a start's error gets the console, and keeps its code and words") {
    using anweddol::detail::with_guest_console;
    const auto code_and_diag = [](std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const anweddol::error_with_diagnostics& x) {
            return std::make_pair(x.code(), x.get_diagnostics());
        }
    };
    auto [code, diag] = code_and_diag(with_guest_console(
        std::make_exception_ptr(anweddol::error_with_diagnostics(
            make_error_code(errc::ip_wait_timeout), anweddol::diagnostics("no address", "srv"))),
        "boot log"));
    CHECK(code == errc::ip_wait_timeout);
    CHECK(diag.client_message() == "no address");
    CHECK(diag.server_message() == "srv");
    CHECK(diag.guest_console() == "boot log");

    std::tie(code, diag) = code_and_diag(
        with_guest_console(std::make_exception_ptr(boost::system::system_error(
                               boost::asio::error::operation_aborted, "cancelled while waiting")),
                           "log"));
    CHECK(code == boost::asio::error::operation_aborted);
    CHECK(diag.client_message() == "cancelled while waiting");
    CHECK(diag.guest_console() == "log");

    const auto plain = std::make_exception_ptr(std::runtime_error("x"));
    CHECK(with_guest_console(plain, "log") == plain);
}

TEST_CASE("container: autodestroy and the console are on by default") {
    container_instance c(test_context().get_executor());
    CHECK(c.get_options().autodestroy);
    CHECK(c.get_options().console_log_bytes > 0);
    CHECK(c.get_console_log().empty());
    CHECK(c.get_domain_type().empty());
}
