//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_WORKER_THREADS_HPP
#define ANWEDDOL_DETAIL_ASYNC_WORKER_THREADS_HPP

#include <anweddol/detail/sigpipe.hpp>

#include <boost/asio/thread_pool.hpp>

#include <cstddef>
#include <memory>
#include <mutex>

namespace anweddol::detail {

/// A boost::asio::thread_pool that more than one owner may join: the
/// runtime when its io_context goes (a libvirt call still running on a
/// connection's lanes would complete into freed memory), and the
/// connection's own last holder. Asio's join() is neither idempotent nor
/// safe from two threads at once, and from one of the pool's own threads it
/// waits for itself forever: this one is all three.
class worker_threads {
public:
    using executor_type = boost::asio::thread_pool::executor_type;

    explicit worker_threads(std::size_t count)
        : pool_(with_sigpipe_blocked_threads(
              [count] { return std::make_unique<boost::asio::thread_pool>(count); })) {}
    worker_threads(const worker_threads&) = delete;
    worker_threads& operator=(const worker_threads&) = delete;
    ~worker_threads() { join(); }

    executor_type get_executor() noexcept { return pool_->get_executor(); }

    /// Waits until the work queued and running has ended, then for the
    /// threads; a second caller waits for the first. From one of these
    /// threads, which cannot wait for itself, it stops the pool instead
    /// (what is queued is dropped) and returns: the caller is then the one
    /// ending the pool's last work, the shutdown of a runtime reached from
    /// one of its own threads.
    void join() noexcept {
        if (pool_->get_executor().running_in_this_thread()) {
            pool_->stop();
            return;
        }
        std::lock_guard lock(join_mutex_);
        pool_->join();
    }

private:
    std::unique_ptr<boost::asio::thread_pool> pool_;
    std::mutex join_mutex_;
};

} // namespace anweddol::detail

#endif
