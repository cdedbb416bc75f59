//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_STATUS_FILE_WATCH_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_STATUS_FILE_WATCH_HPP

#include <anweddol/detail/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include <sys/inotify.h>
#include <unistd.h>

namespace anweddol::detail {

/// True when `events`, what one read of an inotify fd gave, holds an event
/// about the file `name` of the watched directory, or an overflow (which may
/// have dropped one: look again to be safe). Reads within `events` only,
/// whatever they hold.
inline bool inotify_events_name(std::string_view events, std::string_view name) {
    bool seen = false;
    for (std::size_t offset = 0; events.size() - offset >= sizeof(inotify_event);) {
        inotify_event event;
        std::memcpy(&event, events.data() + offset, sizeof event);
        offset += sizeof event;
        if (event.mask & IN_Q_OVERFLOW)
            seen = true;
        if (event.len > events.size() - offset)
            break; // truncated
        // The name is padded with NULs up to len.
        const std::string_view padded = events.substr(offset, event.len);
        if (event.len > 0 && padded.substr(0, padded.find('\0')) == name)
            seen = true;
        offset += event.len;
    }
    return seen;
}

/// Wakes a coroutine when a file is written or replaced, with inotify on its
/// directory: libvirt's lease helper writes dnsmasq's status file anew and
/// renames it over the old one, which a watch on the file itself would lose.
/// One coroutine at a time may wait; the inotify fd closes with the object,
/// on `closer` (a worker).
class status_file_watch {
public:
    /// Throws boost::system::system_error when the directory cannot be
    /// watched (it does not exist, or inotify's limits are reached).
    status_file_watch(boost::asio::any_io_executor executor, const std::filesystem::path& file,
                      boost::asio::thread_pool::executor_type closer)
        : name_(file.filename().string())
        , descriptor_(executor)
        , closer_(std::move(closer)) {
        const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0)
            throw_errno("inotify_init1");
        descriptor_.assign(fd);
        const std::string directory = file.parent_path().string();
        if (inotify_add_watch(fd, directory.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0)
            throw_errno("cannot watch " + directory);
    }

    status_file_watch(const status_file_watch&) = delete;
    status_file_watch& operator=(const status_file_watch&) = delete;

    // Closing an inotify fd waits for an RCU grace period in the kernel (about
    // 15 ms measured here): a worker does it, not the io thread.
    ~status_file_watch() {
        if (!descriptor_.is_open())
            return;
        // Closed when the posted work runs, or when it is destroyed unrun
        // (the io_context went first): never left open.
        struct closing {
            int fd;
            explicit closing(int f) noexcept
                : fd(f) {}
            closing(closing&& other) noexcept
                : fd(std::exchange(other.fd, -1)) {}
            ~closing() {
                if (fd >= 0)
                    ::close(fd);
            }
            void operator()() noexcept {}
        };
        closing fd(descriptor_.release());
        try {
            boost::asio::post(closer_, std::move(fd));
        } catch (...) {
            // out of memory: closed here, by fd's destructor
        }
    }

    /// async: until the file was written, created or replaced since the last
    /// wait (or since construction). Cancellable.
    boost::asio::awaitable<void> changed() {
        for (;;) {
            if (drain())
                co_return;
            co_await descriptor_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                            boost::asio::use_awaitable);
        }
    }

private:
    [[noreturn]] static void throw_errno(const std::string& what) {
        throw boost::system::system_error(errno, boost::system::system_category(), what);
    }

    // Reads every queued event; true when one was about our file.
    bool drain() {
        alignas(inotify_event) std::array<char, 4096> buffer;
        bool seen = false;
        for (;;) {
            const ssize_t length =
                ::read(descriptor_.native_handle(), buffer.data(), buffer.size());
            if (length <= 0) {
                if (length < 0 && errno != EAGAIN && errno != EINTR)
                    throw_errno("reading inotify events");
                if (length < 0 && errno == EINTR)
                    continue;
                return seen;
            }
            if (inotify_events_name({buffer.data(), static_cast<std::size_t>(length)}, name_))
                seen = true;
        }
    }

    std::string name_;
    boost::asio::posix::stream_descriptor descriptor_;
    boost::asio::thread_pool::executor_type closer_;
};

} // namespace anweddol::detail

#endif
