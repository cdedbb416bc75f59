// The bounds on connections: how many are open at once, which one makes
// room for a newcomer, and how accept waits when the process is out of
// descriptors. Decisions only; the caller closes what they name.
#ifndef CONTAINER_SERVER_CONNECTIONS_HPP
#define CONTAINER_SERVER_CONNECTIONS_HPP

#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <list>
#include <optional>

namespace example {

using tcp = boost::asio::ip::tcp;

// The open connections, each idle (waiting for its next request, perhaps
// sending it slowly) or busy (its request is being handled or answered).
// At most `limit` at once. A connection beyond the limit takes the place of
// the oldest idle one, which is closed: idle connections, however many a
// client holds open, never keep a request out, and a slow sender loses its
// place to whoever sends a request. When every connection is busy, the new
// one is refused.
class connection_table {
public:
    enum class state { idle, busy, evicted };
    struct entry {
        tcp::socket* socket;
        state where;
    };
    using handle = std::list<entry>::iterator;

    struct admission {
        std::optional<handle> admitted; // nullopt: refused, every connection is busy
        tcp::socket* evicted = nullptr; // to close: its place went to the new one
    };

    explicit connection_table(std::size_t limit)
        : limit_(limit) {}

    admission admit(tcp::socket& socket) {
        admission result;
        if (size() >= limit_) {
            result.evicted = evict_oldest_idle();
            if (!result.evicted)
                return result;
        }
        idle_.push_back({&socket, state::idle});
        result.admitted = std::prev(idle_.end());
        return result;
    }

    // The oldest idle connection, taken out of the count; nullptr if none.
    tcp::socket* evict_oldest_idle() {
        if (idle_.empty())
            return nullptr;
        evicted_.splice(evicted_.end(), idle_, idle_.begin());
        evicted_.back().where = state::evicted;
        return evicted_.back().socket;
    }

    // Idle from now: the youngest idle one, the last to be evicted.
    void set_idle(handle h) { move(h, idle_, state::idle); }
    void set_busy(handle h) { move(h, busy_, state::busy); }
    void remove(handle h) { list_of(h->where).erase(h); }

    std::size_t size() const { return idle_.size() + busy_.size(); }

    template <class Function>
    void for_each_socket(Function f) const {
        for (const auto* list : {&idle_, &busy_, &evicted_})
            for (const auto& e : *list)
                f(*e.socket);
    }

private:
    std::list<entry>& list_of(state s) {
        return s == state::idle ? idle_ : s == state::busy ? busy_ : evicted_;
    }
    void move(handle h, std::list<entry>& to, state s) {
        if (h->where == state::evicted)
            return; // closed already: it only waits to see it
        to.splice(to.end(), list_of(h->where), h);
        h->where = s;
    }

    std::size_t limit_;
    std::list<entry> idle_; // oldest first
    std::list<entry> busy_;
    std::list<entry> evicted_;
};

// How long accept waits after a failure (out of descriptors, EMFILE or
// ENFILE, or of memory) before it tries again: 100 ms, doubling to 1 s,
// back to none after a success. Retrying at once would spin: the pending
// connection stays in the backlog and the next accept fails the same way.
class accept_backoff {
public:
    std::chrono::milliseconds failed() {
        using namespace std::chrono_literals;
        delay_ = delay_ == 0ms ? 100ms : std::min<std::chrono::milliseconds>(2 * delay_, 1s);
        return delay_;
    }
    void succeeded() { delay_ = {}; }

private:
    std::chrono::milliseconds delay_{};
};

} // namespace example

#endif
