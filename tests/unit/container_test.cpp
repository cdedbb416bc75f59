// Containers and the container store, on libvirt's test:///default driver:
// every getter, setter and error, the domain's XML, lease discovery through
// the status file's inotify wake-up, and cancellation at each phase.
#include "libvirt_domains.hpp"
#include "scratch_directory.hpp"
#include "test_context.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/cpu_use_window.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/dhcp_host_entries.hpp>
#include <anweddol/detail/libvirt/domain_xml.hpp>
#include <anweddol/detail/libvirt/network_filter.hpp>
#include <anweddol/detail/libvirt/snapshot_image.hpp>
#include <anweddol/provisioning.hpp>
#include <anweddol/snapshot_slot.hpp>
#include <anweddol/virtualization_interface.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <string>

using anweddol::container_instance;
using anweddol::errc;
using anweddol::virtualization_interface;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::scratch;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string test_uri = "test:///default";

std::string lease_json(const std::string& mac, const std::string& ip, long expiry) {
    return "[{\"ip-address\": \"" + ip + "\", \"mac-address\": \"" + mac +
           "\", \"hostname\": \"live\", \"expiry-time\": " + std::to_string(expiry) + "}]";
}

// A container for test:///: the status file in the scratch directory and
// optionally no asking libvirt, whose test driver makes addresses up at once.
std::shared_ptr<container_instance> test_container(const scratch& s, bool ask_libvirt = true) {
    auto container = std::make_shared<container_instance>(test_context().get_executor(),
                                                          s.iso.string(), "", 512, 1);
    auto options = container->get_options();
    options.lease_directory = s.leases;
    options.bypass_admission = true;
    if (!ask_libvirt)
        options.address_poll_interval = 0ms;
    container->set_options(options);
    return container;
}

// The domains libvirt runs now, by UUID.
std::set<std::string> running_domains() {
    return anweddol::test::domain_uuids(test_uri);
}

bool domain_exists(const std::string& uuid) {
    return running_domains().contains(uuid);
}

// The error code that running `coroutine` ends with; fails when it succeeds.
boost::system::system_error error_of(awaitable<void> coroutine,
                                     std::chrono::milliseconds limit = 30s) {
    try {
        run_coroutine(
            [&]() -> awaitable<bool> {
                co_await std::move(coroutine);
                co_return true;
            }(),
            limit);
    } catch (const boost::system::system_error& e) {
        return e;
    }
    FAIL("the operation succeeded");
    throw std::logic_error("unreachable");
}

template <class F>
boost::system::system_error thrown_by(F f) {
    try {
        f();
    } catch (const boost::system::system_error& e) {
        return e;
    }
    FAIL("no error was thrown");
    throw std::logic_error("unreachable");
}

} // namespace

TEST_CASE("container: the reference's defaults, a fresh random UUID each, and the getters") {
    auto executor = test_context().get_executor();
    container_instance a(executor);
    container_instance b(executor, "/srv/live.iso");
    CHECK(a.get_memory() == 2048);
    CHECK(a.get_vcpus() == 2);
    CHECK(a.get_nat_interface_name() == "virbr0");
    CHECK(a.get_iso_file_path().empty());
    CHECK(b.get_iso_file_path() == "/srv/live.iso");
    CHECK(a.get_uuid().size() == 36);
    CHECK(a.get_uuid()[14] == '4'); // version 4
    CHECK(a.get_uuid() != b.get_uuid());
    CHECK_FALSE(a.is_domain_running());
    CHECK(a.get_domain_descriptor() == nullptr);
    CHECK(thrown_by([&] { (void)a.get_ip(); }).code() == errc::domain_not_created);
    CHECK(thrown_by([&] { (void)a.get_mac(); }).code() == errc::domain_not_created);

    container_instance upper(executor, "", "0A1B2C3D-0000-4000-8000-00000000000F");
    CHECK(upper.get_uuid() == "0a1b2c3d-0000-4000-8000-00000000000f");
}

TEST_CASE("container: bad values are refused with a specific error and change nothing") {
    auto executor = test_context().get_executor();
    CHECK(thrown_by([&] { container_instance(executor, "", "", 511); }).code() ==
          errc::invalid_memory);
    CHECK(thrown_by([&] { container_instance(executor, "", "", 2048, 0); }).code() ==
          errc::invalid_vcpus);
    for (const char* uuid : {"x", "0a1b2c3d-0000-4000-8000-00000000000", "../../etc/passwd",
                             "0a1b2c3d00000-4000-8000-00000000000f"})
        CHECK(thrown_by([&] { container_instance(executor, "", uuid); }).code() ==
              errc::invalid_argument);
    for (const char* bridge : {"", "virbr0; reboot", "a/b", "sixteen-chars-xx", ".."})
        CHECK(thrown_by([&] { container_instance(executor, "", "", 2048, 2, bridge); }).code() ==
              errc::invalid_argument);

    container_instance container(executor, "", "", 1024, 3, "br0");
    CHECK(thrown_by([&] { container.set_memory(0); }).code() == errc::invalid_memory);
    CHECK(thrown_by([&] { container.set_memory(511); }).code() == errc::invalid_memory);
    CHECK(container.get_memory() == 1024);
    container.set_memory(512);
    CHECK(container.get_memory() == 512);
    CHECK(thrown_by([&] { container.set_vcpus(0); }).code() == errc::invalid_vcpus);
    CHECK(container.get_vcpus() == 3);
    container.set_vcpus(1);
    CHECK(container.get_vcpus() == 1);
    CHECK(thrown_by([&] { container.set_nat_interface_name("no such/bridge"); }).code() ==
          errc::invalid_argument);
    CHECK(container.get_nat_interface_name() == "br0");
    container.set_nat_interface_name("virbr1");
    CHECK(container.get_nat_interface_name() == "virbr1");
    container.set_iso_file_path("/other.iso");
    CHECK(container.get_iso_file_path() == "/other.iso");
}

