//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ADDRESS_WAIT_HPP
#define ANWEDDOL_DETAIL_ADDRESS_WAIT_HPP

#include <anweddol/detail/blocking_pool.hpp>
#include <anweddol/detail/lease_file.hpp>
#include <anweddol/detail/libvirt_handle.hpp>
#include <anweddol/detail/status_file_watch.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/multiple_exceptions.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>

#include <libvirt/libvirt.h>
#include <strings.h>

namespace anweddol::detail {

/// Set once by a domain's STOPPED event; a coroutine can wait for it. Lives
/// on one executor: raise() and wait() must run there.
class stop_signal {
public:
    explicit stop_signal(boost::asio::any_io_executor executor)
        : timer_(std::move(executor), std::chrono::steady_clock::time_point::max()) {}

    void raise(int detail) {
        if (raised_)
            return;
        raised_ = true;
        detail_ = detail;
        timer_.cancel();
    }
    bool raised() const noexcept { return raised_; }
    /// The event's detail, such as VIR_DOMAIN_EVENT_STOPPED_CRASHED.
    int detail() const noexcept { return detail_; }

    /// async: until raise(); operation_aborted when cancelled first.
    boost::asio::awaitable<void> wait() {
        if (!raised_)
            co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        if (!raised_)
            throw boost::system::system_error(boost::asio::error::operation_aborted);
    }

    /// How the domain stopped, for an error message.
    std::string describe() const {
        switch (detail_) {
        case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
            return "crashed";
        case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
            return "shut down";
        case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
            return "was destroyed";
        case VIR_DOMAIN_EVENT_STOPPED_FAILED:
            return "failed in the hypervisor";
        default:
            return "stopped";
        }
    }

private:
    boost::asio::steady_timer timer_;
    bool raised_ = false;
    int detail_ = 0;
};

struct address_wait_settings {
    std::string uuid;
    std::string mac;
    /// dnsmasq's status file; empty where the hypervisor is not on this host.
    std::filesystem::path status_file;
    std::chrono::milliseconds poll_interval{1000}; ///< 0: never ask libvirt
    int budget_seconds = 20;                       ///< -1: no limit
};

// Each way of learning the address reports its end as a value: a branch of
// `||` that throws would just be ignored.
struct address_outcome {
    std::optional<std::string> ip;
    boost::system::error_code error;
    std::string message;
};

/// Rethrows what ended an `||` race whose every branch failed (all were
/// cancelled, usually): nested races wrap their failures in
/// multiple_exceptions too, so unwrap down to the first real one.
[[noreturn]] inline void rethrow_first(const boost::asio::multiple_exceptions& e) {
    std::exception_ptr first = e.first_exception();
    for (;;) {
        try {
            std::rethrow_exception(first);
        } catch (const boost::asio::multiple_exceptions& nested) {
            first = nested.first_exception();
        }
    }
}

inline bool is_cancellation(const boost::system::system_error& e) {
    return e.code() == boost::asio::error::operation_aborted;
}

inline boost::asio::awaitable<address_outcome> wait_forever() {
    boost::asio::steady_timer never(co_await boost::asio::this_coro::executor,
                                    std::chrono::steady_clock::time_point::max());
    co_await never.async_wait(boost::asio::use_awaitable);
    throw boost::system::system_error(boost::asio::error::operation_aborted);
}

/// dnsmasq's status file, read again whenever libvirt's lease helper
/// replaces it: the lease shows up within milliseconds of being granted.
inline boost::asio::awaitable<address_outcome> lease_from_status_file(std::filesystem::path file,
                                                                      std::string mac) {
    std::optional<status_file_watch> watch;
    try {
        watch.emplace(co_await boost::asio::this_coro::executor, file);
    } catch (const boost::system::system_error& e) {
        // No inotify (its per-user limit, say): asking libvirt still works.
        if (is_cancellation(e))
            throw;
    }
    if (!watch)
        co_return co_await wait_forever();
    try {
        for (;;) {
            // Armed before reading: a replacement in between is not missed.
            auto reading = async_run_blocking([file] { return read_lease_file(file); },
                                              boost::asio::use_awaitable);
            const std::optional<std::string> text = co_await std::move(reading);
            if (text)
                if (auto lease = find_lease(*text, mac, std::time(nullptr)))
                    co_return address_outcome{lease->ip_address, {}, {}};
            co_await watch->changed();
        }
    } catch (const boost::system::system_error& e) {
        // A file that is not what dnsmasq writes ends the wait; any other
        // trouble (cancellation aside) leaves the address to libvirt, and
        // this branch waits for nothing more.
        if (is_cancellation(e) || e.code() != errc::lease_file_malformed)
            throw;
        co_return address_outcome{std::nullopt, e.code(), e.what()};
    }
}

// On a worker: the first IPv4 address of domain `uuid`'s NIC with `mac`, as
// libvirt knows it from its own lease records, or from a guest agent. The
// domain is looked up on the connection at hand: after libvirtd restarted,
// handles from the old connection are dead.
inline std::optional<std::string>
interface_address(virConnectPtr connection, const std::string& uuid, const std::string& mac) {
    domain_handle domain(virDomainLookupByUUIDString(connection, uuid.c_str()));
    if (!domain) {
        virResetLastError();
        return std::nullopt; // gone: its STOPPED event says so
    }
    for (const unsigned source :
         {VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT}) {
        virDomainInterfacePtr* interfaces = nullptr;
        const int count = virDomainInterfaceAddresses(domain.get(), &interfaces, source, 0);
        if (count < 0) {
            virResetLastError(); // no agent, or the source does not apply here
            continue;
        }
        std::optional<std::string> found;
        for (int i = 0; i < count; ++i) {
            const virDomainInterfacePtr nic = interfaces[i];
            if (!found && nic->hwaddr && strcasecmp(nic->hwaddr, mac.c_str()) == 0)
                for (unsigned j = 0; j < nic->naddrs && !found; ++j)
                    if (nic->addrs[j].type == VIR_IP_ADDR_TYPE_IPV4 && nic->addrs[j].addr)
                        found = nic->addrs[j].addr;
            virDomainInterfaceFree(nic);
        }
        std::free(interfaces);
        if (found)
            return found;
    }
    return std::nullopt;
}

/// libvirt's view of the address, asked every `interval`: for hypervisors
/// without a status file on this host (remote ones, test:///).
inline boost::asio::awaitable<address_outcome>
lease_from_libvirt(std::shared_ptr<hypervisor_connection> connection, std::string uuid,
                   std::string mac, std::chrono::milliseconds interval) {
    boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor);
    for (;;) {
        auto asking = connection->call(
            [uuid, mac](virConnectPtr c) { return interface_address(c, uuid, mac); });
        if (auto ip = co_await std::move(asking))
            co_return address_outcome{std::move(*ip), {}, {}};
        pause.expires_after(interval);
        co_await pause.async_wait(boost::asio::use_awaitable);
    }
}

