//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_LIBVIRT_EVENT_LOOP_TIMERS_IPP
#define ANWEDDOL_IMPL_LIBVIRT_EVENT_LOOP_TIMERS_IPP

#include <anweddol/detail/libvirt/event_loop.hpp>
#include <anweddol/detail/sigpipe.hpp>

#include <boost/asio/post.hpp>

#include <chrono>

// libvirt's timeouts on the loop: part of libvirt_event_loop.ipp.
//
// Work is posted to the strand with mutex_ held, as arm() does: detach(),
// which the io_context's shutdown runs before its strand service shuts down,
// takes mutex_ too, so no post from another io_context's worker (libvirt's
// one test-driver timer moves between loops) can race that shutdown.

namespace anweddol::detail {

ANWEDDOL_DECL void libvirt_event_loop::timeout_registration::release() noexcept {
    std::lock_guard lock(calling);
    if (!std::exchange(released, true) && free_opaque)
        free_opaque(opaque);
}

ANWEDDOL_DECL int
libvirt_event_loop::add_timeout(int id, int period_ms,
                                std::shared_ptr<timeout_registration> registration) {
    std::shared_ptr<timeout_watch> timeout;
    {
        std::lock_guard lock(mutex_);
        if (detached_)
            return -1;
        timeout = std::make_shared<timeout_watch>(strand_, id, period_ms, std::move(registration));
        timeouts_.emplace(id, timeout);
        boost::asio::post(strand_, [this, timeout] { schedule(timeout); });
    }
    return id;
}

ANWEDDOL_DECL void libvirt_event_loop::update_timeout(int id, int period_ms) {
    std::shared_ptr<timeout_watch> timeout;
    {
        std::lock_guard lock(mutex_);
        auto found = timeouts_.find(id);
        if (found == timeouts_.end() || detached_)
            return;
        timeout = found->second;
        timeout->period_ms = period_ms;
        ++timeout->generation; // applies at once, also to a timer already running
        boost::asio::post(strand_, [this, timeout] { schedule(timeout); });
    }
}

ANWEDDOL_DECL int libvirt_event_loop::remove_timeout(int id) {
    std::shared_ptr<timeout_watch> timeout;
    {
        std::lock_guard lock(mutex_);
        auto found = timeouts_.find(id);
        if (found == timeouts_.end())
            return -1;
        timeout = found->second;
        timeout->removed = true;
        timeouts_.erase(found);
        release_later(timeout->registration);
        if (!detached_)
            boost::asio::post(strand_, [timeout] { timeout->timer.cancel(); });
    }
    return 0;
}

ANWEDDOL_DECL std::optional<libvirt_event_loop::timeout_spec>
libvirt_event_loop::take_timeout(int id) {
    std::shared_ptr<timeout_watch> timeout;
    {
        std::lock_guard lock(mutex_);
        auto found = timeouts_.find(id);
        if (found == timeouts_.end())
            return std::nullopt;
        timeout = found->second;
        timeout->removed = true;
        timeouts_.erase(found);
        if (!detached_)
            boost::asio::post(strand_, [timeout] { timeout->timer.cancel(); });
    }
    return timeout_spec{timeout->period_ms, timeout->registration};
}

ANWEDDOL_DECL void
libvirt_event_loop::release_later(std::shared_ptr<timeout_registration> registration) {
    // As free_later: from a clean stack, and not at all once the io_context
    // is gone (process exit).
    if (!detached_)
        boost::asio::post(strand_, event_loop_impl::deferred_release(std::move(registration)));
}

ANWEDDOL_DECL bool libvirt_event_loop::detached() const {
    std::lock_guard lock(mutex_);
    return detached_;
}

// Runs on the strand: (re)starts the timeout for its current period.
ANWEDDOL_DECL void libvirt_event_loop::schedule(const std::shared_ptr<timeout_watch>& timeout) {
    int period_ms;
    unsigned generation;
    {
        std::lock_guard lock(mutex_);
        if (timeout->removed)
            return;
        period_ms = timeout->period_ms;
        generation = timeout->generation;
    }
    timeout->timer.cancel();
    if (period_ms < 0)
        return; // disabled
    if (period_ms == 0) {
        // 0: fire on every loop iteration, i.e. once per pass through the queue.
        boost::asio::post(strand_, [this, timeout, generation] { fire(timeout, generation); });
        return;
    }
    timeout->timer.expires_after(std::chrono::milliseconds(period_ms));
    timeout->timer.async_wait([this, timeout, generation](boost::system::error_code ec) {
        if (!ec)
            fire(timeout, generation);
    });
}

// Runs on the strand.
ANWEDDOL_DECL void libvirt_event_loop::fire(const std::shared_ptr<timeout_watch>& timeout,
                                            unsigned generation) {
    {
        // Held across the check and the call: a loop the timeout moved to
        // cannot free its opaque in between (see timeout_registration).
        timeout_registration& registration = *timeout->registration;
        std::lock_guard calling(registration.calling);
        {
            std::lock_guard lock(mutex_);
            if (timeout->removed || timeout->generation != generation || registration.released)
                return; // removed or updated meanwhile: the update scheduled anew
        }
        const scope on_this_loop(this);
        const sigpipe_suppressed no_sigpipe; // a keepalive written to a dead libvirtd
        registration.callback(timeout->id, registration.opaque);
    }
    bool unchanged;
    {
        std::lock_guard lock(mutex_);
        unchanged = !timeout->removed && timeout->generation == generation;
    }
    if (unchanged)
        schedule(timeout); // periodic
}

} // namespace anweddol::detail

#endif