TEST_CASE("container: every value in the domain XML is escaped") {
    anweddol::detail::domain_definition d;
    d.uuid = "0a1b2c3d-0000-4000-8000-00000000000f";
    d.type = "qemu";
    d.iso_path = "/isos/it's <a> \"live\" & more.iso";
    d.bridge = "virbr0";
    d.mac = "52:54:00:aa:bb:cc";
    d.owner = "server'/><devices><disk";
    const std::string xml = anweddol::detail::domain_xml(d);
    CHECK(xml.find("/isos/it&apos;s &lt;a&gt; &quot;live&quot; &amp; more.iso") !=
          std::string::npos);
    CHECK(xml.find("server&apos;/&gt;&lt;devices&gt;&lt;disk") != std::string::npos);
    CHECK(xml.find("it's") == std::string::npos);
    CHECK(xml.find("<currentMemory unit='MiB'>2048</currentMemory>") != std::string::npos);
    CHECK(xml.find("<on_crash>destroy</on_crash>") != std::string::npos);
    CHECK(xml.find("<model type='virtio'/>") != std::string::npos);
}

TEST_CASE("container: the domain XML keeps the reference's elements and cuts what costs a "
          "software-emulated boot") {
    anweddol::detail::domain_definition d;
    d.uuid = "0a1b2c3d-0000-4000-8000-000000000010";
    d.type = "qemu";
    d.iso_path = "/isos/live.iso";
    d.bridge = "virbr0";
    d.mac = "52:54:00:aa:bb:cc";
    const std::string xml = anweddol::detail::domain_xml(d);
    INFO(xml);
    const auto has = [&](std::string_view element) {
        return xml.find(element) != std::string::npos;
    };
    // Kept: boot from the ISO, ACPI, a virtio NIC on the bridge, destroyed on
    // reboot and crash, the serial console also for the firmware, metadata.
    CHECK(has("<boot dev='cdrom'/>"));
    CHECK(has("<acpi/>"));
    CHECK(has("<source bridge='virbr0'/>"));
    CHECK(has("<model type='virtio'/>"));
    CHECK(has("<on_reboot>destroy</on_reboot>"));
    CHECK(has("<on_crash>destroy</on_crash>"));
    CHECK(has("<bios useserial='yes'/>"));
    CHECK(has("<serial type='pty'>"));
    CHECK(has(anweddol::detail::metadata_namespace));
    CHECK(has("<memballoon model='virtio'/>"));
    // Cut: the cdrom is read by DMA (SATA), not by programmed I/O (IDE); no
    // USB controller; no option ROM on the NIC.
    CHECK(has("<controller type='sata' index='0'/>"));
    CHECK(has("<target dev='sda' bus='sata'/>"));
    CHECK_FALSE(has("bus='ide'"));
    CHECK(has("<controller type='usb' model='none'/>"));
    CHECK(has("<rom enabled='no'/>"));
}

TEST_CASE("slot: a snapshot slot's domain XML tells its guest to stop at the barrier, and has a "
          "generation ID; a container's does not") {
    anweddol::detail::domain_definition d;
    d.uuid = "0a1b2c3d-0000-4000-8000-000000000012";
    d.type = "qemu";
    d.iso_path = "/isos/live.iso";
    d.bridge = "virbr0";
    d.mac = "52:54:00:aa:bb:cc";
    const std::string plain = anweddol::detail::domain_xml(d);
    CHECK(plain.find("<sysinfo") == std::string::npos);
    CHECK(plain.find("<genid") == std::string::npos);
    CHECK(plain.find("<smbios") == std::string::npos);
    d.snapshot_slot = true;
    const std::string xml = anweddol::detail::domain_xml(d);
    INFO(xml);
    CHECK(xml.find("<genid/>") != std::string::npos);
    CHECK(xml.find("<entry name='family'>anweddol-slot</entry>") != std::string::npos);
    const auto os = xml.find("<os>");
    const auto smbios = xml.find("<smbios mode='sysinfo'/>");
    CHECK((os < smbios && smbios < xml.find("</os>")));
}

TEST_CASE("slot: the console says whether the slot's guest reached the barrier, or never will") {
    using anweddol::detail::barrier_sign;
    using anweddol::detail::read_barrier_sign;
    CHECK(read_barrier_sign("") == barrier_sign::none);
    CHECK(read_barrier_sign("[    0.000000] Linux version 6.1\r\n") == barrier_sign::none);
    CHECK(read_barrier_sign("boot\r\nANWEDDOL BARRIER\r\n") == barrier_sign::reached);
    // An ISO without the barrier goes on to its secret and host keys.
    CHECK(read_barrier_sign("-----BEGIN ANWEDDOL ENDPOINT-----\npassword [redacted]\n") ==
          barrier_sign::missing);
    CHECK(read_barrier_sign("<14>Dec  8 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n") ==
          barrier_sign::missing);
}

TEST_CASE("slot: the resume line carries the entropy and the time in the form the guest reads") {
    const std::string hex(128, 'a');
    CHECK(anweddol::detail::resume_line(hex, 1765150000) ==
          "ANWEDDOL-RESUME " + hex + " 1765150000\n");
}

TEST_CASE("slot: STP on a bridge is reported with what it costs a restore, and off is silent") {
    using anweddol::detail::bridge_stp;
    CHECK(anweddol::detail::stp_cost_note("virbr0", bridge_stp{false, std::chrono::seconds(2)})
              .empty());
    CHECK(anweddol::detail::stp_cost_note("virbr0", bridge_stp{true, std::chrono::seconds(0)})
              .empty());
    const auto note =
        anweddol::detail::stp_cost_note("virbr0", bridge_stp{true, std::chrono::seconds(2)});
    CHECK(note.find("virbr0 has STP on") != std::string::npos);
    CHECK(note.find("4000 ms") != std::string::npos);
    CHECK(note.find("stp='off'") != std::string::npos);
}

