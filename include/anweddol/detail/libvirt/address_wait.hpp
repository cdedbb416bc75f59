//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_ADDRESS_WAIT_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_ADDRESS_WAIT_HPP

#include <anweddol/detail/async/blocking_call.hpp>
#include <anweddol/detail/async/race.hpp>
#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/libvirt/lease_file.hpp>
#include <anweddol/detail/libvirt/status_file_watch.hpp>
#include <anweddol/detail/libvirt/stop_signal.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <variant>

namespace anweddol::detail {

struct address_wait_settings {
    std::string mac;
    /// dnsmasq's status file; empty where the hypervisor is not on this host.
    std::filesystem::path status_file;
    std::chrono::milliseconds poll_interval{1000};             ///< 0: never ask libvirt
    std::optional<std::chrono::steady_clock::duration> budget; ///< nullopt: no limit
    /// Worker threads for reading the status file and closing its watch.
    boost::asio::thread_pool::executor_type workers;
    completion_batcher* completions = nullptr;
    /// Asks libvirt for the address (a call on the connection's lanes).
    std::function<boost::asio::awaitable<std::optional<std::string>>()> ask_libvirt;
    /// Only a lease that expires after this (seconds since the epoch)
    /// counts: a domain restored from a snapshot slot has the MAC of the
    /// slot's earlier containers, whose lease outlives them.
    std::int64_t lease_expiring_after = 0;
};

// Each way of learning the address reports its end as a value: a branch of
// `||` that throws would just be ignored.
struct address_outcome {
    std::optional<std::string> ip;
    boost::system::error_code error;
    std::string message;
};

/// dnsmasq's status file, read again whenever libvirt's lease helper
/// replaces it: the lease shows up within milliseconds of being granted.
inline boost::asio::awaitable<address_outcome>
lease_from_status_file(std::filesystem::path file, std::string mac, std::int64_t expiring_after,
                       boost::asio::thread_pool::executor_type workers,
                       completion_batcher* completions) {
    std::optional<status_file_watch> watch;
    try {
        watch.emplace(co_await boost::asio::this_coro::executor, file, workers);
    } catch (const boost::system::system_error& e) {
        // No inotify (its per-user limit, say): asking libvirt still works.
        if (is_cancellation(e))
            throw;
    }
    if (!watch)
        co_return co_await wait_forever<address_outcome>(); // no captures
    try {
        for (;;) {
            // Armed before reading: a replacement in between is not missed.
            // Built outside the co_await expression: GCC 12 destroys
            // temporaries with captures inside one twice.
            auto reading =
                run_blocking(workers, completions, [file] { return read_lease_file(file); });
            const std::optional<std::string> text = co_await std::move(reading);
            if (text)
                if (auto lease = find_lease(
                        *text, mac, std::max<std::int64_t>(std::time(nullptr), expiring_after + 1)))
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

/// The first pause between two questions to libvirt: a guest that boots
/// fast is seen soon, and the pauses double from here up to the poll
/// interval, so that a slow one costs few RPCs.
inline constexpr std::chrono::milliseconds first_libvirt_poll{250};

/// libvirt's view of the address, asked again after a pause that grows from
/// first_libvirt_poll to `interval`: for hypervisors without a status file
/// on this host (remote ones, test:///).
inline boost::asio::awaitable<address_outcome>
lease_from_libvirt(std::function<boost::asio::awaitable<std::optional<std::string>>()> ask,
                   std::chrono::milliseconds interval) {
    boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor);
    std::chrono::milliseconds next = std::min(first_libvirt_poll, interval);
    for (;;) {
        auto asking = ask();
        try {
            if (auto ip = co_await std::move(asking))
                co_return address_outcome{std::move(*ip), {}, {}};
        } catch (const boost::system::system_error& e) {
            // A reopen refused while libvirtd restarts: ask again later.
            // (Thrown out of this branch, it would leave a remote start
            // nothing to learn its address from until the deadline.)
            if (is_cancellation(e))
                throw;
        }
        pause.expires_after(next);
        co_await pause.async_wait(boost::asio::use_awaitable);
        next = std::min(next * 2, interval);
    }
}

inline boost::asio::awaitable<address_outcome>
stopped_while_waiting(std::shared_ptr<stop_signal> stopped) {
    co_await stopped->wait();
    co_return address_outcome{std::nullopt, stopped->code(),
                              "the domain " + stopped->describe() +
                                  " before it got an address: see its console in the "
                                  "diagnostics, and its log in /var/log/libvirt/qemu/"};
}

inline boost::asio::awaitable<address_outcome>
address_deadline(std::chrono::steady_clock::duration budget) {
    boost::asio::steady_timer deadline(co_await boost::asio::this_coro::executor, budget);
    co_await deadline.async_wait(boost::asio::use_awaitable);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(budget).count();
    co_return address_outcome{std::nullopt, make_error_code(errc::ip_wait_timeout),
                              "the domain got no address within " + std::to_string(ms) +
                                  " ms: is DHCP running on its bridge, and does the ISO boot?"};
}

/// async: the domain's address, from whichever of dnsmasq's status file and
/// libvirt knows it first. Errors: errc::ip_wait_timeout after the budget;
/// `stopped`'s code (errc::domain_not_running, domain_paused,
/// domain_crashed) when it is raised first;
/// errc::lease_file_malformed. Cancellable.
inline boost::asio::awaitable<std::string> wait_for_address(address_wait_settings settings,
                                                            std::shared_ptr<stop_signal> stopped) {
    using namespace boost::asio::experimental::awaitable_operators;
    std::error_code ignored;
    const bool watch_file =
        !settings.status_file.empty() &&
        std::filesystem::is_directory(settings.status_file.parent_path(), ignored);
    auto from_file = watch_file ? lease_from_status_file(settings.status_file, settings.mac,
                                                         settings.lease_expiring_after,
                                                         settings.workers, settings.completions)
                                : wait_forever<address_outcome>();
    auto from_libvirt = settings.poll_interval.count() > 0
                            ? lease_from_libvirt(settings.ask_libvirt, settings.poll_interval)
                            : wait_forever<address_outcome>();
    auto stop = stopped_while_waiting(std::move(stopped));
    auto deadline =
        settings.budget ? address_deadline(*settings.budget) : wait_forever<address_outcome>();
    std::variant<address_outcome, address_outcome, address_outcome, address_outcome> first;
    try {
        first = co_await (std::move(from_file) || std::move(from_libvirt) || std::move(stop) ||
                          std::move(deadline));
    } catch (const boost::asio::multiple_exceptions& e) {
        rethrow_first(e); // every branch failed: they were all cancelled
    }
    address_outcome outcome = std::visit([](address_outcome& o) { return std::move(o); }, first);
    if (!outcome.ip)
        throw_error(outcome.error, std::move(outcome.message));
    co_return std::move(*outcome.ip);
}

} // namespace anweddol::detail

#endif
