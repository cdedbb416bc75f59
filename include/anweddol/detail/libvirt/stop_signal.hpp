//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_STOP_SIGNAL_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_STOP_SIGNAL_HPP

#include <anweddol/detail/async/race.hpp>
#include <anweddol/detail/diagnostics.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libvirt/libvirt.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <variant>

namespace anweddol::detail {

/// Set once by the lifecycle event that ends a domain's life, or its start:
/// STOPPED, CRASHED, or (with watch_pauses) a SUSPENDED the guest did not
/// ask for. A coroutine can wait for it. Lives on one executor: raise() and
/// wait() must run there.
class stop_signal {
public:
    explicit stop_signal(boost::asio::any_io_executor executor)
        : timer_(std::move(executor), std::chrono::steady_clock::time_point::max()) {}

    /// Takes a lifecycle event. A start watches for pauses too: a guest
    /// that pauses on its own (an I/O error, KVM's emulation failure) would
    /// otherwise be waited on until the address wait times out.
    void on_event(int event, int detail, bool watch_pauses) {
        switch (event) {
        case VIR_DOMAIN_EVENT_STOPPED:
            raise(make_error_code(errc::domain_not_running), describe_stop(detail));
            break;
        case VIR_DOMAIN_EVENT_CRASHED:
            raise(make_error_code(errc::domain_crashed),
                  detail == VIR_DOMAIN_EVENT_CRASHED_PANICKED ? "crashed: the guest's kernel panicked"
                                                              : "crashed");
            break;
        case VIR_DOMAIN_EVENT_RESUMED:
            resumed_ = true;
            break;
        case VIR_DOMAIN_EVENT_SUSPENDED:
            // A domain created paused reports SUSPENDED before anweddol
            // resumes it: only a pause after it ran counts.
            if (watch_pauses && resumed_)
                raise(make_error_code(errc::domain_paused), describe_pause(detail));
            break;
        default:
            break;
        }
    }

    void raise(boost::system::error_code code, std::string how) {
        if (raised_)
            return;
        raised_ = true;
        code_ = code;
        how_ = std::move(how);
        timer_.cancel();
    }
    bool raised() const noexcept { return raised_; }
    /// errc::domain_not_running, errc::domain_paused or errc::domain_crashed.
    boost::system::error_code code() const noexcept { return code_; }
    /// How the domain ended, for an error message: "crashed", "paused on its
    /// own (an I/O error)".
    const std::string& describe() const noexcept { return how_; }

    /// async: until raise(); operation_aborted when cancelled first.
    boost::asio::awaitable<void> wait() {
        if (!raised_)
            co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        if (!raised_)
            throw boost::system::system_error(boost::asio::error::operation_aborted);
    }

private:
    static std::string describe_stop(int detail) {
        switch (detail) {
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
    static std::string describe_pause(int detail) {
        switch (detail) {
        case VIR_DOMAIN_EVENT_SUSPENDED_IOERROR:
            return "paused on its own after an I/O error";
        case VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG:
            return "paused on its own: its watchdog fired";
        case VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR:
            return "paused on its own after a hypervisor API error";
        case VIR_DOMAIN_EVENT_SUSPENDED_PAUSED:
            // What QEMU reports for an internal error such as KVM's
            // "emulation failure": libvirt knows no reason.
            return "paused for a reason libvirt does not know (QEMU stops a guest so after an "
                   "internal error such as KVM's emulation failure: its log in "
                   "/var/log/libvirt/qemu/ says which)";
        default:
            return "paused on its own (libvirt's reason " + std::to_string(detail) + ")";
        }
    }

    boost::asio::steady_timer timer_;
    bool raised_ = false;
    bool resumed_ = false;
    boost::system::error_code code_;
    std::string how_;
};

/// async: until the domain stopped, for at most `timeout`: by its STOPPED
/// event where the connection delivers them (`has_events`), else by asking
/// `still_running()` (a libvirt call on the connection) every 250 ms.
/// Error: a code equal to std::errc::timed_out.
inline boost::asio::awaitable<void>
wait_until_stopped(std::shared_ptr<stop_signal> stopped, bool has_events,
                   std::function<boost::asio::awaitable<bool>()> still_running,
                   std::chrono::steady_clock::duration timeout) {
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
        const auto give_up = std::chrono::steady_clock::now() + timeout;
        boost::asio::steady_timer pause(executor);
        while (std::chrono::steady_clock::now() < give_up) {
            if (!co_await still_running())
                co_return;
            pause.expires_after(std::chrono::milliseconds(250));
            co_await pause.async_wait(boost::asio::use_awaitable);
        }
    }
    throw_error(
        boost::asio::error::timed_out,
        "the guest did not shut down within " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
            " ms");
}

} // namespace anweddol::detail

#endif
