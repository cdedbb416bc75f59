// Example 3: a container server. An HTTP/JSON API on Boost.Beast that
// embeds anweddol on the same io_context, on one thread:
//
//   POST   /containers          boots and administers one; 201 with
//                               {uuid, ip, port, username, password}
//   GET    /containers          lists them (without passwords)
//   DELETE /containers/{uuid}   destroys one; 204
//   GET    /metrics             what operators watch, in Prometheus's text
//                               format (prometheus-cpp's registry and
//                               serializer, served by this listener):
//                               containers handed out and running, failures
//                               by reason, the capacity and the boot
//                               admission, the pool, per-phase latency
//                               histograms
//
// With --pool K, an anweddol::container_pool keeps K containers booted
// (address known, endpoint logged in) and refills itself in the background:
// a POST for the pool's kind (512 MiB, 1 vCPU) takes one and pays only the
// hand-over (client credentials, setup script, the client's login check);
// other POSTs boot their own. The pool's K count against --max-containers:
// clients get the other places, and K x 512 MiB more memory is kept free for
// the refills, which the capacity does not see boot.
//
// It holds under load:
// - A capacity (anweddol::container_capacity): at most --max-containers at
//   once, and a boot only while the host's free memory, less the memory of
//   the containers still booting, has room for it. Beyond that a POST gets
//   503 with Retry-After, at once, and boots nothing.
// - Bounds on every request: a body of at most --max-body bytes (413), JSON
//   (415 otherwise) with `memory` in [512, --max-memory] MiB and `vcpus` in
//   [1, --max-vcpus] and nothing else (400); headers of at most 8 KiB (431),
//   read within --header-timeout seconds (the connection is closed);
//   at most --max-connections connections (503).
// - A client that hangs up while its container is provisioned cancels the
//   provisioning: the domain is destroyed and nothing is stored. A 201 that
//   cannot be delivered destroys its container too.
//
// Bad requests get 4xx with {"error": ...}; a failed boot gets 5xx and leaves
// nothing behind. Ctrl-C (or SIGTERM) stops the server: open connections are
// closed, provisionings cancelled, the pool's containers and every container
// it handed out destroyed. It listens on 127.0.0.1 only.
//
//   container_server ISO [PORT] [DRIVER_URI] [DOMAIN_TYPE] [OPTIONS]  (--help)
//   curl -X POST 127.0.0.1:8080/containers -H 'Content-Type: application/json' -d '{"memory": 512}'
#include <anweddol/container_pool.hpp>
#include <anweddol/virtualization.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <variant>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using request_type = http::request<http::string_body>;
using response_type = http::response<http::string_body>;

namespace {

constexpr std::string_view usage =
    R"(usage: container_server ISO [PORT] [DRIVER_URI] [DOMAIN_TYPE] [options]

An HTTP/JSON container server on 127.0.0.1 (see the top of its source),
with its metrics for Prometheus on GET /metrics.

  --port PORT             where it listens (default 8080; 0: any free port)
  --uri URI               libvirt driver URI (default qemu:///system)
  --domain-type TYPE      kvm or qemu (default: kvm where the host has it)
  --pool K                keep K containers booted and waiting (default 0: boot one per
                          request); a POST for 512 MiB and 1 vCPU takes one from the pool,
                          others boot their own
capacity, beyond which POST gets 503 with Retry-After:
  --max-containers N      containers at once, booting, handed out or pooled (default 4;
                          0: no limit); with --pool K, clients get N - K of them
  --memory-headroom MIB   host memory kept free beyond the containers' (default 512;
                          with --pool K, K x 512 MiB more, for the pool's refills)
  --no-memory-check       do not ask the host's free memory
  --retry-after SECONDS   the Retry-After of a 503 (default 20: about one boot)
request bounds:
  --max-memory MIB        the most memory a container may ask (default 2048)
  --max-vcpus N           the most vCPUs a container may ask (default: the CPU count)
  --max-body BYTES        the largest request body (default 1024)
  --header-timeout SEC    to read a request's headers and body (default 10)
  --max-connections N     open connections at once (default 256)
  --help                  this text
)";

struct server_settings {
    std::string iso;
    std::uint16_t port = 8080;
    std::string uri = "qemu:///system";
    std::string domain_type; // empty: kvm where the host has it
    anweddol::container_capacity::options capacity;
    std::chrono::seconds retry_after{20};
    unsigned max_memory_mib = 2048;
    unsigned max_vcpus = std::max(1u, std::thread::hardware_concurrency());
    std::size_t max_body_bytes = 1024;
    std::chrono::seconds header_timeout{10};
    std::size_t max_connections = 256;
    std::size_t pool = 0; // K containers kept booted; 0: no pool
};

// The containers a pool keeps, and the only ones a POST takes from it.
constexpr unsigned pool_memory_mib = 512;
constexpr unsigned pool_vcpus = 1;

[[noreturn]] void bad_usage(const std::string& why) {
    std::cerr << "container_server: " << why << "\n\n" << usage;
    std::exit(2);
}

std::uint64_t number(std::string_view option, std::string_view value, std::uint64_t low,
                     std::uint64_t high) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n < low || n > high)
        bad_usage(std::string(option) + " needs a whole number from " + std::to_string(low) +
                  " to " + std::to_string(high) + ", not '" + std::string(value) + "'");
    return n;
}

