//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_CONSOLE_LOG_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_CONSOLE_LOG_HPP

#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/ssh/console_scanner.hpp>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace anweddol::detail {

/// A guest's serial console during one boot: the last `capacity` bytes it
/// wrote, for a log, and what it announced (console_scanner), read from
/// every byte, whatever the ring keeps. Filled by libvirt's event loop, read
/// by whoever reports a failure or waits for an announcement: synchronised.
/// The log never holds an endpoint block's password (see
/// console_scanner::feed()).
class console_ring {
public:
    explicit console_ring(std::size_t capacity)
        : capacity_(capacity) {}

    void append(std::string_view data) {
        std::vector<std::function<void()>> wakes;
        {
            std::lock_guard lock(mutex_);
            const bool changed =
                scanner_.feed(data, [this](std::string_view shown) { keep(shown); });
            if (changed)
                wakes = live_watchers();
        }
        for (auto& wake : wakes)
            wake();
    }

    /// No more bytes will come: the console ended, broke or could not be
    /// opened. Wakes the watchers, once.
    void end() {
        std::vector<std::function<void()>> wakes;
        {
            std::lock_guard lock(mutex_);
            if (std::exchange(ended_, true))
                return;
            wakes = live_watchers();
        }
        for (auto& wake : wakes)
            wake();
    }

    /// What the console announced so far.
    console_announcement announcement() const {
        std::lock_guard lock(mutex_);
        auto result = scanner_.announcement();
        result.console_ended = ended_;
        return result;
    }

    /// Calls `wake` after each change of announcement() (from the thread
    /// that feeds the console, without the ring's lock held: it must only
    /// hand over, as by posting to an executor) for as long as `alive` lives.
    void watch(std::weak_ptr<void> alive, std::function<void()> wake) {
        std::lock_guard lock(mutex_);
        std::erase_if(watchers_, [](const auto& w) { return w.first.expired(); });
        watchers_.emplace_back(std::move(alive), std::move(wake));
    }

    /// The bytes as the guest wrote them (escape sequences, CRs and all),
    /// but for the lines of endpoint blocks, redacted.
    std::string raw() const {
        std::lock_guard lock(mutex_);
        return bytes_;
    }

    /// The bytes as lines fit for a log or a terminal: terminal escape
    /// sequences dropped, CR LF and a bare CR as a line end, other control
    /// bytes as '?', and a first partial line marked when older output was
    /// dropped.
    std::string text() const {
        const std::string bytes = raw();
        std::string out;
        out.reserve(bytes.size());
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            const auto c = static_cast<unsigned char>(bytes[i]);
            if (c == 0x1b) { // ESC: skip a CSI sequence (ESC [ ... final) or a two-byte one
                if (i + 1 < bytes.size() && bytes[i + 1] == '[') {
                    i += 2;
                    while (i < bytes.size() && !(bytes[i] >= 0x40 && bytes[i] <= 0x7e))
                        ++i;
                } else {
                    ++i;
                }
            } else if (c == '\r') {
                // A bare CR ends a line too (it is the last byte only while
                // its LF may still come).
                if (i + 1 < bytes.size() && bytes[i + 1] != '\n')
                    out += '\n';
            } else if (c == '\n' || c == '\t' || c >= 0x20) {
                out += static_cast<char>(c);
            } else {
                out += '?';
            }
        }
        if (truncated() && !out.empty())
            out.insert(0, "[...] ");
        return out;
    }

    bool truncated() const {
        std::lock_guard lock(mutex_);
        return total_ > bytes_.size();
    }

private:
    // Under the lock.
    void keep(std::string_view data) {
        if (data.size() >= capacity_) {
            bytes_.assign(data.substr(data.size() - capacity_));
        } else {
            bytes_ += data;
            if (bytes_.size() > capacity_)
                bytes_.erase(0, bytes_.size() - capacity_);
        }
        total_ += data.size();
    }

    // Under the lock: the wakes of the watchers still alive.
    std::vector<std::function<void()>> live_watchers() {
        std::erase_if(watchers_, [](const auto& w) { return w.first.expired(); });
        std::vector<std::function<void()>> wakes;
        wakes.reserve(watchers_.size());
        for (const auto& w : watchers_)
            wakes.push_back(w.second);
        return wakes;
    }

    mutable std::mutex mutex_;
    std::size_t capacity_;
    std::string bytes_;
    std::size_t total_ = 0;
    console_scanner scanner_;
    bool ended_ = false;
    std::vector<std::pair<std::weak_ptr<void>, std::function<void()>>> watchers_;
};

/// The rings that open consoles feed, by a number that libvirt carries as
/// the stream callback's opaque. libvirt 9.0's remote driver never calls a
/// stream callback's free function, so the opaque cannot own anything: a
/// number outlives its entry harmlessly, and a callback still on its way
/// after close() finds nothing. Process-wide, as libvirt's callbacks are;
/// immortal, so that a callback during exit finds it.
class console_feeds {
public:
    static console_feeds& instance() {
        static console_feeds* feeds = new console_feeds();
        return *feeds;
    }
    std::uintptr_t add(std::weak_ptr<console_ring> ring) {
        std::lock_guard lock(mutex_);
        const std::uintptr_t id = ++last_;
        rings_.emplace(id, std::move(ring));
        return id;
    }
    std::shared_ptr<console_ring> find(std::uintptr_t id) const {
        std::lock_guard lock(mutex_);
        const auto found = rings_.find(id);
        return found == rings_.end() ? nullptr : found->second.lock();
    }
    void remove(std::uintptr_t id) {
        std::lock_guard lock(mutex_);
        rings_.erase(id);
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return rings_.size();
    }

private:
    mutable std::mutex mutex_;
    std::uintptr_t last_ = 0;
    std::unordered_map<std::uintptr_t, std::weak_ptr<console_ring>> rings_;
};

