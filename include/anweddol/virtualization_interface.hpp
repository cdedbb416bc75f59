//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_VIRTUALIZATION_INTERFACE_HPP
#define ANWEDDOL_VIRTUALIZATION_INTERFACE_HPP

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/config.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol {

/// Makes containers and keeps the ones a server hands out, by UUID.
///
/// Use it from its executor only: the store is not synchronised. Destroying
/// it destroys the running domains of the containers it stores, in the
/// background (their domains are gone soon after; the calling thread does
/// not wait for libvirt).
class virtualization_interface {
public:
    explicit virtualization_interface(boost::asio::any_io_executor ex)
        : executor_(std::move(ex)) {}
    virtualization_interface(const virtualization_interface&) = delete;
    virtualization_interface& operator=(const virtualization_interface&) = delete;
    ~virtualization_interface();

    const boost::asio::any_io_executor& get_executor() const noexcept { return executor_; }

    std::size_t get_stored_containers_amount() const noexcept { return containers_.size(); }
    /// The stored UUIDs, in lexicographic order.
    std::vector<std::string> list_stored_containers() const;

    /// A new container on this interface's executor, booting `iso_path`,
    /// with a fresh UUID and the reference's defaults; stored if `store`.
    std::shared_ptr<container_instance> create_container(std::string iso_path, bool store = true);

    /// The stored container with that UUID, or nullptr.
    std::shared_ptr<container_instance> get_stored_container(std::string_view uuid) const;

    /// Stores `container`. Errors: errc::container_already_stored when one
    /// with its UUID is stored; errc::invalid_argument for nullptr. Either
    /// way the store is unchanged.
    void add_stored_container(std::shared_ptr<container_instance> container);

    /// Forgets the container with that UUID (a no-op when none is stored). Its
    /// domain keeps running while someone else holds the container.
    void delete_stored_container(std::string_view uuid);

private:
    boost::asio::any_io_executor executor_;
    std::map<std::string, std::shared_ptr<container_instance>, std::less<>> containers_;
};

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/virtualization_interface.ipp>
#endif

#endif
