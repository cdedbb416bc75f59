//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_CONNECTION_LIVENESS_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_CONNECTION_LIVENESS_HPP

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>

namespace anweddol::detail {

/// Whether a connection that is reopened again and again is open, as
/// libvirt's close callbacks say. Each libvirt connection gets a watch
/// (what its close callback reaches) before its callback is registered:
/// libvirt may report the close at once, on another thread, before the
/// connection is even the current one, and that close must not be lost (an
/// is_open() that stays true on a dead connection is never reopened). The
/// close of a connection already replaced changes nothing. Thread-safe.
class connection_liveness {
public:
    /// One libvirt connection's close callback.
    class watch {
        friend class connection_liveness;
        bool closed_ = false;
        bool reported_ = false;
        int reason_ = 0;
    };

    bool is_open() const noexcept { return open_.load(); }

    /// A watch for a connection about to register its close callback.
    std::shared_ptr<watch> arm() const { return std::make_shared<watch>(); }

    /// The connection of `w` is now the current one: open, unless it closed
    /// already. Returns the close reason to report then (once).
    std::optional<int> opened(std::shared_ptr<watch> w) {
        std::lock_guard lock(mutex_);
        current_ = std::move(w);
        if (!current_->closed_) {
            open_ = true;
            return std::nullopt;
        }
        open_ = false;
        if (current_->reported_)
            return std::nullopt;
        current_->reported_ = true;
        return current_->reason_;
    }

    /// libvirt reported the connection of `w` closed, with `reason` (a
    /// virConnectCloseReason). Returns whether to report it now: it is the
    /// current connection's close, not yet reported.
    bool closed(watch& w, int reason) {
        std::lock_guard lock(mutex_);
        if (w.closed_)
            return false;
        w.closed_ = true;
        w.reason_ = reason;
        if (current_.get() != &w)
            return false; // not current (yet: opened() reports it; or no more)
        open_ = false;
        w.reported_ = true;
        return true;
    }

private:
    std::mutex mutex_;
    std::shared_ptr<watch> current_;
    std::atomic<bool> open_{false};
};

} // namespace anweddol::detail

#endif
