// What the benchmarks compute the same way from their measurements.
#ifndef ANWEDDOL_BENCHMARKS_COMMON_STATISTICS_HPP
#define ANWEDDOL_BENCHMARKS_COMMON_STATISTICS_HPP

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace anweddol::bench {

inline double seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

/// The p-th quantile (0 <= p <= 1), interpolated between the two nearest
/// ranks (so the median of an even count is the mean of the middle two);
/// 0 for no values.
inline double percentile(std::vector<double> values, double p) {
    if (values.empty())
        return 0;
    std::sort(values.begin(), values.end());
    const double rank = p * static_cast<double>(values.size() - 1);
    const auto low = static_cast<std::size_t>(rank);
    const auto high = std::min(low + 1, values.size() - 1);
    return values[low] + (values[high] - values[low]) * (rank - static_cast<double>(low));
}

} // namespace anweddol::bench

#endif