TEST_CASE("slot: a container that is not its slot's, or on a remote hypervisor, is refused "
          "before libvirt is touched") {
    auto slot = std::make_shared<anweddol::snapshot_slot>(test_context().get_executor());
    CHECK(slot->get_uuid().size() == 36);
    CHECK(slot->get_mac().rfind("52:54:00:", 0) == 0);
    CHECK_FALSE(slot->is_saved());
    CHECK_FALSE(slot->is_in_use());
    CHECK_FALSE(slot->get_reserved_address());

    const auto start_with = [&](std::string uuid, std::string uri) {
        auto container = std::make_shared<anweddol::container_instance>(
            test_context().get_executor(), "/nonexistent.iso", uuid, 512, 1);
        auto options = container->get_options();
        options.slot = slot;
        container->set_options(options);
        anweddol::start_options start;
        start.driver_uri = std::move(uri);
        return error_of(container->start_domain(start)).code();
    };
    CHECK(start_with("", "qemu:///system") == anweddol::errc::invalid_argument);
    CHECK(start_with(slot->get_uuid(), "qemu+tcp://10.0.0.1/system") ==
          anweddol::errc::invalid_argument);
    CHECK_FALSE(slot->is_in_use()); // a refused start holds nothing

    anweddol::snapshot_slot::options relative;
    relative.image_directory = "images";
    CHECK_THROWS_AS(anweddol::snapshot_slot(test_context().get_executor(), relative),
                    boost::system::system_error);
}

TEST_CASE("container: the domain XML isolates the guest's port and filters its traffic when asked, "
          "and only then") {
    anweddol::detail::domain_definition d;
    d.uuid = "0a1b2c3d-0000-4000-8000-000000000011";
    d.type = "qemu";
    d.iso_path = "/isos/live.iso";
    d.bridge = "virbr0";
    d.mac = "52:54:00:aa:bb:cc";
    const std::string plain = anweddol::detail::domain_xml(d);
    CHECK(plain.find("<port isolated") == std::string::npos);
    CHECK(plain.find("<filterref") == std::string::npos);

    d.isolated_port = true;
    d.traffic_filter = "anweddol-tenant-virbr0";
    d.dhcp_server = "192.168.122.1";
    const std::string xml = anweddol::detail::domain_xml(d);
    INFO(xml);
    // Inside the <interface>, with the address learned from DHCP only.
    const auto interface = xml.find("<interface type='bridge'>");
    const auto end = xml.find("</interface>");
    const auto port = xml.find("<port isolated='yes'/>");
    const auto filter = xml.find("<filterref filter='anweddol-tenant-virbr0'>");
    REQUIRE(port != std::string::npos);
    REQUIRE(filter != std::string::npos);
    CHECK((interface < port && port < end && interface < filter && filter < end));
    CHECK(xml.find("<parameter name='CTRL_IP_LEARNING' value='dhcp'/>") != std::string::npos);
    // Only the gateway's DHCP replies teach the filter an address.
    CHECK(xml.find("<parameter name='DHCPSERVER' value='192.168.122.1'/>") != std::string::npos);

    // With a reserved address, the filter is given it: nothing to learn.
    d.reserved_ip = "192.168.122.77";
    const std::string reserved = anweddol::detail::domain_xml(d);
    INFO(reserved);
    CHECK(reserved.find("<filterref filter='anweddol-tenant-virbr0'>\n"
                        "        <parameter name='IP' value='192.168.122.77'/>\n"
                        "      </filterref>") != std::string::npos);
    CHECK(reserved.find("CTRL_IP_LEARNING") == std::string::npos);
}

TEST_CASE("container: the traffic filter drops a guest's IPv4 to its subnet except the gateway, "
          "read from the network's <ip>") {
    using anweddol::detail::ipv4_network_of;
    const auto network = ipv4_network_of(
        "<network><name>default</name><bridge name='virbr0'/>"
        "<ip family='ipv6' address='fd00::1' prefix='64'/>"
        "<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp/></ip></network>");
    REQUIRE(network);
    CHECK(network->gateway == "192.168.122.1");
    CHECK(network->address == "192.168.122.0");
    CHECK(network->prefix == 24);
    const auto by_prefix =
        ipv4_network_of("<network><ip address='10.9.8.7' prefix='20'/></network>");
    REQUIRE(by_prefix);
    CHECK(by_prefix->address == "10.9.0.0");
    CHECK(by_prefix->prefix == 20);
    // Nothing usable: no <ip>, IPv6 only, a mask with holes, a bad prefix.
    CHECK_FALSE(ipv4_network_of("<network><name>x</name></network>"));
    CHECK_FALSE(
        ipv4_network_of("<network><ip family='ipv6' address='fd00::1' prefix='64'/></network>"));
    CHECK_FALSE(
        ipv4_network_of("<network><ip address='10.0.0.1' netmask='255.0.255.0'/></network>"));
    CHECK_FALSE(ipv4_network_of("<network><ip address='10.0.0.1' prefix='33'/></network>"));

    const std::string routing = anweddol::detail::routing_filter_xml("virbr0", *network);
    INFO(routing);
    // Its own chain, after clean-traffic's anti-spoofing chains (-700) and
    // before its blanket accept of outgoing IPv4 (-650); the gateway
    // returns before the subnet is dropped; a UUID that is the same for
    // every definition of this filter.
    CHECK(routing.find("chain='ipv4-anwdl' priority='-690'") != std::string::npos);
    const auto gateway = routing.find("<rule action='return' direction='out' priority='100'>");
    const auto drop = routing.find("<rule action='drop' direction='out' priority='200'>");
    REQUIRE(gateway != std::string::npos);
    REQUIRE(drop != std::string::npos);
    CHECK(routing.find("dstipaddr='192.168.122.1'", gateway) < drop);
    CHECK(routing.find("dstipaddr='192.168.122.0' dstipmask='24'", drop) != std::string::npos);
    CHECK(routing.find("<uuid>" + anweddol::detail::filter_uuid("anweddol-guest-routing-virbr0")) !=
          std::string::npos);
    CHECK(anweddol::detail::filter_uuid("a") != anweddol::detail::filter_uuid("b"));
    const std::string tenant = anweddol::detail::tenant_filter_xml("virbr0");
    CHECK(tenant.find("<filterref filter='clean-traffic'/>") != std::string::npos);
    CHECK(tenant.find("<filterref filter='anweddol-guest-routing-virbr0'/>") != std::string::npos);
}

