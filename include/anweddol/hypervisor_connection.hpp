//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_HYPERVISOR_CONNECTION_HPP
#define ANWEDDOL_HYPERVISOR_CONNECTION_HPP

#include <anweddol/detail/config.hpp>

#include <anweddol/detail/async/async_semaphore.hpp>
#include <anweddol/detail/async/blocking_call.hpp>
#include <anweddol/detail/async/initiate.hpp>
#include <anweddol/detail/async/worker_threads.hpp>
#include <anweddol/detail/libvirt/connection_liveness.hpp>
#include <anweddol/detail/libvirt/event_loop.hpp>
#include <anweddol/detail/libvirt/event_router.hpp>
#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include <libvirt/libvirt.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>

namespace anweddol {

/// A connection to a libvirt driver URI, shared by everything on one
/// io_context (its runtime) that uses that URI with the same settings,
/// closed when the last holder lets go, and reopened on next use after
/// libvirtd dropped it.
///
/// Every libvirt call runs on one of the connection's worker threads
/// ("lanes") and resumes on the caller's executor: excess calls queue in
/// order without blocking any thread. Lifecycle events arrive on the
/// io_context's libvirt event loop and reach the subscribers of their domain
/// only. Thread-safe.
class hypervisor_connection : public std::enable_shared_from_this<hypervisor_connection> {
public:
    struct options {
        /// Worker threads, hence libvirt calls at once. 0: automatic, 1 for
        /// libvirt's in-process drivers (test:///, which run every call
        /// under one lock: more lanes only contend) and 5 otherwise
        /// (libvirtd's max_client_requests).
        std::size_t max_calls_in_flight = 0;
        /// virConnectSetKeepAlive; zero disables.
        std::chrono::seconds keepalive_interval{5};
        unsigned keepalive_count = 3;
        /// Subscribe to libvirt's domain lifecycle events (subscribe(),
        /// wait_for_event()). A connection used for calls alone can do
        /// without. Once one opener of a shared connection asked for events,
        /// it has them.
        bool lifecycle_events = true;
        /// How long opening (or reopening) the connection may take before it
        /// fails with a code equal to std::errc::timed_out naming the URI:
        /// libvirt has no timeout of its own there, and a host that accepts
        /// the connection but never answers would hold the caller forever.
        /// Each open runs on a thread of its own, so such a host holds no
        /// thread that other work needs. Must be positive; the first opener
        /// of a shared connection sets it.
        std::chrono::steady_clock::duration open_timeout = std::chrono::seconds(30);
    };

    /// async: the open connection to `uri` (such as "qemu:///system") of the
    /// io_context behind `executor`, opening it on a worker if there is none
    /// with the same settings; completes with `(error_code,
    /// std::shared_ptr<hypervisor_connection>)`. Errors: libvirt's
    /// (libvirt_category(), libvirt's message in the diagnostics);
    /// boost::asio::error::timed_out after options::open_timeout;
    /// errc::invalid_argument for an empty URI or a timeout that is not
    /// positive; errc::foreign_event_loop. Cancelling it leaves no
    /// connection open that nobody holds.
    template <class CompletionToken = default_completion_token>
    static auto async_open(boost::asio::any_io_executor executor, std::string uri, options opts,
                           CompletionToken&& token = {}) {
        auto opening = open_on(executor, std::move(uri), opts);
        return detail::initiate_coroutine(std::move(executor), std::move(opening), nullptr,
                                          std::forward<CompletionToken>(token));
    }

    /// async_open, filling `diag` with libvirt's message on failure.
    template <class CompletionToken = default_completion_token>
    static auto async_open(boost::asio::any_io_executor executor, std::string uri, options opts,
                           diagnostics& diag, CompletionToken&& token = {}) {
        auto opening = open_on(executor, std::move(uri), opts);
        return detail::initiate_coroutine(std::move(executor), std::move(opening), &diag,
                                          std::forward<CompletionToken>(token));
    }

    /// async, in a coroutine: async_open on the coroutine's executor.
    static boost::asio::awaitable<std::shared_ptr<hypervisor_connection>> open(std::string uri,
                                                                               options opts);
    static boost::asio::awaitable<std::shared_ptr<hypervisor_connection>> open(std::string uri) {
        return open(std::move(uri), options{});
    }

    hypervisor_connection(const hypervisor_connection&) = delete;
    hypervisor_connection& operator=(const hypervisor_connection&) = delete;
    ~hypervisor_connection();

