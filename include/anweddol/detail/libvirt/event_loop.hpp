//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_EVENT_LOOP_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_EVENT_LOOP_HPP

#include <anweddol/detail/config.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>

namespace anweddol::detail {

/// libvirt's event loop on one io_context: the fd watches and timeouts that
/// libvirt registers (through the process-wide hooks of event_hooks.hpp)
/// become async waits and timers on a strand of that io_context, so
/// keepalives and domain events are dispatched there, never on a thread of
/// their own.
///
/// One per runtime (per io_context). Which loop a registration lands on is
/// decided by the thread libvirt registers it from: the connection's worker
/// threads and this loop's own callbacks run inside a `scope` of their
/// loop. When the io_context shuts down, the loop lets go of its fds and
/// timers (a connection closed afterwards finds nothing to touch).
class libvirt_event_loop {
public:
    explicit libvirt_event_loop(const boost::asio::any_io_executor& executor);
    libvirt_event_loop(const libvirt_event_loop&) = delete;
    libvirt_event_loop& operator=(const libvirt_event_loop&) = delete;
    ~libvirt_event_loop();

    /// The executor (a strand) on which libvirt's callbacks run.
    const boost::asio::strand<boost::asio::any_io_executor>& get_executor() const noexcept {
        return strand_;
    }

    /// Watches and timeouts libvirt has registered here and not yet removed.
    std::size_t handle_count() const;
    std::size_t timeout_count() const;

    /// Marks the calling thread as working for `loop` while it lives:
    /// whatever libvirt registers from it lands on that loop.
    class scope {
    public:
        explicit scope(libvirt_event_loop* loop) noexcept;
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;
        ~scope();

    private:
        libvirt_event_loop* previous_;
    };

    // What the process-wide hooks call, with an id they allocated.
    int add_handle(int id, int fd, int events, virEventHandleCallback callback, void* opaque,
                   virFreeCallback free_opaque);
    void update_handle(int id, int events);
    int remove_handle(int id);
    struct timeout_registration;
    int add_timeout(int id, int period_ms, std::shared_ptr<timeout_registration> registration);
    void update_timeout(int id, int period_ms);
    int remove_timeout(int id);

    /// A timeout as libvirt registered it. Shared by the loops it moves
    /// between (see event_hooks.hpp): its callback may still run on the
    /// loop it left while the loop it moved to removes it, so the callback
    /// and the free of its opaque take turns, whichever loops run them.
    struct timeout_registration {
        timeout_registration(virEventTimeoutCallback c, void* o, virFreeCallback f) noexcept
            : callback(c)
            , opaque(o)
            , free_opaque(f) {}
        const virEventTimeoutCallback callback;
        void* const opaque;
        const virFreeCallback free_opaque;
        std::mutex calling;    // held while the callback runs, and while the opaque is freed
        bool released = false; // under `calling`: the callback must not run any more

        /// Frees the opaque once no callback runs; the first call only.
        void release() noexcept;
    };

    /// A timeout taken out of a loop, to move it to another.
    struct timeout_spec {
        int period_ms;
        std::shared_ptr<timeout_registration> registration;
    };
    /// Takes timeout `id` out of this loop without freeing its opaque, so
    /// that another loop can serve it (see event_hooks.hpp).
    std::optional<timeout_spec> take_timeout(int id);
    /// Whether this loop's io_context is gone.
    bool detached() const;

    /// The io_context is going: release every fd, drop every timer.
    void detach();

private:
    struct fd_entry;
    struct handle_watch;
    struct timeout_watch;

    int wanted_events(int fd) const;
    void arm(const std::shared_ptr<fd_entry>& entry);
    void on_ready(const std::shared_ptr<fd_entry>& entry);
    void schedule(const std::shared_ptr<timeout_watch>& timeout);
    void fire(const std::shared_ptr<timeout_watch>& timeout, unsigned generation);
    void free_later(virFreeCallback free_opaque, void* opaque);
    void release_later(std::shared_ptr<timeout_registration> registration);

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    // Guards the tables, every entry's fields and every I/O object: libvirt
    // calls the hooks from any thread, and a descriptor must not be released
    // while another thread starts a wait on it. Never held while calling
    // into libvirt.
    mutable std::mutex mutex_;
    std::map<int, std::shared_ptr<fd_entry>> fds_;
    std::map<int, handle_watch> handles_;
    std::map<int, std::shared_ptr<timeout_watch>> timeouts_;
    bool detached_ = false;
};

} // namespace anweddol::detail

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/libvirt_event_loop.ipp>
#endif

#endif