TEST_CASE("container: an address to reserve is one of the network's first IPv4 DHCP ranges that "
          "no host entry and no lease holds, under a name that says nothing of the guest") {
    using namespace anweddol::detail;
    const auto scope = dhcp_scope_of(
        "<network><name>default</name><bridge name='virbr0'/>"
        "<ip family='ipv6' address='fd00::1' prefix='64'><dhcp>"
        "<range start='fd00::10' end='fd00::20'/></dhcp></ip>"
        "<ip address='10.0.0.1' netmask='255.255.255.0'><dhcp>"
        "<range start='10.0.0.2' end='10.0.0.5'/><range start='10.0.0.9' end='10.0.0.9'/>"
        "<host mac='52:54:00:00:00:01' name='anweddol-0a0b0c0d-1765141234' ip='10.0.0.3'/>"
        "<host mac='52:54:00:00:00:02' ip='10.0.0.9'/>"
        "</dhcp></ip>"
        "<ip address='10.1.0.1' prefix='24'><dhcp><range start='10.1.0.2' end='10.1.0.9'/>"
        "<host mac='52:54:00:00:00:03' name='other' ip='10.1.0.4'/></dhcp></ip></network>");
    // The ranges of the first IPv4 <ip> only, and its index among all <ip>
    // (the parentIndex its entries are added under); the hosts of all.
    REQUIRE(scope.ranges.size() == 2);
    CHECK(scope.ipv4_index == 1);
    CHECK(format_ipv4(scope.ranges[0].first) == "10.0.0.2");
    CHECK(format_ipv4(scope.ranges[0].second) == "10.0.0.5");
    REQUIRE(scope.hosts.size() == 3);
    CHECK(scope.hosts[0].name == "anweddol-0a0b0c0d-1765141234");
    CHECK(scope.hosts[1].name.empty());
    CHECK(scope.hosts[2].ip == "10.1.0.4");

    const auto texts = [](const std::vector<std::uint32_t>& addresses) {
        std::vector<std::string> out;
        for (const auto a : addresses)
            out.push_back(format_ipv4(a));
        return out;
    };
    const std::set<std::uint32_t> leased{*parse_ipv4("10.0.0.4")};
    // 10.0.0.3 and .9 have entries, .4 a lease: .2 and .5 are left, from
    // wherever the start falls, wrapping around, however large the start.
    CHECK(texts(free_addresses(scope, leased, 8, 0)) ==
          std::vector<std::string>{"10.0.0.2", "10.0.0.5"});
    CHECK(texts(free_addresses(scope, leased, 8, 3)) ==
          std::vector<std::string>{"10.0.0.5", "10.0.0.2"});
    CHECK(texts(free_addresses(scope, leased, 1, 5)) == std::vector<std::string>{"10.0.0.2"});
    // 2^64 - 1 is 0 modulo the 5 addresses: .2 first, and .5 once only.
    CHECK(texts(free_addresses(scope, leased, 8, ~std::uint64_t{0})) ==
          std::vector<std::string>{"10.0.0.2", "10.0.0.5"});
    CHECK(free_addresses(
              scope, {*parse_ipv4("10.0.0.2"), *parse_ipv4("10.0.0.4"), *parse_ipv4("10.0.0.5")}, 8,
              0)
              .empty());
    CHECK(free_addresses(dhcp_scope_of("<network><ip address='10.0.0.1' prefix='24'/></network>"),
                         {}, 8, 0)
              .empty());

    // The entry's name says whose it is and since when; nothing of the
    // guest (dnsmasq serves it in DNS to every guest), and differs each time.
    const std::string name = reservation_name(1765141234);
    INFO(name);
    CHECK(name.size() == std::string("anweddol-0a0b0c0d-1765141234").size());
    CHECK(name.starts_with("anweddol-"));
    CHECK(name.ends_with("-1765141234"));
    CHECK(reservation_name(1765141234) != name);
    CHECK(reservation_made_at(name) == 1765141234);
    for (const char* other :
         {"operators-vm", "anweddol-0a0b0c0d", "anweddol-0a0b0c0d-", "anweddol-0a0b0c-1765141234",
          "anweddol-0a0b0c0z-1", "anweddol-0a0b0c0d-17x", "Anweddol-0a0b0c0d-1",
          "anweddol-0a0b0c0d--5", "anweddol-0a0b0c0d-+5"})
        CHECK_FALSE(reservation_made_at(other));
    CHECK(host_entry_xml({"default", "52:54:00:a1:b2:c3", name, "10.0.0.2"}) ==
          "<host mac='52:54:00:a1:b2:c3' name='" + name + "' ip='10.0.0.2'/>");

    // Stale: anweddol's, no domain's MAC (whatever its case), and older than
    // the grace, or as far ahead (a clock set back); never an operator's.
    const std::int64_t now = 1765141234;
    const std::int64_t grace = reservation_grace.count();
    const std::vector<std::string> macs{"52:54:00:AA:00:01"};
    const auto old_name = "anweddol-0a0b0c0d-" + std::to_string(now - grace - 1);
    CHECK(is_stale_reservation(old_name, "52:54:00:aa:00:02", macs, now));
    CHECK_FALSE(is_stale_reservation(old_name, "52:54:00:aa:00:01", macs, now));
    CHECK_FALSE(
        is_stale_reservation("anweddol-0a0b0c0d-" + std::to_string(now - grace), "x", {}, now));
    CHECK(
        is_stale_reservation("anweddol-0a0b0c0d-" + std::to_string(now + grace + 1), "x", {}, now));
    CHECK_FALSE(is_stale_reservation("operators-vm", "x", {}, now));
}

