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
