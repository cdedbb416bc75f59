// Destroying an io_context after its runtime ran: Asio deletes the services
// of a context newest first, and the runtime holds objects of other
// services (the event loop's strand). A use after free here shows only
// under AddressSanitizer: scripts/sanitize.sh asan, which CI runs.
#include <anweddol/detail/async/blocking_call.hpp>
#include <anweddol/detail/async/deadline_threads.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("runtime: an io_context whose runtime watched libvirt's events is destroyed without "
          "touching a deleted service") {
    for (const bool strand_first : {false, true}) {
        INFO((strand_first ? "the program made a strand first" : "anweddol made the first strand"));
        std::size_t open_after = 1;
        bool opened = false;
        {
            boost::asio::io_context context;
            if (strand_first)
                (void)boost::asio::make_strand(context);
            boost::asio::co_spawn(
                context,
                [&]() -> boost::asio::awaitable<void> {
                    // Built outside the co_await expression (GCC 12).
                    auto opening = anweddol::hypervisor_connection::open("test:///default");
                    auto connection = co_await std::move(opening);
                    opened = connection->is_open();
                },
                [](std::exception_ptr e) {
                    if (e)
                        std::rethrow_exception(e);
                });
            context.run();
            open_after = anweddol::runtime::of(context.get_executor()).connection_count();
        } // the io_context, its runtime and its strand service are deleted here
        CHECK(opened);
        CHECK(open_after == 0);
    }
}

namespace {

// A libvirt call that takes a while: it ends after `slowness`, or as soon as
// release() says so.
struct slow_call {
    std::mutex mutex;
    std::condition_variable cv;
    bool released = false;
    std::atomic<bool> began{false};
    std::atomic<bool> ended{false};

    void pass(std::chrono::milliseconds slowness) {
        began = true;
        std::unique_lock lock(mutex);
        cv.wait_for(lock, slowness, [&] { return released; });
        ended = true;
    }
    void release() {
        {
            std::lock_guard lock(mutex);
            released = true;
        }
        cv.notify_all();
    }
};

// Destroys `context` on a thread of its own; false when that has not
// returned within `limit` (the thread is then left to it).
bool destroyed_within(std::unique_ptr<boost::asio::io_context> context,
                      std::chrono::seconds limit) {
    std::promise<void> destroyed;
    auto done = destroyed.get_future();
    std::thread destroyer([context = std::move(context), &destroyed]() mutable {
        context.reset();
        destroyed.set_value();
    });
    if (done.wait_for(limit) == std::future_status::timeout) {
        destroyer.detach();
        return false;
    }
    destroyer.join();
    return true;
}

} // namespace

TEST_CASE("runtime: destroying a stopped io_context waits for the libvirt call on a connection's "
          "lane, also one that holds the connection's last reference") {
    for (const bool caller_holds_connection : {true, false}) {
        INFO((caller_holds_connection ? "a coroutine holds the connection"
                                      : "only the call holds the connection"));
        slow_call call;
        {
            boost::asio::io_context context;
            boost::asio::co_spawn(
                context,
                [&call, caller_holds_connection]() -> boost::asio::awaitable<void> {
                    // Built outside the co_await expression (GCC 12).
                    auto opening = anweddol::hypervisor_connection::open("test:///default");
                    auto connection = co_await std::move(opening);
                    auto work = [&call](virConnectPtr c) {
                        call.pass(1s);
                        return virConnectNumOfDomains(c);
                    };
                    if (caller_holds_connection) {
                        auto calling = connection->call(work);
                        co_await std::move(calling);
                    } else {
                        connection->call(work, [](boost::system::error_code, int) {});
                    }
                },
                boost::asio::detached);
            while (!call.began)
                context.run_for(5ms);
            context.stop();
        } // the io_context is destroyed while the call runs
        const bool ended_before_destroyed = call.ended;
        call.release();
        CHECK(ended_before_destroyed);
    }
}

namespace {

// A TCP listener on loopback that never accepts: the kernel completes the
// connections from its backlog, and nothing ever answers them. libvirt's
// client then waits forever for the daemon's first reply; closing the
// listener resets them.
struct silent_listener {
    silent_listener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = 0;
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(fd, 64) == 0);
        socklen_t length = sizeof address;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
        port = ntohs(address.sin_port);
    }
    ~silent_listener() { close(); }
    void close() {
        if (fd >= 0)
            ::close(fd);
        fd = -1;
    }
    silent_listener(const silent_listener&) = delete;
    silent_listener& operator=(const silent_listener&) = delete;

    int fd = -1;
    unsigned short port = 0;
};