TEST_CASE("container: isolation is on by default, and a start says what it applied and what the "
          "host could not give") {
    scratch s;
    auto container = test_container(s);
    CHECK(container->get_options().isolation.isolate_ports);
    CHECK(container->get_options().isolation.traffic_filter ==
          anweddol::isolation_requirement::required);
    CHECK_FALSE(container->get_network_isolation().ports_isolated); // nothing started yet
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(false, 20, test_uri);
        co_return true;
    }());
    char* xml = virDomainGetXMLDesc(container->get_domain_descriptor(), 0);
    REQUIRE(xml);
    const std::string text = xml;
    std::free(xml);
    INFO(text);
    CHECK(text.find("<port isolated='yes'/>") != std::string::npos);
    // The test driver has no network to filter: stated, not silent.
    const auto& applied = container->get_network_isolation();
    CHECK(applied.ports_isolated);
    CHECK_FALSE(applied.traffic_filtered);
    CHECK(applied.downgrades.find("test driver") != std::string::npos);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain();
        co_return true;
    }());

    // Turned off, each is left out, and nothing is reported missing.
    auto options = container->get_options();
    options.isolation.isolate_ports = false;
    options.isolation.traffic_filter = anweddol::isolation_requirement::off;
    container->set_options(options);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(false, 20, test_uri);
        co_return true;
    }());
    xml = virDomainGetXMLDesc(container->get_domain_descriptor(), 0);
    REQUIRE(xml);
    CHECK(std::string(xml).find("<port isolated") == std::string::npos);
    std::free(xml);
    CHECK_FALSE(container->get_network_isolation().ports_isolated);
    CHECK(container->get_network_isolation().downgrades.empty());
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain();
        co_return true;
    }());
}

TEST_CASE("container: a hostile ISO path reaches libvirt intact, and the domain is transient "
          "and tagged") {
    scratch s;
    const fs::path hostile = s.root / "it's <a> \"live\" & more.iso";
    std::ofstream(hostile) << "iso";
    auto container = test_container(s);
    container->set_iso_file_path(hostile.string());
    auto options = container->get_options();
    options.owner = "unit-test's owner";
    container->set_options(options);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(false, 20, test_uri);
        co_return true;
    }());
    REQUIRE(container->is_domain_running());
    char* xml = virDomainGetXMLDesc(container->get_domain_descriptor(), 0);
    REQUIRE(xml);
    const std::string text = xml;
    std::free(xml);
    INFO(text);
    // libvirt writes the values back escaped its own way: they arrived intact.
    CHECK(text.find("it&apos;s &lt;a&gt; &quot;live&quot; &amp; more.iso") != std::string::npos);
    CHECK(text.find(std::string(anweddol::detail::metadata_namespace)) != std::string::npos);
    CHECK(text.find("owner=\"unit-test's owner\"") != std::string::npos);
    // The cuts reach libvirt as written: the cdrom on SATA, no USB
    // controller, no NIC ROM.
    CHECK(text.find("<target dev='sda' bus='sata'/>") != std::string::npos);
    CHECK(text.find("<controller type='usb' index='0' model='none'/>") != std::string::npos);
    CHECK(text.find("<rom enabled='no'/>") != std::string::npos);
    CHECK(virDomainIsPersistent(container->get_domain_descriptor()) == 0);
    CHECK(container->get_mac()->starts_with("52:54:00:"));
    CHECK_FALSE(container->get_ip()); // not waited for

    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain();
        co_return true;
    }());
    CHECK_FALSE(container->is_domain_running());
    CHECK_FALSE(domain_exists(container->get_uuid()));
}

TEST_CASE("container: start finds the address through libvirt where no status file has it") {
    scratch s;
    auto container = test_container(s);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(true, 20, test_uri);
        co_return true;
    }());
    CHECK(container->get_ip() == "192.168.0.1"); // what the test driver says
    CHECK(domain_exists(container->get_uuid()));
    CHECK(error_of(container->start_domain(true, 20, test_uri)).code() ==
          errc::domain_already_running);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain(true);
        co_return true;
    }());
    CHECK_FALSE(domain_exists(container->get_uuid()));
    CHECK(error_of(container->stop_domain()).code() == errc::domain_not_running);
    CHECK(thrown_by([&] { (void)container->get_ip(); }).code() == errc::domain_not_created);
}

TEST_CASE("container: a replaced status file wakes the waiting start through inotify") {
    scratch s;
    auto container = test_container(s, false);
    bool done = false;
    std::exception_ptr error;
    boost::asio::co_spawn(test_context(), container->start_domain(true, 20, test_uri),
                          [&](std::exception_ptr e) {
                              error = e;
                              done = true;
                          });
    REQUIRE(run_until([&] { return container->is_domain_running(); }));
    const std::string mac = *container->get_mac();
    const long now = static_cast<long>(std::time(nullptr));
    // Another guest's lease, then an expired one of ours: still waiting.
    s.replace_status_file("virbr0.status", lease_json("52:54:00:00:00:01", "10.0.0.9", now + 60));
    s.replace_status_file("virbr0.status", lease_json(mac, "10.0.0.8", now - 5));
    run_until([] { return false; }, 200ms);
    CHECK_FALSE(done);
    s.replace_status_file("virbr0.status", lease_json(mac, "10.0.0.7", now + 3600));
    REQUIRE(run_until([&] { return done; }));
    CHECK_FALSE(error);
    CHECK(container->get_ip() == "10.0.0.7");
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain();
        co_return true;
    }());
}

TEST_CASE("container: a malformed status file fails the start and leaves no domain") {
    scratch s;
    auto container = test_container(s, false);
    s.replace_status_file("virbr0.status", "{\"not\": \"an array\"}");
    CHECK(error_of(container->start_domain(true, 20, test_uri)).code() ==
          errc::lease_file_malformed);
    CHECK_FALSE(container->is_domain_running());
    CHECK_FALSE(domain_exists(container->get_uuid()));
}

