//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_EVENT_ROUTER_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_EVENT_ROUTER_HPP

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace anweddol {

/// A domain's lifecycle change, as libvirt reports it
/// (VIR_DOMAIN_EVENT_ID_LIFECYCLE).
struct domain_lifecycle_event {
    std::string uuid;
    std::string name;
    int event = 0;  ///< a virDomainEventType: VIR_DOMAIN_EVENT_STARTED, _STOPPED, ...
    int detail = 0; ///< the event's detail, such as VIR_DOMAIN_EVENT_STOPPED_DESTROYED
};

namespace detail {

/// Who hears of a connection's events, indexed by domain UUID: an event
/// reaches the subscribers of its own domain (and the few that asked for
/// every domain), never every subscriber of the connection, so the cost of
/// an event does not grow with the number of containers. Handlers are held
/// once and posted to their executor; nothing is copied per subscriber.
/// Thread-safe.
///
/// Posted, never run inline, and posted under the lock: libvirt may report
/// a connection's events from more than one thread (test:///'s one event
/// timer per process fires on whichever io_context re-armed it), and a call
/// run inline on one thread would overtake one queued earlier from another.
/// Posting in publish order keeps a subscriber's events in libvirt's order,
/// and once remove() returned nothing more is posted to that subscriber's
/// executor (whose io_context may then go away).
class domain_event_router {
public:
    struct subscriber {
        std::string uuid; ///< empty: every domain
        boost::asio::any_io_executor executor;
        std::function<void(const domain_lifecycle_event&)> on_event;
        std::function<void(int)> on_close;
        // Cleared on unsubscribe: a call already on its way is then dropped.
        std::atomic<bool> active{true};
    };
    using subscriber_ptr = std::shared_ptr<subscriber>;

    void add(const subscriber_ptr& s) {
        std::lock_guard lock(mutex_);
        if (s->on_close)
            close_watchers_.push_back(s);
        else if (s->uuid.empty())
            every_domain_.push_back(s);
        else
            by_uuid_.emplace(s->uuid, s);
    }

    void remove(const subscriber_ptr& s) {
        s->active = false;
        std::lock_guard lock(mutex_);
        std::erase(close_watchers_, s);
        std::erase(every_domain_, s);
        auto [first, last] = by_uuid_.equal_range(s->uuid);
        for (auto it = first; it != last; ++it)
            if (it->second == s) {
                by_uuid_.erase(it);
                break;
            }
    }

    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return by_uuid_.size() + every_domain_.size() + close_watchers_.size();
    }

    void publish(domain_lifecycle_event event) {
        std::lock_guard lock(mutex_);
        auto [first, last] = by_uuid_.equal_range(event.uuid);
        if (first == last && every_domain_.empty())
            return;
        auto shared = std::make_shared<const domain_lifecycle_event>(std::move(event));
        for (auto it = first; it != last; ++it)
            deliver(it->second, [shared](const subscriber& s) { s.on_event(*shared); });
        for (const auto& target : every_domain_)
            deliver(target, [shared](const subscriber& s) { s.on_event(*shared); });
    }

    void publish_close(int reason) {
        std::lock_guard lock(mutex_);
        for (const auto& target : close_watchers_)
            deliver(target, [reason](const subscriber& s) { s.on_close(reason); });
    }

private:
    // Under mutex_. A subscription dropped after the post still drops the call.
    template <class Call>
    static void deliver(const subscriber_ptr& target, Call call) {
        boost::asio::post(target->executor, [target, call = std::move(call)] {
            if (target->active.load())
                call(*target);
        });
    }

    mutable std::mutex mutex_;
    std::unordered_multimap<std::string, subscriber_ptr> by_uuid_;
    std::vector<subscriber_ptr> every_domain_;
    std::vector<subscriber_ptr> close_watchers_;
};

} // namespace detail
} // namespace anweddol

#endif
