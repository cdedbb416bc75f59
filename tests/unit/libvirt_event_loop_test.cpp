#include "test_context.hpp"

#include <anweddol/detail/libvirt/event_hooks.hpp>
#include <anweddol/detail/libvirt/event_loop.hpp>
#include <anweddol/detail/libvirt/event_router.hpp>
#include <anweddol/detail/sigpipe.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

#include <libvirt/libvirt.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <future>
#include <thread>
#include <unistd.h>
#include <vector>

using anweddol::detail::libvirt_event_loop;
using namespace std::chrono_literals;

namespace {

// Registrations from the test's own thread go to the test context's loop:
// the thread works for that loop while the test runs.
boost::asio::io_context& loop_context() {
    auto& context = anweddol::test::test_context();
    static thread_local libvirt_event_loop::scope on_test_loop(
        &anweddol::runtime::of(context.get_executor()).event_loop());
    return context;
}
using anweddol::test::run_until;

struct pipe_pair {
    int fds[2];
    pipe_pair() { REQUIRE(::pipe(fds) == 0); }
    ~pipe_pair() {
        ::close(fds[0]);
        ::close(fds[1]);
    }
    void put(char c = 'x') { REQUIRE(::write(fds[1], &c, 1) == 1); }
    char take() {
        char c = 0;
        REQUIRE(::read(fds[0], &c, 1) == 1);
        return c;
    }
};

struct handle_probe {
    int calls = 0;
    int last_events = 0;
    std::thread::id thread;
    int watch = -1;
    bool remove_inside = false;
    bool in_remove = false;
    bool freed = false;
    bool freed_inside_remove = false;
};

void probe_handle(int watch, int, int events, void* opaque) {
    auto& probe = *static_cast<handle_probe*>(opaque);
    ++probe.calls;
    probe.last_events = events;
    probe.thread = std::this_thread::get_id();
    if (probe.remove_inside) {
        probe.in_remove = true;
        CHECK(virEventRemoveHandle(watch) == 0);
        probe.in_remove = false;
    }
}

void probe_free(void* opaque) {
    auto& probe = *static_cast<handle_probe*>(opaque);
    probe.freed = true;
    probe.freed_inside_remove = probe.in_remove;
}

struct timeout_probe {
    std::atomic<int> calls{0};
    std::thread::id thread;
};

void probe_timeout(int, void* opaque) {
    auto& probe = *static_cast<timeout_probe*>(opaque);
    ++probe.calls;
    probe.thread = std::this_thread::get_id();
}

} // namespace

TEST_CASE("event loop: a readable fd calls its watch on the loop's thread, level-triggered") {
    loop_context();
    pipe_pair pipe;
    handle_probe probe;
    const int watch =
        virEventAddHandle(pipe.fds[0], VIR_EVENT_HANDLE_READABLE, probe_handle, &probe, probe_free);
    REQUIRE(watch > 0);
    CHECK_FALSE(run_until([&] { return probe.calls > 0; }, 50ms)); // nothing to read yet

    pipe.put();
    REQUIRE(run_until([&] { return probe.calls > 0; }));
    CHECK(probe.last_events == VIR_EVENT_HANDLE_READABLE);
    CHECK(probe.thread == std::this_thread::get_id());

    // The byte stays unread: a level-triggered watch keeps firing.
    const int seen = probe.calls;
    REQUIRE(run_until([&] { return probe.calls >= seen + 3; }));

    pipe.take();
    REQUIRE(virEventRemoveHandle(watch) == 0);
    CHECK(run_until([&] { return probe.freed; }));
    CHECK(::fcntl(pipe.fds[0], F_GETFD) != -1); // removed, never closed
}

