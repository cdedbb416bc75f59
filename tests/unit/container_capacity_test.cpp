// container_capacity on libvirt's test:///default driver: places up to the
// count limit, the host's free memory (as the driver reports it) less what is
// booting, places given back by reset, destruction or a refusal, and a
// cancelled reservation that takes no place.
#include "test_context.hpp"

#include <anweddol/container_capacity.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <libvirt/libvirt.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

using anweddol::container_capacity;
using anweddol::diagnostics;
using anweddol::errc;
using anweddol::hypervisor_connection;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::test_context;
using boost::asio::awaitable;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

const std::string test_uri = "test:///default";

container_capacity::options count_only(std::size_t max_containers) {
    container_capacity::options o;
    o.max_containers = max_containers;
    o.check_memory = false;
    o.driver_uri = test_uri;
    return o;
}

container_capacity::options memory_checked(std::uint64_t headroom_mib) {
    container_capacity::options o;
    o.memory_headroom_mib = headroom_mib;
    o.driver_uri = test_uri;
    return o;
}

// What the test driver says its host has free, in MiB, asked here without
// the capacity.
std::uint64_t driver_free_memory_mib() {
    return run_coroutine([]() -> awaitable<std::uint64_t> {
        auto connection = co_await hypervisor_connection::open(test_uri);
        const unsigned long long bytes =
            co_await connection->call([](virConnectPtr c) { return virNodeGetFreeMemory(c); });
        co_return bytes / (1024 * 1024);
    }());
}

// One reservation, with the error and diagnostics of a refusal.
struct attempt {
    error_code ec;
    diagnostics diag;
    container_capacity::reservation place;
};

attempt reserve(container_capacity& capacity, std::uint64_t memory_mib) {
    return run_coroutine([&]() -> awaitable<attempt> {
        attempt a;
        auto reserving =
            capacity.reserve(memory_mib, a.diag, boost::asio::as_tuple(boost::asio::use_awaitable));
        auto [ec, place] = co_await std::move(reserving);
        a.ec = ec;
        a.place = std::move(place);
        co_return a;
    }());
}

} // namespace

TEST_CASE("container_capacity: places up to max_containers, then over_capacity until one is "
          "given back by reset or destruction",
          "[capacity]") {
    container_capacity capacity(test_context().get_executor(), count_only(2));
    auto first = reserve(capacity, 512);
    auto second = reserve(capacity, 512);
    REQUIRE_FALSE(first.ec);
    REQUIRE_FALSE(second.ec);
    CHECK(first.place);
    CHECK(first.place.booting());
    CHECK(first.place.memory_mib() == 512);
    CHECK(capacity.get_usage().reserved == 2);

    auto third = reserve(capacity, 512);
    CHECK(third.ec == errc::over_capacity);
    CHECK(third.ec == std::errc::resource_unavailable_try_again);
    CHECK_FALSE(third.place);
    CHECK_THAT(third.diag.client_message(), Catch::Contains("2 of 2 containers"));
    CHECK(capacity.get_usage().reserved == 2); // a refusal takes nothing
    CHECK(capacity.get_usage().refused == 1);

    first.place.reset();
    CHECK(capacity.get_usage().reserved == 1);
    {
        auto again = reserve(capacity, 512);
        REQUIRE_FALSE(again.ec);
        // A moved reservation still holds one place, given back once.
        container_capacity::reservation moved = std::move(again.place);
        CHECK_FALSE(again.place);
        CHECK(capacity.get_usage().reserved == 2);
    }
    CHECK(capacity.get_usage().reserved == 1);
    second.place = {};
    const auto usage = capacity.get_usage();
    CHECK(usage.reserved == 0);
    CHECK(usage.booting == 0);
    CHECK(usage.booting_memory_mib == 0);
    CHECK(usage.granted == 3);
}

TEST_CASE("container_capacity: the host's free memory less what is booting and the headroom, and "
          "a booted container's memory stops counting",
          "[capacity]") {
    const std::uint64_t free_mib = driver_free_memory_mib();
    REQUIRE(free_mib >= 2); // the test driver reports a few MiB

    // No headroom: `free_mib` places of 1 MiB fit, and not one more, since
    // each booting one is taken off what the host reports.
    container_capacity capacity(test_context().get_executor(), memory_checked(0));
    std::vector<container_capacity::reservation> places;
    for (std::uint64_t i = 0; i < free_mib; ++i) {
        auto a = reserve(capacity, 1);
        INFO("place " << i << ": " << a.diag.client_message());
        REQUIRE_FALSE(a.ec);
        places.push_back(std::move(a.place));
    }
    auto refused = reserve(capacity, 1);
    CHECK(refused.ec == errc::over_capacity);
    CHECK_THAT(refused.diag.client_message(),
               Catch::Contains(std::to_string(free_mib) + " MiB free") &&
                   Catch::Contains(std::to_string(free_mib) + " MiB of it promised"));
    auto usage = capacity.get_usage();
    CHECK(usage.last_free_memory_mib == free_mib);
    CHECK(usage.booting_memory_mib == free_mib);

    // Booted: the host's figure now includes it (as far as the capacity
    // knows), so its memory no longer counts twice.
    places.front().mark_booted();
    CHECK(capacity.get_usage().booting == free_mib - 1);
    auto after_boot = reserve(capacity, 1);
    CHECK_FALSE(after_boot.ec);
    places.clear();
    after_boot.place.reset();
    usage = capacity.get_usage();
    CHECK(usage.reserved == 0);
    CHECK(usage.booting_memory_mib == 0);

    // The headroom is kept for the host: a container bigger than what is
    // left is refused even with nothing booting.
    container_capacity tight(test_context().get_executor(), memory_checked(free_mib));
    auto too_big = reserve(tight, 1);
    CHECK(too_big.ec == errc::over_capacity);
    CHECK_THAT(too_big.diag.client_message(),
               Catch::Contains("keeps " + std::to_string(free_mib) + " MiB"));
    CHECK(tight.get_usage().reserved == 0);
}

TEST_CASE("container_capacity: a reservation cancelled before the host answered completes "
          "with operation_aborted and takes no place",
          "[capacity]") {
    container_capacity capacity(test_context().get_executor(), memory_checked(0));
    boost::asio::cancellation_signal cancel;
    std::optional<error_code> result;
    bool held = true;
    capacity.reserve(1, boost::asio::bind_cancellation_slot(
                            cancel.slot(), [&](error_code ec, container_capacity::reservation r) {
                                result = ec;
                                held = static_cast<bool>(r);
                            }));
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(run_until([&] { return result.has_value(); }));
    CHECK(*result == boost::asio::error::operation_aborted);
    CHECK_FALSE(held);
    CHECK(capacity.get_usage().reserved == 0);
    CHECK(capacity.get_usage().booting_memory_mib == 0);
}

TEST_CASE("container_capacity: a reservation may outlive its capacity", "[capacity]") {
    container_capacity::reservation kept;
    {
        container_capacity capacity(test_context().get_executor(), count_only(1));
        kept = std::move(reserve(capacity, 512).place);
        REQUIRE(kept);
    }
    kept.mark_booted();
    kept.reset();
    CHECK_FALSE(kept);
}
