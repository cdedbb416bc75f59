//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_HYPERVISOR_CONNECTION_HPP
#define ANWEDDOL_HYPERVISOR_CONNECTION_HPP

#include <anweddol/detail/config.hpp>
#include <anweddol/detail/async_semaphore.hpp>
#include <anweddol/detail/blocking_pool.hpp>
#include <anweddol/detail/libvirt_handle.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libvirt/libvirt.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace anweddol {

/// A domain's lifecycle change, as libvirt reports it
/// (VIR_DOMAIN_EVENT_ID_LIFECYCLE).
struct domain_lifecycle_event {
    std::string uuid;
    std::string name;
    int event = 0;  ///< a virDomainEventType: VIR_DOMAIN_EVENT_STARTED, _STOPPED, ...
    int detail = 0; ///< the event's detail, such as VIR_DOMAIN_EVENT_STOPPED_DESTROYED
};

/// A connection to a libvirt driver URI, shared by everything in the process
/// that uses that URI, and reopened on next use after libvirtd dropped it.
///
/// Every libvirt call runs on one of the connection's `max_calls_in_flight`
/// worker threads ("lanes"; libvirtd's max_client_requests is 5) and resumes
/// on the calling coroutine's executor: excess calls queue in order without
/// blocking any thread, and lanes take queued calls back to back without
/// sleeping in between. libvirt's event loop runs
/// on the executor of the first connection ever opened; its io_context must
/// keep running while connections exist. Thread-safe.
class hypervisor_connection : public std::enable_shared_from_this<hypervisor_connection> {
public:
    struct options {
        std::size_t max_calls_in_flight = 5;
        int keepalive_interval_seconds = 5; ///< virConnectSetKeepAlive; -1 disables
        unsigned keepalive_count = 3;
        /// Subscribe to libvirt's domain lifecycle events (subscribe(),
        /// wait_for_event()). libvirt then runs a callback on the io_context
        /// for every domain event of the connection; a connection used for
        /// calls alone can do without. Once one opener of a URI asked for
        /// events, its shared connection has them.
        bool lifecycle_events = true;
    };

    /// async: the open connection to `uri` (such as "qemu:///system"),
    /// opening it on a worker if this process has none. `opts` apply when it
    /// is opened. Errors: libvirt's, with its message (libvirt_category()).
    static boost::asio::awaitable<std::shared_ptr<hypervisor_connection>> open(std::string uri,
                                                                               options opts);
    static boost::asio::awaitable<std::shared_ptr<hypervisor_connection>> open(std::string uri) {
        return open(std::move(uri), options{});
    }

    hypervisor_connection(const hypervisor_connection&) = delete;
    hypervisor_connection& operator=(const hypervisor_connection&) = delete;
    ~hypervisor_connection();

    /// async: runs `work(virConnectPtr)` on one of the lanes and returns its
    /// result (std::monostate for void). `work` reports a failure by throwing,
    /// typically with detail::throw_last_libvirt_error right after the failing
    /// call. Waits in the queue for a free lane first; cancelling it there
    /// completes with operation_aborted and runs nothing. A call that started
    /// runs to its end. Reopens the connection first if libvirtd dropped it.
    template <class Work>
    boost::asio::awaitable<detail::blocking_result_t<std::invoke_result_t<Work&, virConnectPtr>>>
    call(Work work);

    /// Whether the connection is open: false once libvirt reported it closed
    /// (libvirtd restarted or keepalive timed out) until the next call reopens it.
    bool is_open() const noexcept { return open_.load(); }
    const std::string& uri() const noexcept { return uri_; }
    std::size_t max_calls_in_flight() const noexcept { return options_.max_calls_in_flight; }
    /// The most calls that ever ran at once on the worker pool.
    std::size_t peak_calls_in_flight() const noexcept { return peak_in_flight_.load(); }
    /// A new reference to the current libvirt connection (nullptr before the
    /// first open): for blocking work that must run outside call(), such as a
    /// destructor's last destroy. Thread-safe.
    detail::connect_handle current() const;