server_settings parse_command_line(int argc, char** argv) {
    server_settings s;
    s.capacity.max_containers = 4;
    int positional = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help") {
            std::cout << usage;
            std::exit(0);
        }
        if (arg == "--no-memory-check") {
            s.capacity.check_memory = false;
            continue;
        }
        if (!arg.starts_with("--")) {
            switch (positional++) {
            case 0:
                s.iso = arg;
                break;
            case 1:
                s.port = static_cast<std::uint16_t>(number("PORT", arg, 0, 65535));
                break;
            case 2:
                s.uri = arg;
                break;
            case 3:
                s.domain_type = arg;
                break;
            default:
                bad_usage("one argument too many: " + std::string(arg));
            }
            continue;
        }
        if (i + 1 == argc)
            bad_usage(std::string(arg) + " needs a value");
        const std::string_view value = argv[++i];
        if (arg == "--port")
            s.port = static_cast<std::uint16_t>(number(arg, value, 0, 65535));
        else if (arg == "--uri")
            s.uri = value;
        else if (arg == "--domain-type")
            s.domain_type = value;
        else if (arg == "--max-containers")
            s.capacity.max_containers = number(arg, value, 0, 1 << 20);
        else if (arg == "--memory-headroom")
            s.capacity.memory_headroom_mib = number(arg, value, 0, 1 << 30);
        else if (arg == "--retry-after")
            s.retry_after = std::chrono::seconds(number(arg, value, 1, 86400));
        else if (arg == "--max-memory")
            s.max_memory_mib = static_cast<unsigned>(number(arg, value, 512, 1 << 24));
        else if (arg == "--max-vcpus")
            s.max_vcpus = static_cast<unsigned>(number(arg, value, 1, 4096));
        else if (arg == "--max-body")
            s.max_body_bytes = number(arg, value, 2, 1 << 20);
        else if (arg == "--header-timeout")
            s.header_timeout = std::chrono::seconds(number(arg, value, 1, 3600));
        else if (arg == "--max-connections")
            s.max_connections = number(arg, value, 1, 1 << 20);
        else if (arg == "--pool")
            s.pool = number(arg, value, 0, 1024);
        else
            bad_usage("unknown option " + std::string(arg));
    }
    if (s.iso.empty())
        bad_usage("the ISO is required");
    s.capacity.driver_uri = s.uri;
    // The pool's containers count against --max-containers: the capacity
    // grants clients the rest. It does not see the pool's refills boot, so
    // their memory is kept free on top of the headroom.
    if (s.pool) {
        if (s.capacity.max_containers && s.capacity.max_containers <= s.pool)
            bad_usage("--max-containers counts the pool's containers too: it must be more "
                      "than --pool (" +
                      std::to_string(s.pool) + "), or 0 for no limit");
        if (s.capacity.max_containers)
            s.capacity.max_containers -= s.pool;
        s.capacity.memory_headroom_mib += s.pool * pool_memory_mib;
    }
    return s;
}

// ---- Requests and responses ------------------------------------------------

response_type reply(unsigned version, bool keep_alive, http::status status,
                    const json::value& body) {
    response_type response(status, version);
    response.set(http::field::content_type, "application/json");
    response.keep_alive(keep_alive);
    response.body() = json::serialize(body);
    response.prepare_payload();
    return response;
}

response_type error(unsigned version, bool keep_alive, http::status status,
                    const std::string& message) {
    return reply(version, keep_alive, status, json::object{{"error", message}});
}

response_type error(const request_type& request, http::status status, const std::string& message) {
    return error(request.version(), request.keep_alive(), status, message);
}

// A 503 that says when to come back.
response_type unavailable(const request_type& request, std::chrono::seconds retry_after,
                          const std::string& message) {
    auto response = error(request, http::status::service_unavailable, message);
    response.set(http::field::retry_after, std::to_string(retry_after.count()));
    return response;
}

// What a client may ask for a container: {"memory": MiB, "vcpus": N}, both
// optional, nothing else.
struct container_request {
    unsigned memory_mib = 512;
    unsigned vcpus = 1;
};

struct refusal {
    http::status status;
    std::string message;
};

std::variant<container_request, refusal> parse_container_request(const request_type& request,
                                                                 const server_settings& s) {
    container_request wanted;
    if (request.body().empty())
        return wanted;
    const std::string_view type = request[http::field::content_type];
    if (type.substr(0, type.find(';')) != "application/json")
        return refusal{http::status::unsupported_media_type,
                       "the body must be JSON, sent with Content-Type: application/json"};
    boost::system::error_code ec;
    const json::value body = json::parse(request.body(), ec);
    if (ec || !body.is_object())
        return refusal{http::status::bad_request,
                       "the body must be a JSON object such as {\"memory\": 512, \"vcpus\": 1}"};
    for (const auto& [key, value] : body.as_object()) {
        const bool memory = key == "memory";
        if (!memory && key != "vcpus")
            return refusal{http::status::bad_request,
                           "unknown field \"" + std::string(key) +
                               "\": a container request may have \"memory\" and \"vcpus\" only"};
        const std::uint64_t low = memory ? 512 : 1;
        const std::uint64_t high = memory ? s.max_memory_mib : s.max_vcpus;
        const std::string range = "from " + std::to_string(low) + " to " + std::to_string(high) +
                                  (memory ? " (MiB)" : "");
        if (!value.is_int64() && !value.is_uint64())
            return refusal{http::status::bad_request,
                           "\"" + std::string(key) + "\" must be a whole number " + range};
        const bool in_range = value.is_uint64()
                                  ? value.as_uint64() >= low && value.as_uint64() <= high
                                  : value.as_int64() >= static_cast<std::int64_t>(low) &&
                                        value.as_int64() <= static_cast<std::int64_t>(high);
        if (!in_range)
            return refusal{http::status::bad_request, "\"" + std::string(key) + "\" must be " +
                                                          range + ", not " +
                                                          json::serialize(value)};
        (memory ? wanted.memory_mib : wanted.vcpus) = value.to_number<unsigned>();
    }
    return wanted;
}

bool looks_like_uuid(std::string_view s) {
    if (s.size() != 36)
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i])))
            return false;
    }
    return true;
}