TEST_CASE("container: no address within the budget is ip_wait_timeout, with no domain left") {
    scratch s;
    auto container = test_container(s, false);
    const auto error = error_of(container->start_domain(true, 1, test_uri));
    CHECK(error.code() == errc::ip_wait_timeout);
    CHECK_FALSE(container->is_domain_running());
    CHECK_FALSE(domain_exists(container->get_uuid()));
}

TEST_CASE("container: a domain that stops while waiting for its address fails the start at once") {
    scratch s;
    auto container = test_container(s, false);
    bool done = false;
    std::exception_ptr error;
    boost::asio::co_spawn(test_context(), container->start_domain(true, -1, test_uri),
                          [&](std::exception_ptr e) {
                              error = e;
                              done = true;
                          });
    REQUIRE(run_until([&] { return container->is_domain_running(); }));
    // Someone else destroys it.
    REQUIRE(virDomainDestroy(container->get_domain_descriptor()) == 0);
    REQUIRE(run_until([&] { return done; }));
    REQUIRE(error);
    try {
        std::rethrow_exception(error);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == errc::domain_not_running);
        CHECK(std::string(e.what()).find("was destroyed") != std::string::npos);
    }
    CHECK_FALSE(container->is_domain_running());
}

TEST_CASE("container: bad input to start_domain is refused before libvirt is touched") {
    scratch s;
    auto container = test_container(s);
    const auto before = running_domains();

    container->set_iso_file_path("");
    CHECK(error_of(container->start_domain(true, 20, test_uri)).code() == errc::iso_path_not_set);
    container->set_iso_file_path((s.root / "missing.iso").string());
    CHECK(error_of(container->start_domain(true, 20, test_uri)).code() ==
          boost::system::errc::no_such_file_or_directory);
    container->set_iso_file_path(s.root.string());
    CHECK(error_of(container->start_domain(true, 20, test_uri)).code() ==
          boost::system::errc::is_a_directory);
    container->set_iso_file_path(s.iso.string());

    container->set_nat_interface_name("nosuchbr0");
    const auto no_bridge = error_of(container->start_domain(true, 20, test_uri));
    CHECK(no_bridge.code() == errc::invalid_argument);
    CHECK(std::string(no_bridge.what()).find("nosuchbr0") != std::string::npos);
    container->set_nat_interface_name("virbr0");

    CHECK(error_of(container->start_domain(true, -2, test_uri)).code() == errc::invalid_argument);
    const auto unreachable =
        error_of(container->start_domain(true, 20, "test:///no/such/file.xml"));
    CHECK(unreachable.code().category() == anweddol::libvirt_category());
    CHECK(running_domains() == before);

    // A UUID that libvirt already runs.
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(false, 20, test_uri);
        co_return true;
    }());
    auto twin = std::make_shared<container_instance>(test_context().get_executor(), s.iso.string(),
                                                     container->get_uuid(), 512, 1);
    twin->set_options(container->get_options());
    CHECK(error_of(twin->start_domain(true, 20, test_uri)).code() == errc::domain_already_running);
    CHECK(container->is_domain_running()); // untouched
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain();
        co_return true;
    }());
}

TEST_CASE("container: cancellation at each phase leaves zero domains") {
    scratch s;
    const auto before = running_domains();
    // Cancels a start after `delay`, or once the domain exists.
    const auto cancel_start = [&](std::shared_ptr<container_instance> container,
                                  std::chrono::milliseconds delay, bool once_running) {
        boost::asio::cancellation_signal cancel;
        bool done = false;
        std::exception_ptr error;
        boost::asio::co_spawn(
            test_context(), container->start_domain(true, -1, test_uri),
            boost::asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e) {
                error = e;
                done = true;
            }));
        if (once_running)
            REQUIRE(run_until([&] { return container->is_domain_running(); }));
        else
            run_until([] { return false; }, delay);
        cancel.emit(boost::asio::cancellation_type::terminal);
        REQUIRE(run_until([&] { return done; }));
        REQUIRE(error);
        try {
            std::rethrow_exception(error);
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == boost::asio::error::operation_aborted);
        }
        CHECK_FALSE(container->is_domain_running());
    };

    SECTION("while it waits for its address") {
        cancel_start(test_container(s, false), 0ms, true);
    }
    SECTION("while it waits for a place to boot") {
        anweddol::boot_admission admission;
        admission.set_limit(1);
        auto first = test_container(s, false);
        auto second = test_container(s, false);
        auto options = first->get_options();
        options.admission = &admission;
        options.bypass_admission = false;
        first->set_options(options);
        second->set_options(options);
        bool first_done = false;
        boost::asio::cancellation_signal cancel_first;
        boost::asio::co_spawn(
            test_context(), first->start_domain(true, -1, test_uri),
            boost::asio::bind_cancellation_slot(cancel_first.slot(),
                                                [&](std::exception_ptr) { first_done = true; }));
        REQUIRE(run_until([&] { return first->is_domain_running(); }));
        CHECK(admission.booting() == 1);
        cancel_start(second, 100ms, false);
        CHECK(admission.waiting() == 0);
        cancel_first.emit(boost::asio::cancellation_type::terminal);
        REQUIRE(run_until([&] { return first_done; }));
        CHECK(admission.booting() == 0);
    }
    SECTION("at any moment of the start") {
        for (auto delay : {0ms, 1ms, 2ms, 5ms, 10ms})
            cancel_start(test_container(s, false), delay, false);
    }
    CHECK(running_domains() == before);
}

TEST_CASE("container: a graceful stop waits for the guest to power off") {
    scratch s;
    auto container = test_container(s);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(false, 20, test_uri);
        co_await container->stop_domain(false);
        co_return true;
    }());
    CHECK_FALSE(container->is_domain_running());
    CHECK_FALSE(domain_exists(container->get_uuid()));
}