TEST_CASE("event loop: read and write watches on one fd share its descriptor") {
    loop_context();
    pipe_pair pipe;
    handle_probe reader, writer;
    const int read_watch =
        virEventAddHandle(pipe.fds[1], VIR_EVENT_HANDLE_READABLE, probe_handle, &reader, nullptr);
    const int write_watch =
        virEventAddHandle(pipe.fds[1], VIR_EVENT_HANDLE_WRITABLE, probe_handle, &writer, nullptr);
    REQUIRE(read_watch > 0);
    REQUIRE(write_watch > 0);
    REQUIRE(run_until([&] { return writer.calls > 0; }));
    CHECK(writer.last_events == VIR_EVENT_HANDLE_WRITABLE);
    CHECK(reader.calls == 0);

    // Disabling a watch stops its calls; enabling it again resumes them.
    virEventUpdateHandle(write_watch, 0);
    run_until([] { return false; }, 20ms);
    const int seen = writer.calls;
    CHECK_FALSE(run_until([&] { return writer.calls > seen; }, 50ms));
    virEventUpdateHandle(write_watch, VIR_EVENT_HANDLE_WRITABLE);
    CHECK(run_until([&] { return writer.calls > seen; }));

    CHECK(virEventRemoveHandle(read_watch) == 0);
    CHECK(virEventRemoveHandle(write_watch) == 0);
    CHECK(virEventRemoveHandle(write_watch) == -1); // unknown now
}

TEST_CASE("event loop: a watch removed from inside its callback is freed later, not inside") {
    loop_context();
    pipe_pair pipe;
    handle_probe probe;
    probe.remove_inside = true;
    REQUIRE(virEventAddHandle(pipe.fds[0], VIR_EVENT_HANDLE_READABLE, probe_handle, &probe,
                              probe_free) > 0);
    pipe.put();
    REQUIRE(run_until([&] { return probe.freed; }));
    CHECK_FALSE(probe.freed_inside_remove);
    CHECK(probe.calls == 1); // no call after the removal, although still readable
    CHECK_FALSE(run_until([&] { return probe.calls > 1; }, 50ms));
}

TEST_CASE("event loop: a hung-up pipe reports HANGUP to a read watch") {
    loop_context();
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    ::close(fds[1]);
    handle_probe probe;
    const int watch =
        virEventAddHandle(fds[0], VIR_EVENT_HANDLE_READABLE, probe_handle, &probe, nullptr);
    REQUIRE(run_until([&] { return probe.calls > 0; }));
    CHECK((probe.last_events & VIR_EVENT_HANDLE_HANGUP) != 0);
    virEventRemoveHandle(watch);
    ::close(fds[0]);
}

TEST_CASE("event loop: a periodic timeout repeats on the loop's thread until disabled") {
    loop_context();
    timeout_probe probe;
    const int timer = virEventAddTimeout(5, probe_timeout, &probe, nullptr);
    REQUIRE(timer > 0);
    REQUIRE(run_until([&] { return probe.calls >= 3; }));
    CHECK(probe.thread == std::this_thread::get_id());

    virEventUpdateTimeout(timer, -1);
    run_until([] { return false; }, 10ms);
    const int seen = probe.calls;
    CHECK_FALSE(run_until([&] { return probe.calls > seen; }, 60ms));

    // 0 fires on every loop iteration.
    virEventUpdateTimeout(timer, 0);
    REQUIRE(run_until([&] { return probe.calls >= seen + 50; }, 1s));
    CHECK(virEventRemoveTimeout(timer) == 0);
    CHECK(virEventRemoveTimeout(timer) == -1);
}