// ---- Metrics ---------------------------------------------------------------

// A short label for what went wrong, the same from one version to the next,
// for anweddol_request_failures_total{reason}: anweddol's own errors by the
// name of their errc, libvirt's and libssh's by their library.
std::string_view failure_reason(const boost::system::error_code& ec) {
    using anweddol::errc;
    if (ec.category() == anweddol::error_category()) {
        switch (static_cast<errc>(ec.value())) {
        case errc::domain_not_created:
            return "domain_not_created";
        case errc::domain_not_running:
            return "domain_not_running";
        case errc::domain_already_running:
            return "domain_already_running";
        case errc::iso_path_not_set:
            return "iso_path_not_set";
        case errc::invalid_memory:
            return "invalid_memory";
        case errc::invalid_vcpus:
            return "invalid_vcpus";
        case errc::invalid_argument:
            return "invalid_argument";
        case errc::container_already_stored:
            return "container_already_stored";
        case errc::ip_wait_timeout:
            return "ip_wait_timeout";
        case errc::shell_not_open:
            return "shell_not_open";
        case errc::shell_already_open:
            return "shell_already_open";
        case errc::endpoint_credentials_not_set:
            return "endpoint_credentials_not_set";
        case errc::client_credentials_not_set:
            return "client_credentials_not_set";
        case errc::administration_failed:
            return "administration_failed";
        case errc::lease_file_malformed:
            return "lease_file_malformed";
        case errc::authentication_failed:
            return "authentication_failed";
        case errc::host_key_mismatch:
            return "host_key_mismatch";
        case errc::output_limit_exceeded:
            return "output_limit_exceeded";
        case errc::unexpected_error:
            return "unexpected_error";
        case errc::foreign_event_loop:
            return "foreign_event_loop";
        case errc::domain_paused:
            return "domain_paused";
        case errc::domain_crashed:
            return "domain_crashed";
        case errc::over_capacity:
            return "over_capacity";
        case errc::pool_closed:
            return "pool_closed";
        case errc::host_down:
            return "host_down";
        case errc::no_host_available:
            return "no_host_available";
        }
        return "other";
    }
    if (ec == boost::system::errc::operation_canceled)
        return "cancelled";
    if (ec == boost::system::errc::timed_out)
        return "timed_out";
    if (ec.category() == anweddol::libvirt_category())
        return "libvirt_error";
    if (ec.category() == anweddol::libssh_category())
        return "ssh_error";
    return "other";
}

// What the server counts, in Prometheus's text format for GET /metrics
// (prometheus-cpp's registry and serializer; the server's own listener
// serves them). Events (a container handed out, a failure, a phase's
// duration) are recorded as they happen; the state of the capacity, the
// boot admission and the pool is read at each scrape.
class server_metrics {
public:
    // What the gauges show, read when scraped.
    struct state {
        std::size_t running = 0;
        anweddol::container_capacity::usage capacity;
        std::size_t capacity_limit = 0; // 0: none
        std::size_t admission_waiting = 0;
        std::size_t admission_booting = 0;
        std::optional<anweddol::container_pool_stats> pool; // with --pool
    };

    explicit server_metrics(bool with_pool)
        : handed_out_(prometheus::BuildCounter()
                          .Name("anweddol_containers_handed_out_total")
                          .Help("Containers provisioned for a client by POST /containers, by "
                                "source: pool (handed out warm from the pool) or boot (booted "
                                "while the request waited)")
                          .Register(registry_))
        , handed_out_boot_(handed_out_.Add({{"source", "boot"}}))
        , handed_out_pool_(with_pool ? &handed_out_.Add({{"source", "pool"}}) : nullptr)
        , running_(
              gauge("anweddol_containers_running", "Containers handed out and not destroyed yet"))
        , failures_(prometheus::BuildCounter()
                        .Name("anweddol_request_failures_total")
                        .Help("Requests answered with an error, or whose answer was lost, by "
                              "reason: over_capacity, bad_request, a provisioning error "
                              "(ip_wait_timeout, domain_crashed, administration_failed, "
                              "libvirt_error, ssh_error, ...), client_hung_up, undeliverable")
                        .Register(registry_))
        , phases_(prometheus::BuildHistogram()
                      .Name("anweddol_provisioning_phase_seconds")
                      .Help("How long each phase of a container's provisioning took: queue "
                            "(for a boot slot), define, boot_to_address, ssh, administration, "
                            "verification (the client's login), and with --pool pool_wait "
                            "(a take waiting for a boot); for a pooled container, its boot's "
                            "phases and its hand-over's")
                      .Register(registry_))
        , requests_(prometheus::BuildHistogram()
                        .Name("anweddol_container_request_seconds")
                        .Help("POST /containers that handed out a container, from the request "
                              "read to the credentials ready, by source (boot or pool)")
                        .Register(registry_))
        , admission_waiting_(gauge("anweddol_boot_admission_waiting",
                                   "Boots waiting for a place in the boot admission"))
        , admission_booting_(gauge("anweddol_boot_admission_booting",
                                   "Boots holding a place in the boot admission"))
        , reserved_(gauge("anweddol_capacity_reserved",
                          "Places of the capacity held: containers booting for a client or "
                          "handed out"))
        , reserved_booting_(gauge("anweddol_capacity_booting",
                                  "Places of the capacity whose container still boots"))
        , booting_memory_(gauge("anweddol_capacity_booting_memory_bytes",
                                "Memory of the containers still booting, which the host's free "
                                "memory does not show yet"))
        , capacity_limit_(gauge("anweddol_capacity_limit",
                                "The most places the capacity grants at once (+Inf: no limit)"))
        , granted_(counter("anweddol_capacity_granted_total", "Places the capacity granted"))
        , refused_(counter("anweddol_capacity_refused_total",
                           "Requests the capacity refused (too many containers, or not "
                           "enough memory)"))
        , free_memory_(prometheus::BuildGauge()
                           .Name("anweddol_host_free_memory_bytes")
                           .Help("The host's free memory at the capacity's last check")
                           .Register(registry_)) {
        // Each series exists from the start, at 0, so that rate() and
        // increase() see its first event.
        for (std::string_view reason : {"bad_request",
                                        "unsupported_media_type",
                                        "payload_too_large",
                                        "header_too_large",
                                        "malformed_request",
                                        "not_found",
                                        "method_not_allowed",
                                        "too_many_connections",
                                        "server_stopping",
                                        "over_capacity",
                                        "capacity_check_failed",
                                        "ip_wait_timeout",
                                        "domain_crashed",
                                        "domain_paused",
                                        "administration_failed",
                                        "authentication_failed",
                                        "host_key_mismatch",
                                        "libvirt_error",
                                        "ssh_error",
                                        "timed_out",
                                        "cancelled",
                                        "other",
                                        "client_hung_up",
                                        "undeliverable",
                                        "destroy_failed"})
            failure(reason);
        for (std::string_view phase : phase_names)
            phase_histogram(phase);
        request_histogram("boot");
        if (with_pool) {
            failure("pool_closed");
            phase_histogram("pool_wait");
            request_histogram("pool");
            pool_.emplace(*this);
        }
    }