TEST_CASE("container: the ISO's checksum is SHA-256 in hex, computed off the io thread") {
    scratch s;
    std::ofstream(s.iso, std::ios::trunc) << "abc";
    auto container = test_container(s);
    CHECK(run_coroutine(container->make_iso_file_checksum()) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    container->set_iso_file_path("");
    CHECK(thrown_by([&] { run_coroutine(container->make_iso_file_checksum()); }).code() ==
          errc::iso_path_not_set);
    container->set_iso_file_path((s.root / "missing.iso").string());
    CHECK(thrown_by([&] { run_coroutine(container->make_iso_file_checksum()); }).code() ==
          boost::system::errc::no_such_file_or_directory);
}

TEST_CASE("interface: the store keeps containers by UUID and refuses duplicates") {
    auto executor = test_context().get_executor();
    virtualization_interface interface(executor);
    CHECK(interface.get_stored_containers_amount() == 0);
    auto stored = interface.create_container("/srv/live.iso");
    auto loose = interface.create_container("/srv/live.iso", false);
    CHECK(interface.get_stored_containers_amount() == 1);
    CHECK(interface.get_stored_container(stored->get_uuid()) == stored);
    CHECK(interface.get_stored_container(loose->get_uuid()) == nullptr);
    CHECK(stored->get_iso_file_path() == "/srv/live.iso");

    interface.add_stored_container(loose);
    auto uuids = interface.list_stored_containers();
    CHECK(uuids.size() == 2);
    CHECK(std::is_sorted(uuids.begin(), uuids.end()));

    auto twin = std::make_shared<container_instance>(executor, "", stored->get_uuid());
    CHECK(thrown_by([&] { interface.add_stored_container(twin); }).code() ==
          errc::container_already_stored);
    CHECK(interface.get_stored_container(stored->get_uuid()) == stored);
    CHECK(thrown_by([&] { interface.add_stored_container(nullptr); }).code() ==
          errc::invalid_argument);
    CHECK(interface.get_stored_containers_amount() == 2);

    interface.delete_stored_container(stored->get_uuid());
    interface.delete_stored_container("not-stored");
    CHECK(interface.list_stored_containers() == std::vector<std::string>{loose->get_uuid()});
}

TEST_CASE("interface: destroying it destroys its containers' running domains") {
    scratch s;
    std::shared_ptr<container_instance> kept;
    {
        virtualization_interface interface(test_context().get_executor());
        kept = interface.create_container(s.iso.string());
        auto options = kept->get_options();
        options.bypass_admission = true;
        kept->set_options(options);
        kept->set_memory(512);
        run_coroutine([&]() -> awaitable<bool> {
            co_await kept->start_domain(false, 20, test_uri);
            co_return true;
        }());
        REQUIRE(domain_exists(kept->get_uuid()));
    }
    CHECK_FALSE(kept->is_domain_running());
    CHECK(run_until([&] { return !domain_exists(kept->get_uuid()); }));
}

TEST_CASE("admission: boots wait their turn in order, and a raised limit lets more in") {
    anweddol::boot_admission admission;
    admission.set_limit(1);
    CHECK(admission.limit_for("qemu") == 1);
    CHECK(admission.limit_for("kvm") == 1);
    std::vector<int> admitted;
    std::vector<anweddol::boot_admission::ticket> tickets;
    for (int i = 0; i < 3; ++i)
        boost::asio::co_spawn(
            test_context(),
            [&, i]() -> awaitable<void> {
                tickets.push_back(co_await admission.admit("qemu"));
                admitted.push_back(i);
            },
            boost::asio::detached);
    run_until([] { return false; }, 50ms);
    CHECK(admitted == std::vector<int>{0});
    CHECK(admission.waiting() == 2);
    tickets.front().reset();
    REQUIRE(run_until([&] { return admitted.size() == 2; }));
    CHECK(admitted == std::vector<int>{0, 1});
    admission.set_unbounded();
    REQUIRE(run_until([&] { return admitted.size() == 3; }));
    CHECK(admitted == std::vector<int>{0, 1, 2});
    CHECK(admission.booting() == 2);
    tickets.clear();
    CHECK(admission.booting() == 0);

    admission.set_automatic();
    CHECK(admission.limit_for("qemu") == std::max(1u, std::thread::hardware_concurrency()));
    CHECK(admission.limit_for("kvm") == std::numeric_limits<std::size_t>::max());
}

TEST_CASE("admission: the default holds a qemu boot's place only while it is CPU-heavy, "
          "set_limit holds it until the address") {
    anweddol::boot_admission admission;
    // The default: software emulation limited to the CPU count while
    // CPU-heavy, KVM not limited at all.
    CHECK(admission.releases_when_cpu_light("qemu"));
    CHECK_FALSE(admission.releases_when_cpu_light("kvm"));
    CHECK(admission.limit_for("qemu") == std::max(1u, std::thread::hardware_concurrency()));
    admission.set_limit(3);
    CHECK_FALSE(admission.releases_when_cpu_light("qemu"));
    CHECK(admission.limit_for("kvm") == 3);
    admission.set_cpu_heavy_limit(0);
    CHECK(admission.limit_for("qemu") == 1);
    CHECK(admission.releases_when_cpu_light("qemu"));
    CHECK(admission.releases_when_cpu_light("kvm"));
    admission.set_unbounded();
    CHECK_FALSE(admission.releases_when_cpu_light("qemu"));
    admission.set_automatic();
    CHECK(admission.releases_when_cpu_light("qemu"));
}

TEST_CASE("admission: a guest turns CPU-light only after a whole window under the threshold") {
    using namespace std::chrono;
    anweddol::detail::cpu_use_window window(1s, 0.25);
    const auto t0 = steady_clock::time_point() + 1h;
    // Busy: a whole core for 2 s, read every 250 ms.
    for (int i = 0; i <= 8; ++i)
        CHECK_FALSE(window.light_after(t0 + i * 250ms, i * 250ms));
    // Waiting: 1 % of a core. Not light while the window still holds busy time.
    const auto busy = 2000ms;
    CHECK_FALSE(window.light_after(t0 + 2250ms, busy + 2500us));
    CHECK_FALSE(window.light_after(t0 + 2500ms, busy + 5ms));
    CHECK_FALSE(window.light_after(t0 + 2750ms, busy + 7500us));
    CHECK(window.light_after(t0 + 3000ms, busy + 10ms));
    // Busy again for a moment: 0.5 s of CPU in the last second is heavy.
    CHECK_FALSE(window.light_after(t0 + 3500ms, busy + 510ms));

    // Readings that do not span a window yet say nothing.
    anweddol::detail::cpu_use_window fresh(1s, 0.25);
    CHECK_FALSE(fresh.light_after(t0, 0ms));
    CHECK_FALSE(fresh.light_after(t0 + 500ms, 0ms));
    CHECK(fresh.light_after(t0 + 1000ms, 0ms));
}

TEST_CASE("admission: a CPU-heavy boot keeps its place until its address is known, then gives "
          "it back") {
    scratch s;
    anweddol::boot_admission admission;
    admission.set_cpu_heavy_limit(1);
    auto container = test_container(s, false);
    auto options = container->get_options();
    options.admission = &admission;
    options.bypass_admission = false;
    container->set_options(options);
    bool done = false;
    std::exception_ptr error;
    boost::asio::co_spawn(test_context(), container->start_domain(true, 20, test_uri),
                          [&](std::exception_ptr e) {
                              error = e;
                              done = true;
                          });
    REQUIRE(run_until([&] { return container->is_domain_running(); }));
    // libvirt's test driver reports a CPU time that grows with the clock: a
    // guest that is always busy. Over several readings it keeps its place.
    run_until([] { return false; }, 4 * anweddol::boot_admission::cpu_light_window);
    CHECK(admission.booting() == 1);
    CHECK_FALSE(done);
    s.replace_status_file("virbr0.status", lease_json(*container->get_mac(), "10.0.0.7",
                                                      static_cast<long>(std::time(nullptr)) + 60));
    REQUIRE(run_until([&] { return done; }));
    CHECK_FALSE(error);
    CHECK(container->get_ip() == "10.0.0.7");
    CHECK(admission.booting() == 0);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain();
        co_return true;
    }());
}