    /// Whether libvirt delivers lifecycle events to this connection's subscribers.
    bool lifecycle_events() const noexcept { return events_wanted_.load(); }
    /// How often the connection was opened (1 + reopens).
    unsigned open_count() const noexcept { return open_count_.load(); }

    /// Unsubscribes when destroyed.
    class subscription {
    public:
        subscription() = default;
        subscription(subscription&& other) noexcept
            : owner_(std::move(other.owner_))
            , id_(std::exchange(other.id_, 0)) {}
        /// Unsubscribes from what this held before taking `other`'s.
        subscription& operator=(subscription&& other) noexcept {
            if (this != &other) {
                reset();
                owner_ = std::move(other.owner_);
                id_ = std::exchange(other.id_, 0);
            }
            return *this;
        }
        ~subscription() { reset(); }
        void reset();

    private:
        friend class hypervisor_connection;
        subscription(std::weak_ptr<hypervisor_connection> owner, int id)
            : owner_(std::move(owner))
            , id_(id) {}
        std::weak_ptr<hypervisor_connection> owner_;
        int id_ = 0;
    };

    /// Calls `handler` on `executor` for every lifecycle event of every
    /// domain of this connection, until the subscription is destroyed.
    /// Needs a connection opened with options::lifecycle_events (the default).
    [[nodiscard]] subscription
    subscribe(boost::asio::any_io_executor executor,
              std::function<void(const domain_lifecycle_event&)> handler);

    /// Calls `handler(reason)` (a virConnectCloseReason) on `executor` when
    /// libvirt reports the connection closed.
    [[nodiscard]] subscription on_close(boost::asio::any_io_executor executor,
                                        std::function<void(int)> handler);

    /// async: the next lifecycle event `event` (a virDomainEventType) of the
    /// domain `uuid`. Errors: boost::asio::error::timed_out after `timeout`;
    /// operation_aborted when cancelled. Subscribe before acting on the
    /// domain, as this does: an event that happened earlier is not seen.
    boost::asio::awaitable<domain_lifecycle_event>
    wait_for_event(std::string uuid, int event, std::chrono::steady_clock::duration timeout);

private:
    struct subscriber {
        boost::asio::any_io_executor executor;
        std::function<void(const domain_lifecycle_event&)> on_event;
        std::function<void(int)> on_close;
    };

    hypervisor_connection(std::string uri, options opts);

    static std::shared_ptr<hypervisor_connection> shared_for(const std::string& uri, options opts);
    static boost::asio::awaitable<void> reopen(std::shared_ptr<hypervisor_connection> self);
    void reopen_blocking();
    int register_lifecycle(virConnectPtr connection);
    void register_lifecycle_blocking(virConnectPtr connection);
    int add_subscriber(subscriber s);
    void remove_subscriber(int id);
    void publish(const domain_lifecycle_event& event);
    void publish_close(int reason);

    static int on_lifecycle(virConnectPtr, virDomainPtr domain, int event, int detail,
                            void* opaque);
    static void on_closed(virConnectPtr, int reason, void* opaque);
    static void free_weak_self(void* opaque);

    const std::string uri_;
    const options options_;
    // max_calls_in_flight threads that run this connection's calls back to
    // back while calls queue.
    std::shared_ptr<boost::asio::thread_pool> lanes_;
    detail::async_semaphore reopen_lock_{1};
    std::atomic<bool> open_{false};
    std::atomic<bool> events_wanted_;
    std::atomic<std::size_t> in_flight_{0};
    std::atomic<std::size_t> peak_in_flight_{0};
    std::atomic<unsigned> open_count_{0};

    mutable std::mutex mutex_; // guards everything below
    detail::connect_handle connection_;
    int lifecycle_callback_ = -1;
    std::map<int, subscriber> subscribers_;
    int next_subscriber_ = 1;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/hypervisor_connection.ipp>
#endif

#endif
