//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_COMPLETION_BATCHER_HPP
#define ANWEDDOL_DETAIL_ASYNC_COMPLETION_BATCHER_HPP

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>

namespace anweddol::detail {

/// Hands the completions of worker threads (libvirt calls, file hashing) to
/// one io_context in batches. Posting each completion on its own wakes the
/// io thread once per call, and in a VM that wake-up costs more than the
/// call's own work there. Here a worker pushes its completion, and flushes
/// only when no more calls wait for its worker pool (or a batch is full):
/// completions of a busy pool reach the io thread several at a time, while
/// a single call is flushed at once and waits no longer than before.
class completion_batcher {
public:
    /// One completion: runs the handler on its own executor (dispatched:
    /// inline when that is the io_context's, posted to a strand otherwise).
    struct item {
        virtual ~item() = default;
        virtual void run() = 0;
        std::unique_ptr<item> next;
    };

    explicit completion_batcher(boost::asio::any_io_executor io_executor)
        : io_executor_(std::move(io_executor))
        , context_(&boost::asio::query(io_executor_, boost::asio::execution::context)) {}

    completion_batcher(const completion_batcher&) = delete;
    completion_batcher& operator=(const completion_batcher&) = delete;
    ~completion_batcher() { discard(); }

    /// Whether handlers of `executor` run on this batcher's io_context.
    bool serves(const boost::asio::any_io_executor& executor) const noexcept {
        return &boost::asio::query(executor, boost::asio::execution::context) == context_;
    }

    /// From any thread: holds `done` until the next flush(), or until a
    /// batch is full.
    void push(std::unique_ptr<item> done) {
        bool post_drain = false;
        {
            std::lock_guard lock(mutex_);
            item* raw = done.get();
            if (tail_)
                tail_->next = std::move(done);
            else
                head_ = std::move(done);
            tail_ = raw;
            post_drain = ++held_ >= batch_limit && !drain_pending_;
            drain_pending_ = drain_pending_ || post_drain;
        }
        if (post_drain)
            boost::asio::post(io_executor_, [this] { drain(); });
    }

    /// From any thread: hands what is held to the io thread.
    void flush() {
        bool post_drain = false;
        {
            std::lock_guard lock(mutex_);
            post_drain = head_ && !drain_pending_;
            drain_pending_ = drain_pending_ || post_drain;
        }
        if (post_drain)
            boost::asio::post(io_executor_, [this] { drain(); });
    }

    /// The io_context is going: completions that never ran are destroyed,
    /// which lets go of what they hold.
    void discard() noexcept {
        std::unique_ptr<item> pending;
        {
            std::lock_guard lock(mutex_);
            pending = std::move(head_);
            tail_ = nullptr;
            held_ = 0;
        }
        while (pending)
            pending = std::move(pending->next);
    }

private:
    // At most this many completions per drain, so that a burst does not hold
    // the io thread (and every timer due meanwhile) for long.
    static constexpr std::size_t batch_limit = 8;

    void drain() {
        std::unique_ptr<item> batch;
        {
            std::lock_guard lock(mutex_);
            batch = std::move(head_);
            item* last = batch.get();
            std::size_t taken = last ? 1 : 0;
            for (; last && taken < batch_limit && last->next; ++taken)
                last = last->next.get();
            held_ -= taken;
            if (last && last->next) {
                head_ = std::move(last->next); // the rest: in the next drain
                boost::asio::post(io_executor_, [this] { drain(); });
            } else {
                tail_ = nullptr;
                drain_pending_ = false;
            }
        }
        while (batch) {
            auto next = std::move(batch->next);
            batch->run();
            batch = std::move(next);
        }
    }

    boost::asio::any_io_executor io_executor_;
    const boost::asio::execution_context* context_;
    std::mutex mutex_;
    std::unique_ptr<item> head_;
    item* tail_ = nullptr;
    std::size_t held_ = 0;
    bool drain_pending_ = false;
};

} // namespace anweddol::detail

#endif
