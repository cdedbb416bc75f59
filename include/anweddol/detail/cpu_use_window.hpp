//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_CPU_USE_WINDOW_HPP
#define ANWEDDOL_DETAIL_CPU_USE_WINDOW_HPP

#include <chrono>
#include <deque>
#include <utility>

namespace anweddol::detail {

/// Tells from readings of a guest's CPU time when it stopped being
/// CPU-heavy: its use over the last `window` fell below `threshold` cores.
/// A boot under software emulation is busy for seconds and then mostly
/// waits (for DHCP, for timers): the admission lets the next boot in then.
class cpu_use_window {
public:
    using clock = std::chrono::steady_clock;

    cpu_use_window(clock::duration window, double threshold)
        : window_(window)
        , threshold_(threshold) {}

    /// Adds a reading (at `when`, `used` in all since the guest started)
    /// and says whether the guest used less than the threshold over the
    /// whole last window. False until the readings span a window.
    bool light_after(clock::time_point when, std::chrono::nanoseconds used) {
        samples_.emplace_back(when, used);
        // Keep the newest reading at least a window old as the base.
        while (samples_.size() > 1 && samples_[1].first <= when - window_)
            samples_.pop_front();
        const auto& [since, base] = samples_.front();
        const auto span = when - since;
        if (span < window_ || span <= clock::duration::zero())
            return false;
        const double cores = std::chrono::duration<double>(used - base).count() /
                             std::chrono::duration<double>(span).count();
        return cores < threshold_;
    }

private:
    clock::duration window_;
    double threshold_;
    std::deque<std::pair<clock::time_point, std::chrono::nanoseconds>> samples_;
};

} // namespace anweddol::detail

#endif
