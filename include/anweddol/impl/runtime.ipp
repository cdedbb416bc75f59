//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_RUNTIME_IPP
#define ANWEDDOL_IMPL_RUNTIME_IPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/runtime.hpp>
// runtime::close_connections() is defined with the connection's bodies:
// header-only, a program that includes runtime.hpp alone gets them too.
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

namespace anweddol {

namespace runtime_impl {

// Blocking work that is not a connection's call: hashing, last destroys.
// Few threads: each connection has lanes of its own, and each open a thread.
inline constexpr std::size_t worker_threads = 4;

// How long the destruction of an io_context waits for opens still blocked
// on an unreachable host before it leaves them to end on their own.
inline constexpr std::chrono::seconds opener_wait{1};

// The runtime holds I/O objects of its io_context (the event loop's strand,
// timers and descriptors), which belong to other services of that context,
// and a context deletes its services newest first. Those services must begin
// before the runtime, or its destructor (and a worker of another io_context
// taking over libvirt's timer meanwhile) would reach services already
// deleted. Making one object of each begins them.
inline void begin_services_first(const boost::asio::any_io_executor& executor) {
    (void)boost::asio::make_strand(executor);
    const boost::asio::steady_timer timer(executor);
    const boost::asio::posix::stream_descriptor descriptor(executor);
}

} // namespace runtime_impl

ANWEDDOL_DECL runtime& runtime::of(const boost::asio::any_io_executor& executor) {
    if (!executor)
        detail::throw_error(errc::invalid_argument, "anweddol needs an executor, not an empty one");
    auto& context = boost::asio::query(executor, boost::asio::execution::context);
    if (!boost::asio::has_service<runtime>(context))
        runtime_impl::begin_services_first(executor);
    auto& rt = boost::asio::use_service<runtime>(context);
    rt.bind(executor);
    return rt;
}

ANWEDDOL_DECL runtime::runtime(boost::asio::execution_context& context)
    : boost::asio::execution_context::service(context) {}

ANWEDDOL_DECL void runtime::bind(const boost::asio::any_io_executor& executor) {
    std::call_once(bound_, [&] {
        executor_ = executor;
        event_loop_.emplace(executor_);
        completions_.emplace(executor_);
    });
}

ANWEDDOL_DECL runtime::~runtime() {
    shutdown(); // no-op when the context did it
}

ANWEDDOL_DECL std::size_t runtime::connection_count() const {
    std::lock_guard lock(connections_mutex_);
    std::size_t open = 0;
    for (const auto& [key, connection] : connections_)
        open += connection.expired() ? 0 : 1;
    return open;
}

ANWEDDOL_DECL std::optional<bool> runtime::kvm_runs(const std::string& uri) const {
    std::lock_guard lock(kvm_mutex_);
    if (const auto found = kvm_runs_.find(uri); found != kvm_runs_.end())
        return found->second;
    return std::nullopt;
}

ANWEDDOL_DECL void runtime::record_kvm_runs(const std::string& uri, bool runs) {
    std::lock_guard lock(kvm_mutex_);
    kvm_runs_[uri] = runs;
}

ANWEDDOL_DECL boost::asio::thread_pool::executor_type runtime::workers() {
    std::lock_guard lock(workers_mutex_);
    return workers_locked();
}

// Under workers_mutex_.
ANWEDDOL_DECL boost::asio::thread_pool::executor_type runtime::workers_locked() {
    if (!workers_)
        workers_ = std::make_unique<detail::worker_threads>(runtime_impl::worker_threads);
    return workers_->get_executor();
}

ANWEDDOL_DECL void runtime::track_lanes(const std::shared_ptr<detail::worker_threads>& lanes) {
    std::lock_guard lock(lanes_mutex_);
    std::erase_if(lanes_, [](const auto& weak) { return weak.expired(); });
    lanes_.push_back(lanes);
}

// Waits for every call on every connection's lanes: each holds its
// connection, its completion handler and a work guard of the io_context,
// which must all go while the io_context still exists. Lanes that end a
// connection meanwhile (their call held its last reference) join
// themselves here too.
ANWEDDOL_DECL void runtime::join_lanes() noexcept {
    for (;;) {
        std::vector<std::shared_ptr<detail::worker_threads>> live;
        {
            std::lock_guard lock(lanes_mutex_);
            for (const auto& weak : lanes_)
                if (auto lanes = weak.lock())
                    live.push_back(std::move(lanes));
            lanes_.clear();
        }
        if (live.empty())
            return;
        for (const auto& lanes : live)
            lanes->join();
    }
}

ANWEDDOL_DECL void runtime::shutdown() {
    std::unique_ptr<detail::worker_threads> workers;
    {
        std::lock_guard lock(workers_mutex_);
        if (shut_down_.exchange(true))
            return;
        workers = std::move(workers_);
    }
    // Opens still blocked on an unreachable host are given up on: they hold
    // nothing of this runtime, and are waited for briefly.
    openers_.shutdown(runtime_impl::opener_wait);
    // Queued blocking work still runs (a dropped container's last destroy),
    // and calls under way on the lanes end; their completions go nowhere,
    // the io_context being gone. From a thread of these pools, they are
    // stopped instead of joined: a thread does not wait for itself.
    if (workers)
        workers->join();
    join_lanes();
    close_connections();
    if (completions_)
        completions_->discard();
    if (event_loop_)
        event_loop_->detach();
}

} // namespace anweddol

#endif