    // A container handed out; `via_pool`: the request took it from the pool
    // (warm, or the first one booted while it waited).
    void handed_out(const anweddol::provisioned_container& provisioned, bool via_pool,
                    std::chrono::steady_clock::duration request) {
        const bool warm = provisioned.from_pool && handed_out_pool_;
        (warm ? *handed_out_pool_ : handed_out_boot_).Increment();
        const auto& t = provisioned.timings;
        const std::array durations{t.queued,    t.define,         t.boot_to_ip,
                                   t.ip_to_ssh, t.administration, t.verification};
        for (std::size_t i = 0; i < durations.size(); ++i)
            phase_histogram(phase_names[i]).Observe(seconds(durations[i]));
        if (via_pool)
            phase_histogram("pool_wait").Observe(seconds(t.pool_wait));
        request_histogram(warm ? "pool" : "boot").Observe(seconds(request));
    }

    void failed(std::string_view reason) {
        failures_.Add({{"reason", std::string(reason)}}).Increment();
    }

    // Everything, in the text exposition format (version 0.0.4).
    std::string scrape(const state& now) {
        running_.Set(static_cast<double>(now.running));
        admission_waiting_.Set(static_cast<double>(now.admission_waiting));
        admission_booting_.Set(static_cast<double>(now.admission_booting));
        reserved_.Set(static_cast<double>(now.capacity.reserved));
        reserved_booting_.Set(static_cast<double>(now.capacity.booting));
        booting_memory_.Set(static_cast<double>(now.capacity.booting_memory_mib) * mib);
        capacity_limit_.Set(now.capacity_limit ? static_cast<double>(now.capacity_limit)
                                               : std::numeric_limits<double>::infinity());
        set_total(granted_, now.capacity.granted);
        set_total(refused_, now.capacity.refused);
        if (now.capacity.last_free_memory_mib)
            free_memory_.Add({}).Set(static_cast<double>(*now.capacity.last_free_memory_mib) * mib);
        if (pool_ && now.pool)
            pool_->update(*now.pool);
        return prometheus::TextSerializer().Serialize(registry_.Collect());
    }

private:
    // A counter that mirrors a running total kept elsewhere.
    static void set_total(prometheus::Counter& counter, std::uint64_t total) {
        const double value = static_cast<double>(total);
        if (value > counter.Value())
            counter.Increment(value - counter.Value());
    }

    prometheus::Gauge& gauge(const std::string& name, const std::string& help) {
        return prometheus::BuildGauge().Name(name).Help(help).Register(registry_).Add({});
    }
    prometheus::Counter& counter(const std::string& name, const std::string& help) {
        return prometheus::BuildCounter().Name(name).Help(help).Register(registry_).Add({});
    }
    // The series of a failure reason, at 0 until it happens.
    void failure(std::string_view reason) { failures_.Add({{"reason", std::string(reason)}}); }

    // The warm pool's, read from its stats at each scrape.
    struct pool_metrics {
        explicit pool_metrics(server_metrics& m)
            : size(m.gauge("anweddol_pool_size", "Containers the pool keeps booted (--pool)"))
            , ready(m.gauge("anweddol_pool_ready", "Pooled containers booted and waiting"))
            , booting(m.gauge("anweddol_pool_booting", "The pool's refills booting now"))
            , waiting(m.gauge("anweddol_pool_takes_waiting",
                              "Requests waiting for the pool to have a container"))
            , boots_started(m.counter("anweddol_pool_boots_started_total",
                                      "Boots the pool started to fill or refill itself"))
            , boots_failed(m.counter("anweddol_pool_boots_failed_total",
                                     "The pool's boots that failed (retried with backoff)"))
            , taken(prometheus::BuildCounter()
                        .Name("anweddol_pool_taken_total")
                        .Help("Containers taken from the pool: warm (ready at once) or "
                              "after_wait (the request waited for a boot)")
                        .Register(m.registry_))
            , taken_warm(taken.Add({{"how", "warm"}}))
            , taken_after_wait(taken.Add({{"how", "after_wait"}}))
            , recycled(m.counter("anweddol_pool_recycled_total",
                                 "Pooled containers destroyed after waiting too long, and "
                                 "replaced"))
            , lost(m.counter("anweddol_pool_lost_total",
                             "Pooled containers that died while waiting, and were replaced")) {}

