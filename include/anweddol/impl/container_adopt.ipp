//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_ADOPT_IPP
#define ANWEDDOL_IMPL_CONTAINER_ADOPT_IPP

// A container taking over a domain that runs already. Part of
// container_instance.ipp.

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/libvirt/lease_file.hpp>
#include <anweddol/detail/libvirt/owned_domains.hpp>

#include <ctime>

namespace anweddol {

ANWEDDOL_DECL boost::asio::awaitable<void> container_instance::adopt_here(std::string driver_uri) {
    if (is_domain_running())
        detail::throw_error(errc::domain_already_running,
                            "container " + uuid_ + " has a domain already: stop it first");
    auto& rt = get_runtime();
    // Awaitables with captures are built outside their co_await: GCC 12.
    auto opening = hypervisor_connection::open(driver_uri);
    auto connection = co_await std::move(opening);
    auto finding = connection->call(
        [uuid = uuid_](virConnectPtr c) { return detail::find_running_domain(c, uuid); });
    auto found = co_await std::move(finding);
    if (!found)
        detail::throw_error(errc::domain_not_running, "libvirt at " + driver_uri +
                                                          " runs no domain with UUID " + uuid_ +
                                                          " to adopt");
    const detail::domain_description& description = found->description;

    // Its address: dnsmasq's status file where it is on this host, else
    // what libvirt knows. A guest still booting has none yet.
    std::optional<std::string> ip;
    const auto status_file = options_.lease_directory / (description.bridge + ".status");
    if (detail::has_local_status_file(driver_uri)) {
        auto reading = detail::run_blocking(
            rt.workers(), &rt.completions(), [status_file, mac = description.mac] {
                std::optional<std::string> address;
                if (const auto text = detail::read_lease_file(status_file))
                    if (const auto lease = detail::find_lease(*text, mac, std::time(nullptr)))
                        address = lease->ip_address;
                return address;
            });
        try {
            ip = co_await std::move(reading);
        } catch (const boost::system::system_error& e) {
            if (detail::is_cancellation(e))
                throw; // a malformed file: ask libvirt instead
        }
    }
    if (!ip) {
        auto asking = connection->call([uuid = uuid_, mac = description.mac](virConnectPtr c) {
            return detail::interface_address(c, uuid, mac);
        });
        ip = co_await std::move(asking);
    }

    auto finding_reservation =
        connection->call([bridge = description.bridge, mac = description.mac](virConnectPtr c) {
            return detail::find_reservation_blocking(c, bridge, mac);
        });
    auto reservation = co_await std::move(finding_reservation);

    auto console = options_.console_log_bytes > 0
                       ? std::make_shared<detail::console_ring>(options_.console_log_bytes)
                       : nullptr;
    auto opening_console =
        connection->call([uri = driver_uri, domain = detail::retain_domain(found->domain.get()),
                          console](virConnectPtr c) {
            return console && !uri.starts_with("test:")
                       ? detail::console_stream::open(c, domain.get(), console)
                       : detail::console_stream();
        });
    auto console_stream = co_await std::move(opening_console);

    // Nothing can fail from here on: the container takes it all at once.
    iso_path_ = description.iso_path;
    memory_ = description.memory_mib;
    vcpus_ = description.vcpus;
    nat_interface_name_ = description.bridge;
    auto& st = *state_;
    st.domain = std::move(found->domain);
    st.running = true;
    st.mac = description.mac;
    st.ip = std::move(ip);
    release_reservation_in_background(); // of a domain gone before
    st.reservation = std::move(reservation);
    st.connection = connection;
    st.console = std::move(console);
    st.console_stream = std::move(console_stream);
    st.domain_type = description.type;
    st.domain_type_choice = "adopted: the running domain's";
    watch_lifecycle(connection);
}

} // namespace anweddol

#endif