inline boost::asio::awaitable<address_outcome>
stopped_while_waiting(std::shared_ptr<stop_signal> stopped) {
    co_await stopped->wait();
    co_return address_outcome{std::nullopt, make_error_code(errc::domain_not_running),
                              "the domain " + stopped->describe() +
                                  " before it got an address: see its log in "
                                  "/var/log/libvirt/qemu/"};
}

inline boost::asio::awaitable<address_outcome> address_deadline(int seconds) {
    boost::asio::steady_timer deadline(co_await boost::asio::this_coro::executor,
                                       std::chrono::seconds(seconds));
    co_await deadline.async_wait(boost::asio::use_awaitable);
    co_return address_outcome{std::nullopt, make_error_code(errc::ip_wait_timeout),
                              "the domain got no address within " + std::to_string(seconds) +
                                  " s: is DHCP running on its bridge, and does the ISO boot?"};
}

/// async: the domain's address, from whichever of dnsmasq's status file and
/// libvirt knows it first. Errors: errc::ip_wait_timeout after the budget;
/// errc::domain_not_running when `stopped` is raised first;
/// errc::lease_file_malformed. Cancellable.
inline boost::asio::awaitable<std::string>
wait_for_address(std::shared_ptr<hypervisor_connection> connection, address_wait_settings settings,
                 std::shared_ptr<stop_signal> stopped) {
    using namespace boost::asio::experimental::awaitable_operators;
    std::error_code ignored;
    const bool watch_file =
        !settings.status_file.empty() &&
        std::filesystem::is_directory(settings.status_file.parent_path(), ignored);
    auto from_file =
        watch_file ? lease_from_status_file(settings.status_file, settings.mac) : wait_forever();
    auto from_libvirt = settings.poll_interval.count() > 0
                            ? lease_from_libvirt(std::move(connection), settings.uuid, settings.mac,
                                                 settings.poll_interval)
                            : wait_forever();
    auto stop = stopped_while_waiting(std::move(stopped));
    auto deadline =
        settings.budget_seconds >= 0 ? address_deadline(settings.budget_seconds) : wait_forever();
    std::variant<address_outcome, address_outcome, address_outcome, address_outcome> first;
    try {
        first = co_await (std::move(from_file) || std::move(from_libvirt) || std::move(stop) ||
                          std::move(deadline));
    } catch (const boost::asio::multiple_exceptions& e) {
        rethrow_first(e); // every branch failed: they were all cancelled
    }
    address_outcome outcome = std::visit([](address_outcome& o) { return std::move(o); }, first);
    if (!outcome.ip)
        throw boost::system::system_error(outcome.error, outcome.message);
    co_return std::move(*outcome.ip);
}

/// async: until the domain stopped, for at most `timeout`: by its STOPPED
/// event where the connection delivers them (`has_events`), else by asking
/// libvirt every 250 ms. Error: boost::asio::error::timed_out.
inline boost::asio::awaitable<void> wait_until_stopped(domain_handle domain,
                                                       std::shared_ptr<stop_signal> stopped,
                                                       bool has_events,
                                                       std::chrono::seconds timeout) {
    using namespace boost::asio::experimental::awaitable_operators;
    auto executor = co_await boost::asio::this_coro::executor;
    if (has_events) {
        boost::asio::steady_timer deadline(executor, timeout);
        std::variant<std::monostate, std::monostate> first;
        try {
            first = co_await (stopped->wait() || deadline.async_wait(boost::asio::use_awaitable));
        } catch (const boost::asio::multiple_exceptions& e) {
            rethrow_first(e); // both cancelled
        }
        if (first.index() == 0)
            co_return;
    } else {
        auto shared = std::shared_ptr<virDomain>(domain.release(), virDomainFree);
        const auto give_up = std::chrono::steady_clock::now() + timeout;
        boost::asio::steady_timer pause(executor);
        while (std::chrono::steady_clock::now() < give_up) {
            auto asking = async_run_blocking([shared] { return virDomainIsActive(shared.get()); },
                                             boost::asio::use_awaitable);
            if (co_await std::move(asking) == 0)
                co_return;
            pause.expires_after(std::chrono::milliseconds(250));
            co_await pause.async_wait(boost::asio::use_awaitable);
        }
    }
    throw boost::system::system_error(boost::asio::error::timed_out,
                                      "the guest did not shut down within " +
                                          std::to_string(timeout.count()) + " s");
}

} // namespace anweddol::detail

#endif