        void update(const anweddol::container_pool_stats& stats) {
            size.Set(static_cast<double>(stats.target));
            ready.Set(static_cast<double>(stats.ready));
            booting.Set(static_cast<double>(stats.booting));
            waiting.Set(static_cast<double>(stats.waiting));
            set_total(boots_started, stats.boots_started);
            set_total(boots_failed, stats.boots_failed);
            set_total(taken_warm, stats.taken_warm);
            set_total(taken_after_wait, stats.taken_after_wait);
            set_total(recycled, stats.recycled);
            set_total(lost, stats.lost);
        }

        prometheus::Gauge& size;
        prometheus::Gauge& ready;
        prometheus::Gauge& booting;
        prometheus::Gauge& waiting;
        prometheus::Counter& boots_started;
        prometheus::Counter& boots_failed;
        prometheus::Family<prometheus::Counter>& taken;
        prometheus::Counter& taken_warm;
        prometheus::Counter& taken_after_wait;
        prometheus::Counter& recycled;
        prometheus::Counter& lost;
    };

    static constexpr double mib = 1024.0 * 1024.0;
    static constexpr std::array<std::string_view, 6> phase_names{
        "queue", "define", "boot_to_address", "ssh", "administration", "verification"};

    // Seconds, from 50 ms (a hand-over from the pool) to 5 minutes (a boot
    // under software emulation on a busy host).
    static prometheus::Histogram::BucketBoundaries buckets() {
        return {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300};
    }
    static double seconds(std::chrono::steady_clock::duration d) {
        return std::chrono::duration<double>(d).count();
    }
    prometheus::Histogram& phase_histogram(std::string_view phase) {
        return phases_.Add({{"phase", std::string(phase)}}, buckets());
    }
    prometheus::Histogram& request_histogram(std::string_view source) {
        return requests_.Add({{"source", std::string(source)}}, buckets());
    }

    prometheus::Registry registry_;
    prometheus::Family<prometheus::Counter>& handed_out_;
    prometheus::Counter& handed_out_boot_;
    prometheus::Counter* handed_out_pool_;
    prometheus::Gauge& running_;
    prometheus::Family<prometheus::Counter>& failures_;
    prometheus::Family<prometheus::Histogram>& phases_;
    prometheus::Family<prometheus::Histogram>& requests_;
    prometheus::Gauge& admission_waiting_;
    prometheus::Gauge& admission_booting_;
    prometheus::Gauge& reserved_;
    prometheus::Gauge& reserved_booting_;
    prometheus::Gauge& booting_memory_;
    prometheus::Gauge& capacity_limit_;
    prometheus::Counter& granted_;
    prometheus::Counter& refused_;
    prometheus::Family<prometheus::Gauge>& free_memory_;
    std::optional<pool_metrics> pool_;
};

// ---- The server ------------------------------------------------------------

// A response, and the container it hands out (to destroy if it cannot be
// delivered).
struct outcome {
    outcome() = default;
    explicit outcome(response_type r, std::string uuid = {})
        : response(std::move(r))
        , created_uuid(std::move(uuid)) {}
    response_type response;
    std::string created_uuid;
};

class container_server {
public:
    container_server(asio::any_io_executor executor, server_settings settings)
        : interface_(executor)
        , capacity_(executor, settings.capacity)
        , settings_(std::move(settings))
        , metrics_(settings_.pool > 0) {
        if (settings_.pool)
            pool_ = std::make_unique<anweddol::container_pool>(executor, pool_options());
    }

    const server_settings& settings() const { return settings_; }
    bool stopping() const { return stopping_; }
    server_metrics& metrics() { return metrics_; }

    // Every request but POST /containers.
    asio::awaitable<response_type> handle(const request_type& request) {
        const std::string_view target = request.target();
        if (target == "/metrics" && request.method() == http::verb::get)
            co_return scrape(request);
        if (target == "/metrics")
            co_return refuse(request, "method_not_allowed", http::status::method_not_allowed,
                             "use GET on /metrics");
        if (target == "/containers" && request.method() == http::verb::get)
            co_return list(request);
        if (target.starts_with("/containers/") && request.method() == http::verb::delete_)
            co_return co_await destroy(request,
                                       target.substr(std::string_view("/containers/").size()));
        if (target == "/containers" || target.starts_with("/containers/"))
            co_return refuse(request, "method_not_allowed", http::status::method_not_allowed,
                             "use POST or GET on /containers, DELETE on /containers/{uuid}");
        co_return refuse(request, "not_found", http::status::not_found,
                         "no such resource: " + std::string(target));
    }