TEST_CASE("event loop: updating an active timeout applies at once") {
    loop_context();
    timeout_probe probe;
    const int timer = virEventAddTimeout(60'000, probe_timeout, &probe, nullptr);
    CHECK_FALSE(run_until([&] { return probe.calls > 0; }, 30ms));
    virEventUpdateTimeout(timer, 1);
    CHECK(run_until([&] { return probe.calls > 0; }, 1s));
    virEventRemoveTimeout(timer);
    const int seen = probe.calls;
    CHECK_FALSE(run_until([&] { return probe.calls > seen; }, 30ms));
}

TEST_CASE("event loop: watches added from other threads run on the loop's thread") {
    loop_context();
    pipe_pair pipe;
    handle_probe probe;
    timeout_probe ticks;
    int watch = -1, timer = -1;
    std::thread other([&] {
        watch = virEventAddHandle(pipe.fds[0], VIR_EVENT_HANDLE_READABLE, probe_handle, &probe,
                                  nullptr);
        timer = virEventAddTimeout(1, probe_timeout, &ticks, nullptr);
    });
    other.join();
    pipe.put();
    REQUIRE(run_until([&] { return probe.calls > 0 && ticks.calls > 0; }));
    CHECK(probe.thread == std::this_thread::get_id());
    CHECK(ticks.thread == std::this_thread::get_id());
    std::thread remover([&] {
        CHECK(virEventRemoveHandle(watch) == 0);
        CHECK(virEventRemoveTimeout(timer) == 0);
    });
    remover.join();
    run_until([] { return false; }, 10ms);
    CHECK(anweddol::runtime::of(loop_context().get_executor()).event_loop().handle_count() == 0);
}

namespace {

// A timeout whose first call blocks until the test lets it go.
struct blocking_timeout_probe {
    std::promise<void> entered;
    std::promise<void> go;
    std::shared_future<void> going = go.get_future().share();
    std::atomic<int> calls{0};
    std::atomic<bool> in_callback{false};
    std::atomic<bool> freed{false};
    std::atomic<bool> freed_during_callback{false};
};

void blocking_timeout(int, void* opaque) {
    auto& probe = *static_cast<blocking_timeout_probe*>(opaque);
    if (probe.calls++ != 0)
        return;
    probe.in_callback = true;
    probe.entered.set_value();
    probe.going.wait();
    probe.in_callback = false;
}

void blocking_timeout_free(void* opaque) {
    auto& probe = *static_cast<blocking_timeout_probe*>(opaque);
    probe.freed_during_callback = probe.in_callback.load();
    probe.freed = true;
}

} // namespace

// libvirt's test driver has one event timer per process, which follows the
// io_context that re-arms it: its callback may still run on the loop it
// left while the loop it went to removes it.
TEST_CASE("event loop: a timeout moved to another loop and removed there is freed only once its "
          "running callback returned") {
    anweddol::detail::libvirt_event_hooks::install();
    boost::asio::io_context first_context;
    boost::asio::io_context second_context;
    auto& first = anweddol::runtime::of(first_context.get_executor()).event_loop();
    auto& second = anweddol::runtime::of(second_context.get_executor()).event_loop();
    auto keep_first_running = boost::asio::make_work_guard(first_context);
    std::thread first_thread([&] { first_context.run(); });

    blocking_timeout_probe probe;
    int timer = -1;
    {
        const libvirt_event_loop::scope on_first(&first);
        timer = virEventAddTimeout(1, blocking_timeout, &probe, blocking_timeout_free);
    }
    REQUIRE(timer > 0);
    auto entered = probe.entered.get_future();
    REQUIRE(entered.wait_for(10s) == std::future_status::ready);

    std::thread second_thread;
    {
        const libvirt_event_loop::scope on_second(&second);
        virEventUpdateTimeout(timer, 60'000); // moves it to the second loop
        CHECK(second.timeout_count() == 1);
        CHECK(first.timeout_count() == 0);
        CHECK(virEventRemoveTimeout(timer) == 0);
    }
    second_thread = std::thread([&] { second_context.run(); }); // runs the deferred free
    std::this_thread::sleep_for(200ms);
    CHECK_FALSE(probe.freed.load()); // the first loop still runs the callback

    probe.go.set_value();
    second_thread.join();
    CHECK(probe.freed.load());
    CHECK_FALSE(probe.freed_during_callback.load());
    CHECK(probe.calls == 1); // never again on the loop it left

    keep_first_running.reset();
    first_thread.join();
}

TEST_CASE("event router: a subscriber gets a domain's events in the order they were published, "
          "from whichever thread") {
    using anweddol::detail::domain_event_router;
    boost::asio::io_context context;
    domain_event_router router;
    std::vector<int> seen;
    auto subscriber = std::make_shared<domain_event_router::subscriber>();
    subscriber->uuid = "u";
    subscriber->executor = context.get_executor();
    subscriber->on_event = [&](const anweddol::domain_lifecycle_event& e) {
        seen.push_back(e.event);
    };
    router.add(subscriber);
    boost::asio::post(context, [&] {
        // The first from a thread of no io_context, the second from the
        // subscriber's own: the second must not overtake the first.
        std::thread([&] { router.publish({"u", "", VIR_DOMAIN_EVENT_STARTED, 0}); }).join();
        router.publish({"u", "", VIR_DOMAIN_EVENT_STOPPED, 0});
        router.publish({"other", "", VIR_DOMAIN_EVENT_STARTED, 0});
    });
    context.run();
    CHECK(seen == std::vector<int>{VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STOPPED});

    // Once removed, nothing more reaches it, not even what was on its way.
    seen.clear();
    router.publish({"u", "", VIR_DOMAIN_EVENT_SUSPENDED, 0});
    router.remove(subscriber);
    router.publish({"u", "", VIR_DOMAIN_EVENT_RESUMED, 0});
    context.restart();
    context.run();
    CHECK(seen.empty());
    CHECK(router.size() == 0);
}

namespace {

// A pipe whose reader is gone, as libvirt's socket once libvirtd died: a
// write to it raises SIGPIPE, which ends the process unless blocked.
struct broken_pipe {
    int fds[2];
    broken_pipe() {
        REQUIRE(::pipe(fds) == 0);
        ::close(fds[0]);
    }
    ~broken_pipe() { ::close(fds[1]); }
    // errno of a write, 0 if it worked.
    int write_errno() const {
        const char c = 'x';
        return ::write(fds[1], &c, 1) < 0 ? errno : 0;
    }
};

bool sigpipe_blocked_here() {
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    return sigismember(&mask, SIGPIPE) == 1;
}

bool sigpipe_pending() {
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, SIGPIPE) == 1;
}

struct sigpipe_probe {
    const broken_pipe* pipe = nullptr;
    std::atomic<int> write_errno{-1};
    std::atomic<int> calls{0};
};

void write_to_broken_pipe_handle(int watch, int, int, void* opaque) {
    auto& probe = *static_cast<sigpipe_probe*>(opaque);
    if (probe.calls++ == 0)
        probe.write_errno = probe.pipe->write_errno();
    virEventUpdateHandle(watch, 0);
}

void write_to_broken_pipe_timeout(int timer, void* opaque) {
    auto& probe = *static_cast<sigpipe_probe*>(opaque);
    if (probe.calls++ == 0)
        probe.write_errno = probe.pipe->write_errno();
    virEventUpdateTimeout(timer, -1);
}

} // namespace

// libvirt writes to its sockets with write(): once libvirtd is gone, that
// raises SIGPIPE. Without these guards each of these tests dies of it.
TEST_CASE("sigpipe: a write to a broken pipe inside the guard fails with EPIPE, and the signal "
          "is neither delivered nor left pending") {
    const broken_pipe pipe;
    const bool blocked_before = sigpipe_blocked_here();
    {
        const anweddol::detail::sigpipe_suppressed guard;
        CHECK(pipe.write_errno() == EPIPE);
        CHECK(sigpipe_pending()); // raised, held back by the block
    }
    CHECK_FALSE(sigpipe_pending());
    CHECK(sigpipe_blocked_here() == blocked_before);
}

TEST_CASE("sigpipe: libvirt's fd and timeout callbacks on the io_context write to a dead peer "
          "without killing the process") {
    loop_context();
    const broken_pipe dead_peer;
    pipe_pair readable;
    readable.put();
    sigpipe_probe on_fd;
    on_fd.pipe = &dead_peer;
    const int watch = virEventAddHandle(readable.fds[0], VIR_EVENT_HANDLE_READABLE,
                                        write_to_broken_pipe_handle, &on_fd, nullptr);
    REQUIRE(watch > 0);
    sigpipe_probe on_timer;
    on_timer.pipe = &dead_peer;
    const int timer = virEventAddTimeout(1, write_to_broken_pipe_timeout, &on_timer, nullptr);
    REQUIRE(timer > 0);
    REQUIRE(run_until([&] { return on_fd.calls > 0 && on_timer.calls > 0; }));
    CHECK(on_fd.write_errno == EPIPE);
    CHECK(on_timer.write_errno == EPIPE);
    CHECK_FALSE(sigpipe_pending());
    CHECK(virEventRemoveHandle(watch) == 0);
    CHECK(virEventRemoveTimeout(timer) == 0);
}
