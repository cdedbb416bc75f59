//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_RUNTIME_HPP
#define ANWEDDOL_RUNTIME_HPP

#include <anweddol/detail/config.hpp>

#include <anweddol/boot_admission.hpp>
#include <anweddol/detail/async/completion_batcher.hpp>
#include <anweddol/detail/async/deadline_threads.hpp>
#include <anweddol/detail/async/worker_threads.hpp>
#include <anweddol/detail/libvirt/event_loop.hpp>
#include <anweddol/detail/sigpipe.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace anweddol {

class hypervisor_connection;

/// Everything anweddol keeps while it works, for one io_context: libvirt's
/// event loop on that io_context, the connections its containers share,
/// the worker threads for blocking work, and the boot admission. It is an
/// Asio service of the io_context, made the first time something of the
/// library is used there and gone with it: nothing is process-wide, and
/// several io_contexts (one after another, or at once on several threads)
/// each have their own.
///
/// The one thing libvirt keeps per process is where its event hooks point
/// (virEventRegisterImpl): anweddol registers them once and routes each
/// registration to the runtime whose worker made it; see
/// detail/libvirt/event_hooks.hpp. A program that registered its own libvirt
/// event loop first gets errc::foreign_event_loop.
///
/// Connections close when nothing holds them (a running container or a
/// caller's shared_ptr), and then libvirt's event loop has nothing left to
/// watch: `io_context::run()` returns once the work is done. Destroying the
/// io_context (also after `stop()`, or a `run_for()` that returned while
/// calls were under way) waits for the blocking work still queued or
/// running: the workers' (destroying the domains of containers that were
/// dropped) and every libvirt call on a connection's lanes. Opens still
/// waiting for an unreachable host are given up; destruction waits for them
/// one second at most, and leaves them to end on their own. Then it lets go
/// of libvirt's fds.
///
/// Thread-safe. Containers, shells and connections of an io_context must
/// not outlive it, as any Asio I/O object.
class runtime : public boost::asio::execution_context::service {
public:
    using key_type = runtime;
    static inline boost::asio::execution_context::id id;

    /// The runtime of the io_context (or thread_pool) behind `executor`,
    /// made on first use.
    static runtime& of(const boost::asio::any_io_executor& executor);

    explicit runtime(boost::asio::execution_context& context);
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;
    ~runtime() override;

    /// An executor of the io_context this runtime belongs to.
    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }

    /// Where the containers of this io_context queue for a place to boot;
    /// see boot_admission for its default limit and how to change it.
    boot_admission& admission() noexcept { return admission_; }

    /// How many hypervisor connections of this io_context are open now.
    std::size_t connection_count() const;

    /// Whether KVM guests run on the host behind `uri`, as this runtime saw
    /// it: true once one got an address there, false once one paused on
    /// its own while booting (a host whose /dev/kvm cannot run guests);
    /// std::nullopt before either. The automatic domain type follows it.
    std::optional<bool> kvm_runs(const std::string& uri) const;
    void record_kvm_runs(const std::string& uri, bool runs);

    /// libvirt's event loop on this io_context.
    detail::libvirt_event_loop& event_loop() noexcept { return *event_loop_; }
    /// Hands worker completions to this io_context in batches.
    detail::completion_batcher& completions() noexcept { return *completions_; }
    /// Worker threads for blocking work that is not a connection's call
    /// (hashing a file, a last destroy): an executor of them.
    boost::asio::thread_pool::executor_type workers();

    /// Runs `work` on a worker without waiting for it; once the io_context
    /// is shutting down, runs it here and now (a container destroyed then
    /// still destroys its domain). Never throws; `work` must not either.
    template <class Work>
    void run_detached(Work work) noexcept {
        {
            // Under the lock that shutdown() takes the workers with: posted
            // before they are joined, or run here.
            std::lock_guard lock(workers_mutex_);
            if (!shut_down_.load()) {
                try {
                    boost::asio::post(workers_locked(), std::move(work));
                    return;
                } catch (...) {
                    // out of memory: block rather than lose the work
                }
            }
        }
        const detail::sigpipe_suppressed no_sigpipe; // libvirt may write to a dead libvirtd
        work();
    }

private:
    friend class hypervisor_connection;

    void shutdown() override;
    // A service is told only its context; the first executor it is reached
    // through gives it one to post to.
    void bind(const boost::asio::any_io_executor& executor);
    boost::asio::thread_pool::executor_type workers_locked();
    // A connection's lanes, joined by shutdown().
    void track_lanes(const std::shared_ptr<detail::worker_threads>& lanes);
    void join_lanes() noexcept;
    void close_connections() noexcept;

    std::once_flag bound_;
    boost::asio::any_io_executor executor_;
    std::optional<detail::libvirt_event_loop> event_loop_;
    std::optional<detail::completion_batcher> completions_;
    boot_admission admission_;
    std::atomic<bool> shut_down_{false};

    std::mutex workers_mutex_;
    std::unique_ptr<detail::worker_threads> workers_; // started on first use

    // Every connection's lanes, while they exist.
    std::mutex lanes_mutex_;
    std::vector<std::weak_ptr<detail::worker_threads>> lanes_;

    // Where connections are opened: a thread per open, with a deadline.
    detail::deadline_threads openers_;

    // The shared connections, by URI and settings; weak, so that a
    // connection nobody holds closes, and erased when it does.
    mutable std::mutex connections_mutex_;
    std::map<std::string, std::weak_ptr<hypervisor_connection>> connections_;

    mutable std::mutex kvm_mutex_;
    std::map<std::string, bool> kvm_runs_; // by URI
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/runtime.ipp>
#endif

#endif
