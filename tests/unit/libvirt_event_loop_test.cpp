#include "test_context.hpp"

#include <anweddol/detail/libvirt/event_loop.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

#include <libvirt/libvirt.h>

#include <atomic>
#include <chrono>
#include <fcntl.h>
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