/// A domain's serial console, read without blocking from libvirt's event
/// loop (on the io_context) into a console_ring. Opened and closed on a
/// connection's lane: both are libvirt RPCs.
class console_stream {
public:
    console_stream() = default;
    console_stream(const console_stream&) = delete;
    console_stream& operator=(const console_stream&) = delete;
    console_stream(console_stream&& other) noexcept
        : stream_(std::exchange(other.stream_, nullptr))
        , feed_(std::exchange(other.feed_, 0)) {}
    console_stream& operator=(console_stream&& other) noexcept {
        std::swap(stream_, other.stream_);
        std::swap(feed_, other.feed_);
        return *this;
    }
    /// Closes it where close() was not called: blocking, but only after
    /// the domain is gone, when libvirt answers at once.
    ~console_stream() { close(); }

    /// Opens `domain`'s first console and feeds `ring` from it. A driver
    /// without consoles (test:///) or a console that cannot be opened gives
    /// an empty stream and a line in the ring that says why: the boot goes
    /// on without a log rather than fail for want of one.
    static console_stream open(virConnectPtr connection, virDomainPtr domain,
                               std::shared_ptr<console_ring> ring) {
        console_stream result;
        virStreamPtr stream = virStreamNew(connection, VIR_STREAM_NONBLOCK);
        if (!stream) {
            note_failure(*ring, "cannot make a stream for the console");
            ring->end();
            return result;
        }
        result.stream_ = stream;
        // FORCE: a console left open by an earlier reader (virsh console)
        // must not keep the log from starting.
        if (virDomainOpenConsole(domain, nullptr, stream, VIR_DOMAIN_CONSOLE_FORCE) < 0) {
            if (virGetLastErrorCode() == VIR_ERR_NO_SUPPORT)
                virResetLastError(); // the test driver has no consoles
            else
                note_failure(*ring, "cannot open the console");
            ring->end();
            virStreamFree(std::exchange(result.stream_, nullptr));
            return result;
        }
        result.feed_ = console_feeds::instance().add(ring);
        constexpr int events =
            VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP;
        if (virStreamEventAddCallback(stream, events, &on_event,
                                      reinterpret_cast<void*>(result.feed_), nullptr) < 0) {
            note_failure(*ring, "cannot watch the console");
            result.close(); // ends the ring
        }
        return result;
    }

    explicit operator bool() const noexcept { return stream_ != nullptr; }

    /// Writes `text` to the guest's console input. Blocking; throws
    /// (libvirt's error) where the stream is closed or refuses. The stream
    /// is non-blocking for reading: a full input buffer is retried for a
    /// second before it counts as a failure.
    void send(std::string_view text) {
        if (!stream_)
            throw_error(errc::invalid_argument,
                        "the guest's console is not open: nothing can be sent to it");
        for (int full = 0; !text.empty();) {
            const int sent = virStreamSend(stream_, text.data(), text.size());
            if (sent == -2 && ++full <= 100) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            if (sent < 0)
                throw_last_libvirt_error("cannot write to the guest's console");
            text.remove_prefix(static_cast<std::size_t>(sent));
        }
    }

    /// Stops reading and lets libvirt close the console. Blocking.
    void close() noexcept {
        if (!stream_)
            return;
        // Either call fails once the stream ended by itself (the domain
        // stopped): nothing to undo then.
        if (virStreamEventRemoveCallback(stream_) < 0)
            virResetLastError();
        if (virStreamAbort(stream_) < 0)
            virResetLastError();
        virStreamFree(std::exchange(stream_, nullptr));
        if (const auto ring = console_feeds::instance().find(feed_))
            ring->end(); // whoever waits for an announcement stops waiting
        console_feeds::instance().remove(std::exchange(feed_, 0));
    }

private:
    static void note_failure(console_ring& ring, std::string_view what) {
        const char* message = virGetLastErrorMessage();
        ring.append("[anweddol: " + std::string(what) + ": " + (message ? message : "unknown") +
                    "]\n");
        virResetLastError();
    }

    // Runs on libvirt's event loop, on the io_context: reads what is there
    // and returns, never waits.
    static void on_event(virStreamPtr stream, int, void* opaque) {
        const auto ring = console_feeds::instance().find(reinterpret_cast<std::uintptr_t>(opaque));
        char buffer[4096];
        int got = 0;
        std::size_t used = 0;
        while ((got = virStreamRecv(stream, buffer, sizeof buffer)) > 0) {
            used = std::max(used, static_cast<std::size_t>(got));
            if (ring)
                ring->append(std::string_view(buffer, static_cast<std::size_t>(got)));
        }
        // It may have held an endpoint block's password.
        OPENSSL_cleanse(buffer, used);
        if (got == -2)
            return; // drained: wait for the next event
        // 0: the console ended (the domain stopped); -1: it broke.
        if (got < 0)
            virResetLastError();
        if (virStreamEventRemoveCallback(stream) < 0)
            virResetLastError();
        if (ring)
            ring->end();
    }
    virStreamPtr stream_ = nullptr;
    std::uintptr_t feed_ = 0; ///< in console_feeds
};

} // namespace anweddol::detail

#endif