    /// async: runs `work(virConnectPtr)` on one of the lanes and completes
    /// with its result (`(error_code)` for void work). `work` reports a
    /// failure by throwing, typically with detail::throw_last_libvirt_error
    /// right after the failing call: its code and diagnostics arrive.
    /// Waits in the queue for a free lane first; cancelling it there
    /// completes with operation_aborted and runs nothing. A call that
    /// started runs to its end. Reopens the connection first if libvirtd
    /// dropped it.
    template <class Work, class CompletionToken = default_completion_token>
    auto call(Work work, CompletionToken&& token = {}) {
        // The hot path: call_here throws error_with_diagnostics already, so
        // the default token needs no wrapping coroutine around it.
        if constexpr (std::is_same_v<std::decay_t<CompletionToken>, default_completion_token>)
            return call_here(std::move(work));
        else
            return detail::initiate_coroutine(runtime_.get_executor(), call_here(std::move(work)),
                                              nullptr, std::forward<CompletionToken>(token));
    }

    /// Whether the connection is open: false once libvirt reported it closed
    /// (libvirtd restarted or keepalive timed out) until the next call reopens it.
    bool is_open() const noexcept { return callbacks_->liveness.is_open(); }
    const std::string& uri() const noexcept { return uri_; }
    std::size_t max_calls_in_flight() const noexcept { return lane_count_; }
    /// The most calls that ever ran at once on the lanes.
    std::size_t peak_calls_in_flight() const noexcept { return peak_in_flight_.load(); }
    /// A new reference to the current libvirt connection (nullptr before the
    /// first open): for blocking work that must run outside call(), such as a
    /// destructor's last destroy. Thread-safe.
    detail::connect_handle current() const;
    /// The runtime (io_context) this connection belongs to.
    anweddol::runtime& get_runtime() const noexcept { return runtime_; }

    /// Whether libvirt delivers lifecycle events to this connection's subscribers.
    bool lifecycle_events() const noexcept { return events_wanted_.load(); }
    /// How often the connection was opened (1 + reopens).
    unsigned open_count() const noexcept { return open_count_.load(); }
    /// How many subscriptions are live (events and close).
    std::size_t subscriber_count() const { return callbacks_->router.size(); }

    /// Unsubscribes when destroyed or reset; a call already on its way to
    /// the handler is dropped.
    class subscription {
    public:
        subscription() = default;
        subscription(subscription&& other) noexcept = default;
        subscription& operator=(subscription&& other) noexcept {
            if (this != &other) {
                reset();
                owner_ = std::move(other.owner_);
                subscriber_ = std::move(other.subscriber_);
            }
            return *this;
        }
        ~subscription() { reset(); }
        void reset() noexcept;

    private:
        friend class hypervisor_connection;
        subscription(std::weak_ptr<detail::domain_event_router> owner,
                     detail::domain_event_router::subscriber_ptr subscriber)
            : owner_(std::move(owner))
            , subscriber_(std::move(subscriber)) {}
        std::weak_ptr<detail::domain_event_router> owner_;
        detail::domain_event_router::subscriber_ptr subscriber_;
    };

    /// Calls `handler` on `executor` for every lifecycle event of the domain
    /// `uuid` (lower-case, as libvirt prints it), until the subscription is
    /// destroyed. Needs a connection opened with options::lifecycle_events.
    [[nodiscard]] subscription
    subscribe(std::string uuid, boost::asio::any_io_executor executor,
              std::function<void(const domain_lifecycle_event&)> handler);

    /// The same for every domain of the connection: every event reaches
    /// this handler, so keep such subscriptions few (monitoring, tests).
    [[nodiscard]] subscription
    subscribe(boost::asio::any_io_executor executor,
              std::function<void(const domain_lifecycle_event&)> handler);

    /// Calls `handler(reason)` (a virConnectCloseReason) on `executor` when
    /// libvirt reports the connection closed.
    [[nodiscard]] subscription on_close(boost::asio::any_io_executor executor,
                                        std::function<void(int)> handler);

    /// async: the next lifecycle event `event` (a virDomainEventType) of the
    /// domain `uuid`; completes with `(error_code, domain_lifecycle_event)`.
    /// Errors: a code equal to std::errc::timed_out after `timeout`;
    /// operation_aborted when cancelled. Subscribe before acting on the
    /// domain, as this does: an event that happened earlier is not seen.
    template <class CompletionToken = default_completion_token>
    auto wait_for_event(std::string uuid, int event, std::chrono::steady_clock::duration timeout,
                        CompletionToken&& token = {}) {
        return detail::initiate_coroutine(runtime_.get_executor(),
                                          wait_here(std::move(uuid), event, timeout), nullptr,
                                          std::forward<CompletionToken>(token));
    }

private:
    hypervisor_connection(anweddol::runtime& rt, std::string key, std::string uri, options opts);