    // POST /containers: checks the request, takes a place in the capacity,
    // provisions. Cancelling it (the client hung up) cancels the
    // provisioning, which destroys the domain: nothing is stored.
    asio::awaitable<outcome> create(const request_type& request) {
        const auto began = std::chrono::steady_clock::now();
        if (stopping_)
            co_return outcome{unavailable(request, "server_stopping", "the server is stopping")};
        const auto parsed = parse_container_request(request, settings_);
        if (const auto* refused = std::get_if<refusal>(&parsed))
            co_return outcome{refuse(request,
                                     refused->status == http::status::unsupported_media_type
                                         ? "unsupported_media_type"
                                         : "bad_request",
                                     refused->status, refused->message)};
        const auto& wanted = std::get<container_request>(parsed);

        anweddol::diagnostics diag;
        auto reserving =
            capacity_.reserve(wanted.memory_mib, diag, asio::as_tuple(asio::use_awaitable));
        auto [refused, place] = co_await std::move(reserving);
        if (refused == anweddol::errc::over_capacity)
            co_return outcome{
                unavailable(request, "over_capacity",
                            "no capacity for another container now: " + diag.client_message())};
        if (refused)
            co_return outcome{refuse(request, "capacity_check_failed",
                                     http::status::internal_server_error,
                                     "cannot check the capacity: " + refused.message() + ": " +
                                         diag.client_message() + " " + diag.server_message())};

        auto obtaining = obtain(wanted, diag);
        auto [failed, provisioned] = co_await std::move(obtaining);
        if (failed) {
            // provision() (or the pool) has destroyed the domain already;
            // the place goes back with `place`. A cancelled one is counted
            // by the caller, which knows why (the client hung up).
            if (failed != boost::system::errc::operation_canceled)
                metrics_.failed(failure_reason(failed));
            co_return outcome{error(request, http::status::internal_server_error,
                                    "the container could not be provisioned: " + failed.message() +
                                        ": " + diag.client_message())};
        }
        place.mark_booted();
        metrics_.handed_out(provisioned, takes_from_pool(wanted),
                            std::chrono::steady_clock::now() - began);
        const auto& container = provisioned.container;
        const std::string uuid = container->get_uuid();
        interface_.add_stored_container(container);
        handed_out_[uuid] = {provisioned.ip, provisioned.port, provisioned.username,
                             std::move(place)};
        auto response = reply(request.version(), request.keep_alive(), http::status::created,
                              json::object{{"uuid", uuid},
                                           {"ip", provisioned.ip},
                                           {"port", provisioned.port},
                                           {"username", provisioned.username},
                                           {"password", provisioned.password}});
        anweddol::detail::cleanse(provisioned.password);
        co_return outcome(std::move(response), uuid);
    }

    // A container for `wanted`: from the pool when it keeps such ones,
    // booted for the request otherwise. On failure or cancellation nothing
    // is left running.
    asio::awaitable<std::tuple<boost::system::error_code, anweddol::provisioned_container>>
    obtain(const container_request& wanted, anweddol::diagnostics& diag) {
        if (takes_from_pool(wanted))
            co_return co_await pool_->take(diag, asio::as_tuple(asio::use_awaitable));
        auto container = interface_.create_container(settings_.iso, false);
        container->set_memory(wanted.memory_mib); // within bounds: checked by the caller
        container->set_vcpus(wanted.vcpus);
        co_return co_await anweddol::provision(container, provisioning_options(), diag,
                                               asio::as_tuple(asio::use_awaitable));
    }

    // Destroys a container whose credentials never reached the client.
    asio::awaitable<void> discard(std::string uuid) {
        if (auto container = interface_.get_stored_container(uuid)) {
            // Its place goes back with `entry`, once the domain is gone.
            const auto entry = handed_out_.extract(uuid);
            interface_.delete_stored_container(uuid);
            if (container->is_domain_running())
                co_await container->stop_domain();
        }
    }

    // Connections register here, so that shutdown() can close them.
    class session {
    public:
        session(container_server& server, tcp::socket& socket)
            : server_(server)
            , socket_(socket) {
            server_.sessions_.insert(&socket_);
        }
        session(const session&) = delete;
        session& operator=(const session&) = delete;
        ~session() { server_.sessions_.erase(&socket_); }
        // Whether this one is beyond --max-connections.
        bool over_limit() const {
            return server_.sessions_.size() > server_.settings_.max_connections;
        }

    private:
        container_server& server_;
        tcp::socket& socket_;
    };

    // Closes every connection (which cancels their provisionings), destroys
    // the pool's containers and stops every container handed out.
    asio::awaitable<void> shutdown() {
        stopping_ = true;
        for (tcp::socket* socket : sessions_) {
            boost::system::error_code ignored;
            socket->shutdown(tcp::socket::shutdown_both, ignored);
            socket->close(ignored);
        }
        if (pool_) {
            auto stopping = pool_->shutdown(asio::as_tuple(asio::use_awaitable));
            auto [failed] = co_await std::move(stopping);
            std::cout << "pool: " << (failed ? "not shut down: " + failed.message() : "shut down")
                      << std::endl;
        }
        std::size_t destroyed = 0;
        for (const auto& uuid : interface_.list_stored_containers()) {
            auto container = interface_.get_stored_container(uuid);
            const auto entry = handed_out_.extract(uuid);
            interface_.delete_stored_container(uuid);
            if (container && container->is_domain_running()) {
                auto stopping = container->stop_domain(anweddol::stop_options{},
                                                       asio::as_tuple(asio::use_awaitable));
                auto [failed] = co_await std::move(stopping);
                if (failed)
                    std::cout << "container " << uuid
                              << " could not be destroyed: " << failed.message() << std::endl;
                else
                    ++destroyed;
            }
        }
        std::cout << "destroyed " << destroyed << " container(s)" << std::endl;
    }

private:
    struct handed_out {
        std::string ip;
        std::uint16_t port;
        std::string username;
        anweddol::container_capacity::reservation place;
    };

    // An error answer, counted among the failures under `reason`.
    response_type refuse(const request_type& request, std::string_view reason, http::status status,
                         const std::string& message) {
        metrics_.failed(reason);
        return error(request, status, message);
    }
    response_type unavailable(const request_type& request, std::string_view reason,
                              const std::string& message) {
        metrics_.failed(reason);
        return ::unavailable(request, settings_.retry_after, message);
    }

    // GET /metrics: the counters, and the gauges as they are now.
    response_type scrape(const request_type& request) {
        auto& admission = anweddol::runtime::of(interface_.get_executor()).admission();
        server_metrics::state now;
        now.running = handed_out_.size();
        now.capacity = capacity_.get_usage();
        now.capacity_limit = capacity_.get_options().max_containers;
        now.admission_waiting = admission.waiting();
        now.admission_booting = admission.booting();
        if (pool_)
            now.pool = pool_->get_stats();
        response_type response(http::status::ok, request.version());
        response.set(http::field::content_type, "text/plain; version=0.0.4");
        response.keep_alive(request.keep_alive());
        response.body() = metrics_.scrape(now);
        response.prepare_payload();
        return response;
    }

