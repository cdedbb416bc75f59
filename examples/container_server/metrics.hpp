// What the server counts, for GET /metrics in Prometheus's text format.
#ifndef CONTAINER_SERVER_METRICS_HPP
#define CONTAINER_SERVER_METRICS_HPP

#include <anweddol/container_capacity.hpp>
#include <anweddol/container_pool.hpp>
#include <anweddol/error.hpp>
#include <anweddol/provisioning.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace example {

// A short label for what went wrong, the same from one version to the next,
// for anweddol_request_failures_total{reason}: anweddol's own errors by the
// name of their errc, libvirt's and libssh's by their library.
inline std::string_view failure_reason(const boost::system::error_code& ec) {
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
        case errc::network_isolation_unavailable:
            return "network_isolation_unavailable";
        case errc::console_host_keys_missing:
            return "console_host_keys_missing";
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
        std::size_t connections = 0;
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
                           .Register(registry_))
        , connections_open_(gauge("anweddol_connections_open",
                                  "Client connections open (at most --max-connections)"))
        , connections_evicted_(
              counter("anweddol_connections_evicted_total",
                      "Connections closed while waiting for a request, to make room for a new one "
                      "(beyond --max-connections, or out of file descriptors)"))
        , accept_failures_(counter("anweddol_accept_failures_total",
                                   "Accepts that failed (out of file descriptors, EMFILE or "
                                   "ENFILE, or of memory), each followed by a back-off"))
        , expired_(counter("anweddol_containers_expired_total",
                           "Containers destroyed at the end of their --max-lifetime")) {
        // Each series exists from the start, at 0, so that rate() and
        // increase() see its first event.
        for (std::string_view reason : failure_reasons)
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

    void connection_evicted() { connections_evicted_.Increment(); }
    void accept_failed() { accept_failures_.Increment(); }
    void expired() { expired_.Increment(); }

    void failed(std::string_view reason) {
        failures_.Add({{"reason", std::string(reason)}}).Increment();
    }

    // Everything, in the text exposition format (version 0.0.4).
    std::string scrape(const state& now) {
        running_.Set(static_cast<double>(now.running));
        connections_open_.Set(static_cast<double>(now.connections));
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

    // The reasons a request fails, each a series from the start.
    static constexpr std::array<std::string_view, 28> failure_reasons{
        "bad_request",
        "unauthorized",
        "host_not_allowed",
        "origin_not_allowed",
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
        "destroy_failed",
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
    prometheus::Gauge& connections_open_;
    prometheus::Counter& connections_evicted_;
    prometheus::Counter& accept_failures_;
    prometheus::Counter& expired_;
    std::optional<pool_metrics> pool_;
};

} // namespace example

#endif
