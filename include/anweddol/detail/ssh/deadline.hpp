//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_DEADLINE_HPP
#define ANWEDDOL_DETAIL_SSH_DEADLINE_HPP

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <utility>

namespace anweddol::detail {

/// A deadline that, when it passes, sets a flag and calls `on_expiry` (which
/// wakes the waiters, who report the flag as timed_out). A flag rather than a
/// cancellation: libssh calls that returned "again" must be repeated, so the
/// waits check it between calls. Cancelled when destroyed.
class ssh_deadline {
public:
    template <class OnExpiry>
    ssh_deadline(const boost::asio::any_io_executor& executor,
                 std::chrono::steady_clock::time_point at, OnExpiry on_expiry)
        : timer_(executor, at) {
        if (at == std::chrono::steady_clock::time_point::max())
            return;
        timer_.async_wait([expired = expired_,
                           on_expiry = std::move(on_expiry)](boost::system::error_code ec) mutable {
            if (ec)
                return;
            *expired = true;
            on_expiry();
        });
    }
    ssh_deadline(const ssh_deadline&) = delete;
    ssh_deadline& operator=(const ssh_deadline&) = delete;
    ~ssh_deadline() { timer_.cancel(); }

    const bool* expired() const noexcept { return expired_.get(); }
    bool has_expired() const noexcept { return *expired_; }

private:
    boost::asio::steady_timer timer_;
    std::shared_ptr<bool> expired_ = std::make_shared<bool>(false);
};

} // namespace anweddol::detail

#endif