    // Whether a request for `wanted` takes its container from the pool: one
    // such as the pool keeps.
    bool takes_from_pool(const container_request& wanted) const {
        return pool_ && wanted.memory_mib == pool_memory_mib && wanted.vcpus == pool_vcpus;
    }

    anweddol::provisioning_options provisioning_options() const {
        anweddol::provisioning_options provisioning;
        provisioning.driver_uri = settings_.uri;
        provisioning.domain_type = settings_.domain_type;
        return provisioning;
    }

    anweddol::container_pool_options pool_options() const {
        anweddol::container_pool_options options;
        options.size = settings_.pool;
        options.iso_path = settings_.iso;
        options.memory = pool_memory_mib;
        options.vcpus = pool_vcpus;
        options.provisioning = provisioning_options();
        options.on_event = [](const anweddol::container_pool_event& event) {
            using type = anweddol::container_pool_event_type;
            if (event.type == type::boot_failed)
                std::cout << "pool: a boot failed (" << event.error.message() << "), next in "
                          << std::chrono::duration<double>(event.retry_in).count()
                          << " s: " << event.message << std::endl;
            else if (event.type == type::ready || event.type == type::recycled ||
                     event.type == type::lost)
                std::cout << "pool: " << event.uuid << " " << anweddol::to_string(event.type)
                          << std::endl;
        };
        return options;
    }

    response_type list(const request_type& request) {
        json::array containers;
        for (const auto& uuid : interface_.list_stored_containers()) {
            const auto& h = handed_out_.at(uuid);
            const bool running = interface_.get_stored_container(uuid)->is_domain_running();
            containers.push_back(json::object{{"uuid", uuid},
                                              {"ip", h.ip},
                                              {"port", h.port},
                                              {"username", h.username},
                                              {"running", running}});
        }
        return reply(request.version(), request.keep_alive(), http::status::ok, containers);
    }

    asio::awaitable<response_type> destroy(const request_type& request, std::string_view uuid) {
        if (!looks_like_uuid(uuid))
            co_return refuse(request, "bad_request", http::status::bad_request,
                             "not a UUID: " + std::string(uuid.substr(0, 64)));
        auto container = interface_.get_stored_container(uuid);
        if (!container)
            co_return refuse(request, "not_found", http::status::not_found,
                             "no container " + std::string(uuid));
        const std::string key(uuid);
        // Its place goes back with `entry`, once the domain is gone.
        const auto entry = handed_out_.extract(key);
        interface_.delete_stored_container(key);
        if (container->is_domain_running()) {
            auto stopping = container->stop_domain(anweddol::stop_options{},
                                                   asio::as_tuple(asio::use_awaitable));
            auto [failed] = co_await std::move(stopping);
            if (failed && container->is_domain_running())
                co_return refuse(request, "destroy_failed", http::status::internal_server_error,
                                 "container " + key +
                                     " could not be destroyed: " + failed.message() +
                                     "; it is no longer listed, and goes "
                                     "when the server stops");
        }
        response_type response(http::status::no_content, request.version());
        response.keep_alive(request.keep_alive());
        co_return response;
    }

    anweddol::virtualization_interface interface_;
    anweddol::container_capacity capacity_;
    server_settings settings_;
    server_metrics metrics_;
    std::map<std::string, handed_out> handed_out_;
    std::set<tcp::socket*> sessions_;
    bool stopping_ = false;
    // Last: destroyed first, with the containers it holds.
    std::unique_ptr<anweddol::container_pool> pool_;
};

// ---- Connections -----------------------------------------------------------

// Completes when the client hangs up (or its socket is closed) while its
// request is handled. What it sends meanwhile, a pipelined request, stays in
// `buffer` for later; one that sends more than `limit` bytes while it waits
// counts as gone.
asio::awaitable<void> watch_hangup(tcp::socket& socket, beast::flat_buffer& buffer,
                                   std::size_t limit,
                                   std::chrono::steady_clock::time_point& ended) {
    while (buffer.size() < limit) {
        auto reading = socket.async_read_some(buffer.prepare(limit - buffer.size()),
                                              asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec)
            break; // EOF, reset, or cancelled because the request is done
        buffer.commit(bytes);
    }
    ended = std::chrono::steady_clock::now();
}

// POST /containers, raced with the client's hang-up: whichever ends first
// cancels the other (a cancelled provisioning destroys its domain before it
// completes).
struct raced_outcome {
    bool hung_up = false;
    outcome result;
    // From the hang-up to the end of the cancelled provisioning.
    std::chrono::steady_clock::duration cancelling{};
};

asio::awaitable<raced_outcome> create_unless_hung_up(container_server& server, tcp::socket& socket,
                                                     beast::flat_buffer& buffer,
                                                     const request_type& request) {
    auto executor = co_await asio::this_coro::executor;
    auto creating = asio::co_spawn(executor, server.create(request), asio::deferred);
    std::chrono::steady_clock::time_point watch_ended;
    auto watching = asio::co_spawn(
        executor,
        watch_hangup(socket, buffer, server.settings().max_body_bytes + 8 * 1024, watch_ended),
        asio::deferred);
    auto racing = asio::experimental::make_parallel_group(std::move(creating), std::move(watching))
                      .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    auto [order, create_error, result, watch_error] = co_await std::move(racing);
    if (create_error)
        std::rethrow_exception(create_error);
    const bool hung_up = order[0] == 1;
    // The group completes once the cancelled provisioning has: the hang-up
    // was seen when the watcher finished, which it does at once.
    co_return raced_outcome{hung_up, std::move(result),
                            hung_up ? std::chrono::steady_clock::now() - watch_ended
                                    : std::chrono::steady_clock::duration{}};
}