// provision()'s own failure path, on test:/// with the lease pointing at
// 127.0.0.1, where no endpoint answers: the first error (the SSH wait's) is
// the one that completes the call, no password comes back, and the domain is
// destroyed first. (No traffic leaves loopback.)
TEST_CASE("provision: an endpoint that never answers completes with that error, and leaves no "
          "domain") {
    scratch s;
    auto container = test_container(s, false); // the address comes from the status file only
    anweddol::provisioning_options options;
    options.driver_uri = test_uri;
    options.address_timeout = 20s;
    options.shell.ready_timeout = 600ms;
    options.shell.attempt_timeout = 200ms;
    options.on_progress = [&](const anweddol::provisioning_event& e) {
        if (e.phase == anweddol::provisioning_phase::waiting_for_address)
            s.replace_status_file("virbr0.status", lease_json(*container->get_mac(), "127.0.0.1",
                                                              std::time(nullptr) + 3600));
    };
    anweddol::diagnostics diag;
    std::optional<boost::system::error_code> result;
    anweddol::provision(container, options, diag,
                        [&](boost::system::error_code ec, anweddol::provisioned_container p) {
                            CHECK(p.password.empty());
                            CHECK(p.username.empty());
                            result = ec;
                        });
    REQUIRE(run_until([&] { return result.has_value(); }, 30s));
    INFO(result->message() << ": " << diag.full_message());
    // Nothing listens on 127.0.0.1:22 here (a timeout); should something
    // answer, it refuses endpoint's password.
    CHECK((*result == std::errc::timed_out || *result == errc::authentication_failed));
    CHECK_FALSE(diag.client_message().empty());
    CHECK_FALSE(container->is_domain_running());
    CHECK_FALSE(domain_exists(container->get_uuid()));
}

// XML normalises a literal tab, newline or carriage return in an attribute
// to a space: unescaped, the domain would boot another path, with no error.
TEST_CASE("container: an ISO path with a tab, a newline and a carriage return reaches libvirt "
          "intact") {
    scratch s;
    const fs::path awkward = s.root / "live\tcd\nimage\r.iso";
    std::ofstream(awkward) << "iso";
    auto container = test_container(s);
    container->set_iso_file_path(awkward.string());
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(false, 20, test_uri);
        co_return true;
    }());
    REQUIRE(container->is_domain_running());
    auto connection = run_coroutine(anweddol::hypervisor_connection::open(test_uri));
    // libvirt's own parse of its own XML: the disk's source as libvirt holds it.
    const std::string source = run_coroutine([&]() -> awaitable<std::string> {
        auto reading = connection->call([uuid = container->get_uuid()](virConnectPtr c) {
            anweddol::detail::domain_handle domain(virDomainLookupByUUIDString(c, uuid.c_str()));
            char* xml = virDomainGetXMLDesc(domain.get(), 0);
            std::string text = xml ? xml : "";
            std::free(xml);
            return text;
        });
        co_return co_await std::move(reading);
    }());
    INFO(source);
    const bool tab = source.find("live&#9;cd") != std::string::npos ||
                     source.find("live\tcd") != std::string::npos;
    const bool newline = source.find("cd&#10;image") != std::string::npos ||
                         source.find("cd\nimage") != std::string::npos;
    const bool carriage_return = source.find("image&#13;.iso") != std::string::npos ||
                                 source.find("image\r.iso") != std::string::npos;
    CHECK(tab);
    CHECK(newline);
    CHECK(carriage_return);
    CHECK(source.find("live cd image .iso") == std::string::npos);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->stop_domain();
        co_return true;
    }());
}
