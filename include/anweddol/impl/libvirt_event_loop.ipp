//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_LIBVIRT_EVENT_LOOP_IPP
#define ANWEDDOL_IMPL_LIBVIRT_EVENT_LOOP_IPP

#include <anweddol/detail/libvirt/event_hooks.hpp>
#include <anweddol/detail/libvirt/event_loop.hpp>
#include <anweddol/detail/sigpipe.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <utility>
#include <vector>

#include <poll.h>

namespace anweddol::detail {

// One registered descriptor per fd: libvirt may watch one fd several times
// (for reading and for writing), and Asio's reactor takes an fd only once.
struct libvirt_event_loop::fd_entry {
    fd_entry(const boost::asio::any_io_executor& executor, int fd)
        : descriptor(executor, fd) {}
    boost::asio::posix::stream_descriptor descriptor;
    bool read_pending = false;
    bool write_pending = false;
    bool dispatch_posted = false;
};

struct libvirt_event_loop::handle_watch {
    int fd;
    int events;
    virEventHandleCallback callback;
    void* opaque;
    virFreeCallback free_opaque;
};

struct libvirt_event_loop::timeout_watch {
    timeout_watch(const boost::asio::any_io_executor& executor, int id, int period_ms,
                  std::shared_ptr<timeout_registration> registration)
        : id(id)
        , period_ms(period_ms)
        , registration(std::move(registration))
        , timer(executor) {}
    int id;
    int period_ms;
    const std::shared_ptr<timeout_registration> registration;
    boost::asio::steady_timer timer; // touched on the strand only
    unsigned generation = 0;         // bumped by every update: stale expiries are ignored
    bool removed = false;
};

namespace event_loop_impl {

ANWEDDOL_DECL short to_poll_events(int events) {
    return static_cast<short>(((events & VIR_EVENT_HANDLE_READABLE) ? POLLIN : 0) |
                              ((events & VIR_EVENT_HANDLE_WRITABLE) ? POLLOUT : 0));
}

ANWEDDOL_DECL int from_poll_events(short revents) {
    return ((revents & POLLIN) ? VIR_EVENT_HANDLE_READABLE : 0) |
           ((revents & POLLOUT) ? VIR_EVENT_HANDLE_WRITABLE : 0) |
           ((revents & POLLHUP) ? VIR_EVENT_HANDLE_HANGUP : 0) |
           ((revents & (POLLERR | POLLNVAL)) ? VIR_EVENT_HANDLE_ERROR : 0);
}

// Which of `events` the fd has right now. Asio's reactor is edge-triggered,
// libvirt expects level-triggered watches: before waiting again we ask the
// kernel whether the fd is still ready, so that data libvirt left unread
// is not forgotten until more arrives.
ANWEDDOL_DECL int ready_now(int fd, int events) {
    pollfd probe{fd, to_poll_events(events), 0};
    if (::poll(&probe, 1, 0) <= 0)
        return 0;
    return from_poll_events(probe.revents);
}

// libvirt's free callback for a removed watch, run once: when the posted
// work runs, or when it is destroyed unrun because the io_context stopped
// running for good (its shutdown destroys what is queued, on a clean stack
// too). Otherwise a watch removed after the last run() (a connection closing
// on a worker) would keep libvirt's object alive for ever.
struct deferred_free {
    virFreeCallback free;
    void* opaque;
    deferred_free(virFreeCallback f, void* o) noexcept
        : free(f)
        , opaque(o) {}
    deferred_free(deferred_free&& other) noexcept
        : free(std::exchange(other.free, nullptr))
        , opaque(other.opaque) {}
    deferred_free& operator=(deferred_free&&) = delete;
    ~deferred_free() {
        if (free)
            free(opaque);
    }
    void operator()() noexcept { std::exchange(free, nullptr)(opaque); }
};

// The same for a timeout's registration, which frees its opaque only once
// no loop runs its callback.
struct deferred_release {
    std::shared_ptr<libvirt_event_loop::timeout_registration> registration;
    explicit deferred_release(std::shared_ptr<libvirt_event_loop::timeout_registration> r) noexcept
        : registration(std::move(r)) {}
    deferred_release(deferred_release&&) noexcept = default;
    deferred_release& operator=(deferred_release&&) = delete;
    ~deferred_release() {
        if (registration)
            registration->release();
    }
    void operator()() noexcept { std::exchange(registration, nullptr)->release(); }
};

} // namespace event_loop_impl

ANWEDDOL_DECL libvirt_event_loop::libvirt_event_loop(const boost::asio::any_io_executor& executor)
    : strand_(boost::asio::make_strand(executor)) {
    libvirt_event_hooks::attach(this);
}

ANWEDDOL_DECL libvirt_event_loop::~libvirt_event_loop() {
    libvirt_event_hooks::detach(this); // libvirt's later calls for our ids find nothing
    detach();
}

ANWEDDOL_DECL libvirt_event_loop::scope::scope(libvirt_event_loop* loop) noexcept
    : previous_(libvirt_event_hooks::current) {
    libvirt_event_hooks::current = loop;
}

ANWEDDOL_DECL libvirt_event_loop::scope::~scope() {
    libvirt_event_hooks::current = previous_;
}

ANWEDDOL_DECL std::size_t libvirt_event_loop::handle_count() const {
    std::lock_guard lock(mutex_);
    return handles_.size();
}

ANWEDDOL_DECL std::size_t libvirt_event_loop::timeout_count() const {
    std::lock_guard lock(mutex_);
    return timeouts_.size();
}

ANWEDDOL_DECL int libvirt_event_loop::wanted_events(int fd) const {
    int events = 0;
    for (const auto& [id, watch] : handles_)
        if (watch.fd == fd)
            events |= watch.events;
    return events;
}

// Called with mutex_ held.
ANWEDDOL_DECL void libvirt_event_loop::arm(const std::shared_ptr<fd_entry>& entry) {
    const int fd = entry->descriptor.native_handle();
    const int wanted = wanted_events(fd) & (VIR_EVENT_HANDLE_READABLE | VIR_EVENT_HANDLE_WRITABLE);
    if (wanted == 0 || entry->dispatch_posted)
        return;
    if (event_loop_impl::ready_now(fd, wanted) != 0) {
        entry->dispatch_posted = true;
        boost::asio::post(strand_, [this, entry] {
            {
                std::lock_guard lock(mutex_);
                entry->dispatch_posted = false;
            }
            on_ready(entry);
        });
        return;
    }
    auto wait = [&](boost::asio::posix::descriptor_base::wait_type type, bool fd_entry::*pending) {
        if (entry.get()->*pending)
            return;
        entry.get()->*pending = true;
        entry->descriptor.async_wait(
            type,
            boost::asio::bind_executor(strand_, [this, entry, pending](boost::system::error_code) {
                {
                    std::lock_guard lock(mutex_);
                    entry.get()->*pending = false;
                }
                // Also after an error or a cancellation: on_ready asks the
                // kernel, and ignores an entry that was removed meanwhile.
                on_ready(entry);
            }));
    };
    if (wanted & VIR_EVENT_HANDLE_READABLE)
        wait(boost::asio::posix::descriptor_base::wait_read, &fd_entry::read_pending);
    if (wanted & VIR_EVENT_HANDLE_WRITABLE)
        wait(boost::asio::posix::descriptor_base::wait_write, &fd_entry::write_pending);
}

// Runs on the strand: calls every watch of the fd that wants what is ready.
ANWEDDOL_DECL void libvirt_event_loop::on_ready(const std::shared_ptr<fd_entry>& entry) {
    struct due {
        int id;
        int events;
        virEventHandleCallback callback;
        void* opaque;
    };
    std::vector<due> calls;
    int fd = -1;
    {
        std::lock_guard lock(mutex_);
        auto current = fds_.find(entry->descriptor.native_handle());
        if (!entry->descriptor.is_open() || current == fds_.end() || current->second != entry)
            return; // removed (a late completion)
        fd = entry->descriptor.native_handle();
        const int ready = event_loop_impl::ready_now(fd, wanted_events(fd));
        for (const auto& [id, watch] : handles_) {
            const int events =
                ready & (watch.events | VIR_EVENT_HANDLE_HANGUP | VIR_EVENT_HANDLE_ERROR);
            if (watch.fd == fd && watch.events != 0 && events != 0)
                calls.push_back({id, events, watch.callback, watch.opaque});
        }
    }
    const scope on_this_loop(this);      // what the callbacks register lands here
    const sigpipe_suppressed no_sigpipe; // libvirt writes to sockets whose peer may be gone
    for (const due& call : calls) {
        {
            // An earlier callback may have removed or disabled this watch.
            std::lock_guard lock(mutex_);
            auto watch = handles_.find(call.id);
            if (watch == handles_.end() || watch->second.events == 0)
                continue;
        }
        call.callback(call.id, fd, call.events, call.opaque);
    }
    std::lock_guard lock(mutex_);
    auto current = fds_.find(fd);
    if (current != fds_.end() && current->second == entry)
        arm(entry);
}

ANWEDDOL_DECL void libvirt_event_loop::free_later(virFreeCallback free_opaque, void* opaque) {
    // libvirt may hold its own locks while it removes a watch: run the free
    // callback later, from a clean stack. With no io_context left (process
    // exit), there is no later: the opaque is left alone.
    if (free_opaque && !detached_)
        boost::asio::post(strand_, event_loop_impl::deferred_free(free_opaque, opaque));
}

ANWEDDOL_DECL void libvirt_event_loop::detach() {
    std::lock_guard lock(mutex_);
    detached_ = true;
    for (auto& [fd, entry] : fds_)
        if (entry->descriptor.is_open())
            entry->descriptor.release(); // libvirt's fd: never closed here
    fds_.clear();
    // Timeouts stay listed (nothing schedules them any more): a driver that
    // outlives this io_context (test:///'s one event timer per process) may
    // re-arm one from another loop, which then takes it over.
}

ANWEDDOL_DECL int libvirt_event_loop::add_handle(int id, int fd, int events,
                                                 virEventHandleCallback callback, void* opaque,
                                                 virFreeCallback free_opaque) {
    std::lock_guard lock(mutex_);
    if (detached_)
        return -1;
    auto entry = fds_.find(fd);
    if (entry == fds_.end()) {
        try {
            entry = fds_.emplace(fd, std::make_shared<fd_entry>(strand_, fd)).first;
        } catch (const std::exception&) {
            return -1; // not a pollable fd
        }
    }
    handles_.emplace(id, handle_watch{fd, events, callback, opaque, free_opaque});
    arm(entry->second);
    return id;
}

ANWEDDOL_DECL void libvirt_event_loop::update_handle(int id, int events) {
    std::lock_guard lock(mutex_);
    auto found = handles_.find(id);
    if (found == handles_.end() || detached_)
        return;
    found->second.events = events;
    arm(fds_.at(found->second.fd));
}

ANWEDDOL_DECL int libvirt_event_loop::remove_handle(int id) {
    std::lock_guard lock(mutex_);
    auto found = handles_.find(id);
    if (found == handles_.end())
        return -1;
    const int fd = found->second.fd;
    const virFreeCallback free_opaque = found->second.free_opaque;
    void* const opaque = found->second.opaque;
    handles_.erase(found);
    if (!detached_ && wanted_events(fd) == 0) {
        bool other_watch = false;
        for (const auto& [other_id, other] : handles_)
            other_watch = other_watch || other.fd == fd;
        if (!other_watch) {
            // libvirt owns the fd and may close it as soon as we return:
            // deregister it now, synchronously, and never close it.
            auto entry = fds_.find(fd);
            entry->second->descriptor.release();
            fds_.erase(entry);
        }
    }
    free_later(free_opaque, opaque);
    return 0;
}

} // namespace anweddol::detail

#include <anweddol/impl/libvirt_event_loop_timers.ipp>

#endif
