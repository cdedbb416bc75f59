//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_ASYNC_PLACE_HPP
#define ANWEDDOL_DETAIL_ASYNC_PLACE_HPP

#include <utility>

namespace anweddol::detail {

/// A place taken from `Owner` (a boot in the admission, a slot of a
/// semaphore), given back by `Owner::release()` when this is destroyed or
/// reset: moved around, never copied, never given back twice. Only the
/// owner hands places out.
template <class Owner>
class place {
public:
    place() = default;
    place(place&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)) {}
    place& operator=(place&& other) noexcept {
        if (this != &other) {
            reset();
            owner_ = std::exchange(other.owner_, nullptr);
        }
        return *this;
    }
    ~place() { reset(); }

    /// Gives the place back now.
    void reset() noexcept {
        if (auto* owner = std::exchange(owner_, nullptr))
            owner->release();
    }
    explicit operator bool() const noexcept { return owner_ != nullptr; }

private:
    friend Owner;
    explicit place(Owner* owner) noexcept
        : owner_(owner) {}
    Owner* owner_ = nullptr;
};

} // namespace anweddol::detail

#endif
