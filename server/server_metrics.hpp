// What anweddol-server counts, for GET /metrics on the REST port in
// Prometheus's text format (prometheus-cpp's registry and serializer).
// Events are counted as they happen; the gauges are read at each scrape.
#ifndef ANWEDDOL_SERVER_SERVER_METRICS_HPP
#define ANWEDDOL_SERVER_SERVER_METRICS_HPP

#include <anweddol/container_pool.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

namespace anweddol::server {

class server_metrics {
public:
    // The gauges, as they are when scraped.
    struct state {
        std::size_t containers = 0;     // handed out and running
        std::size_t capacity_limit = 0; // 0: none
        std::optional<container_pool_stats> pool;
    };

    server_metrics()
        : registry_(std::make_shared<prometheus::Registry>())
        , requests_(prometheus::BuildCounter()
                        .Name("anweddol_server_requests_total")
                        .Help("Requests served, by verb and transport")
                        .Register(*registry_))
        , refusals_(prometheus::BuildCounter()
                        .Name("anweddol_server_refusals_total")
                        .Help("CREATE and DESTROY requests refused or failed, by reason")
                        .Register(*registry_))
        , ends_(prometheus::BuildCounter()
                    .Name("anweddol_server_container_ends_total")
                    .Help("Containers ended, by why: destroyed (DESTROY), expired (maximum "
                          "lifetime), stopped (their domain stopped by itself)")
                    .Register(*registry_))
        , create_seconds_(prometheus::BuildHistogram()
                              .Name("anweddol_server_create_seconds")
                              .Help("Time from a CREATE's arrival to its answer, by whether "
                                    "the container came from the warm pool")
                              .Register(*registry_))
        , gauges_(prometheus::BuildGauge()
                      .Name("anweddol_server_containers")
                      .Help("Containers now: handed_out, capacity (0: no limit), pool_ready, "
                            "pool_booting")
                      .Register(*registry_)) {}

    void request(std::string_view verb, std::string_view transport) {
        requests_.Add({{"verb", std::string(verb)}, {"transport", std::string(transport)}})
            .Increment();
    }
    void refused(std::string_view reason) {
        refusals_.Add({{"reason", std::string(reason)}}).Increment();
    }
    void created(bool warm, std::chrono::steady_clock::duration took) {
        create_seconds_
            .Add({{"warm", warm ? "true" : "false"}},
                 prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40,
                                                         80, 160})
            .Observe(std::chrono::duration<double>(took).count());
    }
    void destroyed() { ends_.Add({{"why", "destroyed"}}).Increment(); }
    void expired() { ends_.Add({{"why", "expired"}}).Increment(); }
    void stopped_by_itself() { ends_.Add({{"why", "stopped"}}).Increment(); }

    std::string scrape(const state& now) {
        gauges_.Add({{"state", "handed_out"}}).Set(double(now.containers));
        gauges_.Add({{"state", "capacity"}}).Set(double(now.capacity_limit));
        if (now.pool) {
            gauges_.Add({{"state", "pool_ready"}}).Set(double(now.pool->ready));
            gauges_.Add({{"state", "pool_booting"}}).Set(double(now.pool->booting));
        }
        std::ostringstream out;
        prometheus::TextSerializer().Serialize(out, registry_->Collect());
        return out.str();
    }

private:
    std::shared_ptr<prometheus::Registry> registry_;
    prometheus::Family<prometheus::Counter>& requests_;
    prometheus::Family<prometheus::Counter>& refusals_;
    prometheus::Family<prometheus::Counter>& ends_;
    prometheus::Family<prometheus::Histogram>& create_seconds_;
    prometheus::Family<prometheus::Gauge>& gauges_;
};

} // namespace anweddol::server

#endif