struct open_outcome {
    bool done = false;
    boost::system::error_code error;
    anweddol::diagnostics diag;
};

} // namespace

TEST_CASE("runtime: opening a host that never answers times out naming its URI, holds none of "
          "the shared workers, and does not hold up the io_context's destruction") {
    silent_listener silent;
    const std::string uri = "qemu+tcp://127.0.0.1:" + std::to_string(silent.port) + "/system";
    auto context = std::make_unique<boost::asio::io_context>();
    auto& rt = anweddol::runtime::of(context->get_executor());

    // More opens at once than the runtime has shared workers, each a
    // connection of its own (keepalive settings tell shared ones apart).
    std::vector<open_outcome> opens(6);
    for (std::size_t i = 0; i < opens.size(); ++i) {
        anweddol::hypervisor_connection::options options;
        options.keepalive_count = static_cast<unsigned>(i + 1);
        options.open_timeout = 2s;
        anweddol::hypervisor_connection::async_open(
            context->get_executor(), uri, options, opens[i].diag,
            [&outcome = opens[i]](boost::system::error_code ec,
                                  std::shared_ptr<anweddol::hypervisor_connection>) {
                outcome.error = ec;
                outcome.done = true;
            });
    }
    const auto all_done = [&] {
        for (const auto& o : opens)
            if (!o.done)
                return false;
        return true;
    };
    // While they wait, work on the shared workers runs: it is queued after
    // the opens began.
    bool worked = false;
    bool worked_before_opens_ended = false;
    auto later = std::make_unique<boost::asio::steady_timer>(*context, 100ms);
    later->async_wait([&](boost::system::error_code) {
        anweddol::detail::async_run_blocking_on(
            rt.workers(), nullptr, nullptr, [] { return 42; },
            boost::asio::bind_executor(
                *context, [&](boost::system::error_code ec, anweddol::diagnostics, int value) {
                    worked = !ec && value == 42;
                    worked_before_opens_ended = worked;
                    for (const auto& o : opens)
                        worked_before_opens_ended = worked_before_opens_ended && !o.done;
                }));
    });
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!(all_done() && worked) && std::chrono::steady_clock::now() < deadline)
        context->run_for(10ms);
    CHECK(worked_before_opens_ended);
    for (const auto& o : opens) {
        CHECK(o.done);
        CHECK(o.error == std::errc::timed_out);
        CHECK_THAT(o.diag.client_message(), Catch::Contains(uri));
    }
    later.reset(); // an I/O object of the io_context goes first
    // The opens' threads are still blocked in libvirt; once the host goes
    // (the listener closes), they end, and destruction does not wait long.
    silent.close();
    CHECK(destroyed_within(std::move(context), 15s));
}

TEST_CASE("runtime: a blocking open still running when its io_context goes is waited for a "
          "bounded time, then left to end on its own") {
    slow_call blocked;
    std::optional<boost::system::error_code> outcome;
    auto context = std::make_unique<boost::asio::io_context>();
    auto openers = std::make_unique<anweddol::detail::deadline_threads>();
    boost::asio::co_spawn(
        *context,
        [&]() -> boost::asio::awaitable<void> {
            auto running = openers->run<int>(
                [&blocked] {
                    blocked.pass(60s);
                    return 1;
                },
                100ms, "the test's work did not end in time");
            co_await std::move(running);
        },
        [&](std::exception_ptr e) {
            try {
                if (e)
                    std::rethrow_exception(e);
                outcome.emplace();
            } catch (const boost::system::system_error& error) {
                outcome = error.code();
            }
        });
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!outcome && std::chrono::steady_clock::now() < deadline)
        context->run_for(10ms);
    REQUIRE(outcome);
    CHECK(*outcome == std::errc::timed_out);
    CHECK(blocked.began);

    const std::size_t detached_before = anweddol::detail::deadline_threads::detached_running();
    openers->shutdown(200ms); // what the runtime does when its io_context goes
    CHECK(anweddol::detail::deadline_threads::detached_running() == detached_before + 1);
    openers.reset();
    context.reset();
    blocked.release(); // it ends now, touching nothing that is gone
    const auto limit = std::chrono::steady_clock::now() + 10s;
    while (anweddol::detail::deadline_threads::detached_running() > detached_before &&
           std::chrono::steady_clock::now() < limit)
        std::this_thread::sleep_for(10ms); // polling a count no event reports
    CHECK(anweddol::detail::deadline_threads::detached_running() == detached_before);
    CHECK(blocked.ended);
}