// Answers a request that ends the connection, then closes it gently: the
// rest of what the client sent (an oversized body) is read and dropped for a
// moment first, or the kernel would reset the connection, and the client
// might lose the answer.
asio::awaitable<void> write_and_close(beast::tcp_stream& stream, response_type response) {
    response.keep_alive(false);
    stream.expires_after(std::chrono::seconds(5));
    auto writing = http::async_write(stream, response, asio::as_tuple(asio::use_awaitable));
    auto [written, size] = co_await std::move(writing);
    if (written)
        co_return;
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(std::chrono::seconds(2));
    std::array<char, 4096> sink;
    for (std::size_t drained = 0; drained < 64 * 1024;) {
        auto reading =
            stream.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec)
            break;
        drained += bytes;
    }
}

asio::awaitable<void> serve(tcp::socket socket, container_server& server) {
    beast::tcp_stream stream(std::move(socket));
    const container_server::session registered(server, stream.socket());
    const auto& settings = server.settings();
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(8 * 1024);
        parser.body_limit(settings.max_body_bytes);
        // The whole request, headers and body, within the timeout: a slow
        // client holds a connection for that long at most.
        stream.expires_after(settings.header_timeout);
        auto reading =
            http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec == http::error::body_limit) {
            server.metrics().failed("payload_too_large");
            co_return co_await write_and_close(
                stream, error(11, false, http::status::payload_too_large,
                              "the body may have " + std::to_string(settings.max_body_bytes) +
                                  " bytes at most"));
        }
        if (ec == http::error::header_limit) {
            server.metrics().failed("header_too_large");
            co_return co_await write_and_close(
                stream, error(11, false, http::status::request_header_fields_too_large,
                              "the request's headers may have 8 KiB at most"));
        }
        if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message) {
            server.metrics().failed("malformed_request");
            co_return co_await write_and_close(stream,
                                               error(11, false, http::status::bad_request,
                                                     "malformed HTTP request: " + ec.message()));
        }
        if (ec)
            co_return; // closed, timed out (the stream closed the socket), or reset
        const request_type request = parser.release();
        stream.expires_never(); // provisioning takes its own time

        std::optional<outcome> result;
        if (registered.over_limit()) {
            server.metrics().failed("too_many_connections");
            result = outcome{unavailable(
                request, settings.retry_after,
                "too many connections: " + std::to_string(settings.max_connections) + " at most")};
            result->response.keep_alive(false);
        } else if (request.target() == "/containers" && request.method() == http::verb::post) {
            const auto began = std::chrono::steady_clock::now();
            auto raced = co_await create_unless_hung_up(server, stream.socket(), buffer, request);
            const double seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
            if (raced.hung_up) {
                server.metrics().failed("client_hung_up");
                std::cout << "POST /containers: the client hung up after " << seconds
                          << " s; its provisioning was cancelled in "
                          << std::chrono::duration<double>(raced.cancelling).count() << " s"
                          << std::endl;
                // Provisioning may have finished before the cancellation
                // reached it: nobody will see those credentials.
                if (!raced.result.created_uuid.empty())
                    co_await server.discard(raced.result.created_uuid);
                co_return;
            }
            result = std::move(raced.result);
            std::cout << "POST /containers: " << result->response.result_int()
                      << (result->created_uuid.empty() ? "" : " " + result->created_uuid) << " in "
                      << seconds << " s" << std::endl;
        } else {
            // Awaited on its own line: GCC 12 mishandles a co_await inside
            // a braced initializer.
            auto handling = server.handle(request);
            auto handled = co_await std::move(handling);
            result = outcome(std::move(handled));
        }
        stream.expires_after(std::chrono::seconds(30));
        auto writing =
            http::async_write(stream, result->response, asio::as_tuple(asio::use_awaitable));
        auto [written, size] = co_await std::move(writing);
        if (written) {
            if (!result->created_uuid.empty()) {
                server.metrics().failed("undeliverable");
                std::cout << "POST /containers: the 201 of " << result->created_uuid
                          << " could not be delivered (" << written.message() << "); destroying it"
                          << std::endl;
                co_await server.discard(result->created_uuid);
            }
            co_return;
        }
        if (!result->response.keep_alive())
            co_return;
    }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor, container_server& server) {
    for (;;) {
        auto accepting = acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        auto [ec, socket] = co_await std::move(accepting);
        if (ec == asio::error::operation_aborted || !acceptor.is_open())
            co_return; // shutting down
        if (ec)
            continue; // out of descriptors, or a connection reset before it was accepted
        asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), server), asio::detached);
    }
}

} // namespace

int main(int argc, char** argv) {
    const server_settings settings = parse_command_line(argc, argv);
    asio::io_context context;
    container_server server(context.get_executor(), settings);
    tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), settings.port});
    const auto& capacity = settings.capacity;
    std::cout << "serving on http://127.0.0.1:" << acceptor.local_endpoint().port()
              << "/containers; capacity: "
              << (capacity.max_containers ? std::to_string(capacity.max_containers) : "unlimited")
              << " container(s)"
              << (settings.pool
                      ? " for clients + " + std::to_string(settings.pool) + " in the warm pool"
                      : "")
              << ", "
              << (capacity.check_memory
                      ? "free memory less what boots, keeping " +
                            std::to_string(capacity.memory_headroom_mib) + " MiB for the host"
                      : "memory not checked")
              << std::endl;
    asio::co_spawn(context, listen(acceptor, server), asio::detached);

    asio::signal_set signals(context, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) {
        acceptor.close();
        asio::co_spawn(context, server.shutdown(), asio::detached);
    });
    context.run(); // returns once the server shut down and its containers are gone
    return 0;
}
