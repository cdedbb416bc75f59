// libvirt call throughput: domain create+destroy pairs on libvirt's built-in
// test:///default driver, through anweddol (many at once from coroutines on
// one io_context thread), beside a plain sequential C loop and libvirt-python
// doing the same loop, in one run.
//
//   libvirt_calls_benchmark [--pairs N] [--concurrency C] [--uri URI]
//
// Prints each one's wall time per pair and its ratio to the C loop, and the
// CPU time anweddol's io_context thread spent per pair: the part of the work
// that competes with everything else an embedding server does on that thread.
// Targets: anweddol <= 1.25x the C loop, <= 10 us of io-thread CPU per pair.
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
namespace bp = boost::process::v2;

namespace {

struct settings {
    long pairs = 10000;
    int concurrency = 64;
    std::size_t in_flight = anweddol::hypervisor_connection::options{}.max_calls_in_flight;
    std::string uri = "test:///default";
};

settings parse(int argc, char** argv) {
    settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help") {
            std::cout << "usage: libvirt_calls_benchmark [--pairs N] [--concurrency C] "
                         "[--in-flight N (0: the connection's default)] [--uri URI]\n";
            std::exit(0);
        }
        if (i + 1 == argc)
            throw std::invalid_argument(std::string(arg) + " needs a value");
        const std::string value = argv[++i];
        if (arg == "--pairs")
            s.pairs = std::stol(value);
        else if (arg == "--concurrency")
            s.concurrency = std::stoi(value);
        else if (arg == "--in-flight")
            s.in_flight = std::stoul(value);
        else if (arg == "--uri")
            s.uri = value;
        else
            throw std::invalid_argument("unknown option " + std::string(arg));
    }
    if (s.pairs < 1 || s.concurrency < 1)
        throw std::invalid_argument("--pairs and --concurrency must be at least 1");
    return s;
}

double thread_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Runs a peer program that prints its microseconds per pair, and returns them.
double run_peer(asio::io_context& context, const std::string& program,
                std::vector<std::string> arguments) {
    asio::readable_pipe output(context);
    bp::process peer(context, program, arguments, bp::process_stdio{{}, output, {}});
    std::string text;
    boost::system::error_code ec;
    asio::read(output, asio::dynamic_buffer(text), ec); // until EOF
    if (const int status = peer.wait(); status != 0)
        throw std::runtime_error(program + " failed with exit status " + std::to_string(status));
    return std::stod(text);
}

struct library_result {
    double wall_us_per_pair;
    double io_cpu_us_per_pair;
};

asio::awaitable<void>
create_destroy_pairs(std::shared_ptr<anweddol::hypervisor_connection> connection, long& next,
                     long pairs) {
    while (next < pairs) {
        const long i = next++;
        auto creating = connection->call([i](virConnectPtr c) {
            const std::string xml = "<domain type='test'><name>bench-lib-" + std::to_string(i) +
                                    "</name><memory>65536</memory>"
                                    "<os><type>hvm</type></os></domain>";
            anweddol::detail::domain_handle created(virDomainCreateXML(c, xml.c_str(), 0));
            if (!created)
                anweddol::detail::throw_last_libvirt_error("virDomainCreateXML");
            return created;
        });
        auto domain = co_await std::move(creating);
        // Built outside the co_await expression: GCC 12 destroys temporaries
        // with captures inside one twice.
        auto destroying = connection->call([domain = std::move(domain)](virConnectPtr) {
            if (virDomainDestroy(domain.get()) < 0)
                anweddol::detail::throw_last_libvirt_error("virDomainDestroy");
        });
        co_await std::move(destroying);
    }
}

// Each run opens its own connection (its settings differ) on the one
// io_context; run() returns when a run's work is done.
library_result run_library(asio::io_context& context, const settings& s, bool lifecycle_events) {
    std::shared_ptr<anweddol::hypervisor_connection> connection;
    std::exception_ptr failure;
    const auto remember = [&](std::exception_ptr e) {
        if (e && !failure)
            failure = e;
    };
    anweddol::hypervisor_connection::options options;
    options.max_calls_in_flight = s.in_flight;
    options.lifecycle_events = lifecycle_events;
    asio::co_spawn(
        context,
        [&]() -> asio::awaitable<void> {
            connection = co_await anweddol::hypervisor_connection::open(s.uri, options);
        },
        remember);
    context.restart();
    context.run();
    if (failure)
        std::rethrow_exception(failure);

    long next = 0;
    for (int worker = 0; worker < s.concurrency; ++worker)
        asio::co_spawn(context, create_destroy_pairs(connection, next, s.pairs), remember);
    context.restart();
    const double cpu_start = thread_cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    context.run();
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    const double cpu = thread_cpu_seconds() - cpu_start;
    if (failure)
        std::rethrow_exception(failure);
    const double pairs = static_cast<double>(s.pairs);
    return {wall.count() / pairs * 1e6, cpu / pairs * 1e6};
}

} // namespace

int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    asio::io_context peers; // runs nothing: only spawns the peer programs
    const std::string pairs = std::to_string(s.pairs);

    std::cout << s.pairs << " domain create+destroy pairs on " << s.uri << "\n" << std::flush;
    const double c_loop = run_peer(peers, ANWEDDOL_BENCH_C_LOOP, {s.uri, pairs});
    const double python =
        run_peer(peers, "/usr/bin/python3", {ANWEDDOL_BENCH_PYTHON_LOOP, s.uri, pairs});
    asio::io_context context(1);
    // Calls alone first, then on a connection that also delivers every
    // domain's lifecycle events to the io_context (two per pair here).
    const library_result calls_only = run_library(context, s, false);
    const library_result with_events = run_library(context, s, true);

    std::printf("\n%-44s %14s %10s %24s\n", "", "wall per pair", "vs C loop",
                "io-thread CPU per pair");
    std::printf("%-44s %11.1f us %9.2fx %24s\n", "C loop, sequential", c_loop, 1.0, "-");
    std::printf("%-44s %11.1f us %9.2fx %24s\n", "libvirt-python loop, sequential", python,
                python / c_loop, "-");
    const std::string name = "anweddol, " + std::to_string(s.concurrency) + " coroutines, " +
                             (s.in_flight ? std::to_string(s.in_flight) : "default") + " lanes";
    for (const auto& [label, result] :
         {std::pair{name + ", calls", calls_only}, std::pair{name + ", +events", with_events}})
        std::printf("%-44s %11.1f us %9.2fx %21.2f us\n", label.c_str(), result.wall_us_per_pair,
                    result.wall_us_per_pair / c_loop, result.io_cpu_us_per_pair);
    std::printf("\ntargets for the calls: <= 1.25x the C loop (%s), <= 10 us io-thread CPU per "
                "pair (%s)\n",
                calls_only.wall_us_per_pair <= 1.25 * c_loop ? "met" : "NOT met",
                calls_only.io_cpu_us_per_pair <= 10.0 ? "met" : "NOT met");
    return 0;
} catch (const std::exception& e) {
    std::cerr << "libvirt_calls_benchmark: " << e.what() << "\n";
    return 1;
}