    static boost::asio::awaitable<std::shared_ptr<hypervisor_connection>>
    open_on(boost::asio::any_io_executor executor, std::string uri, options opts);
    static std::shared_ptr<hypervisor_connection>
    shared_for(anweddol::runtime& rt, const std::string& uri, const options& opts);
    static boost::asio::awaitable<void> reopen(std::shared_ptr<hypervisor_connection> self);
    void adopt_blocking(detail::connect_handle fresh);
    std::function<void()> take_libvirt_connection();
    friend class anweddol::runtime; // closes what is left when its io_context goes
    void close_at_shutdown() noexcept;
    int register_lifecycle(virConnectPtr connection);
    void register_lifecycle_blocking(virConnectPtr connection);
    boost::asio::awaitable<domain_lifecycle_event>
    wait_here(std::string uuid, int event, std::chrono::steady_clock::duration timeout);
    subscription add(std::shared_ptr<detail::domain_event_router::subscriber> s);

    // The call itself, in a coroutine of the caller's executor.
    template <class Work>
    boost::asio::awaitable<detail::blocking_result_t<std::invoke_result_t<Work&, virConnectPtr>>>
    call_here(Work work) {
        if (!is_open())
            co_await reopen(shared_from_this());
        auto* loop = &runtime_.event_loop();
        // Built outside the co_await expression, as every awaitable with
        // captures here: GCC 12 destroys such temporaries twice.
        auto on_lane = [self = shared_from_this(), loop, work = std::move(work)]() mutable {
            // What libvirt registers during the call lands on this io_context.
            const detail::libvirt_event_loop::scope on_our_loop(loop);
            const in_flight_count counting(*self);
            // Referenced here, not on the io thread: virConnectRef and its
            // release format a debug message each time.
            const detail::connect_handle connection = self->current();
            return work(connection.get());
        };
        auto running = detail::async_run_blocking_on(
            lanes_->get_executor(), &runtime_.completions(), backlog_, std::move(on_lane),
            boost::asio::as_tuple(boost::asio::use_awaitable));
        auto [ec, diag, value] = co_await std::move(running);
        if (ec)
            throw error_with_diagnostics(ec, std::move(diag));
        co_return std::move(value);
    }

    struct in_flight_count {
        explicit in_flight_count(hypervisor_connection& c);
        ~in_flight_count();
        hypervisor_connection& connection;
    };

    static int on_lifecycle(virConnectPtr, virDomainPtr domain, int event, int detail,
                            void* opaque);
    static void on_closed(virConnectPtr, int reason, void* opaque);
    static void free_callback_opaque(void* opaque);

    anweddol::runtime& runtime_;
    const std::string key_; // in the runtime's registry
    const std::string uri_;
    const options options_;
    const std::size_t lane_count_;
    // lane_count_ threads that run this connection's calls back to back
    // while calls queue; the runtime joins them when its io_context goes.
    std::shared_ptr<detail::worker_threads> lanes_;
    detail::async_semaphore reopen_lock_{1};
    // What libvirt's callbacks reach, held apart from the connection: they
    // run on whichever thread libvirt reports from (for test:///, a worker
    // of another io_context), and a reference to the connection taken there
    // could be its last one, closing it on a thread of a foreign runtime.
    struct callback_target {
        detail::domain_event_router router;
        detail::connection_liveness liveness;
    };
    using callback_opaque = std::weak_ptr<callback_target>;
    // What one libvirt connection's close callback gets.
    struct close_opaque {
        callback_opaque target;
        std::shared_ptr<detail::connection_liveness::watch> watch;
    };
    const std::shared_ptr<callback_target> callbacks_ = std::make_shared<callback_target>();
    std::atomic<bool> events_wanted_;
    std::atomic<std::size_t> in_flight_{0};
    // Calls queued for the lanes; shared with the calls, which read it after
    // their handler may have dropped this connection.
    const std::shared_ptr<std::atomic<std::size_t>> backlog_ =
        std::make_shared<std::atomic<std::size_t>>(0);
    std::atomic<std::size_t> peak_in_flight_{0};
    std::atomic<unsigned> open_count_{0};

    mutable std::mutex mutex_; // guards everything below
    detail::connect_handle connection_;
    int lifecycle_callback_ = -1;
    // What the close callback gets; null when none is registered.
    std::unique_ptr<close_opaque> close_opaque_;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/hypervisor_connection.ipp>
#endif

#endif
