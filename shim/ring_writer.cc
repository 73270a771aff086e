#include "shim/ring_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/ring.h"
#include "shim/hooks.h"

namespace closeaudit::shim {

bool RingWriter::Create(uint32_t slot_count, uint32_t arena_bytes) {
  uint64_t total = wire::kRingHeaderBytes +
                   uint64_t{slot_count} * sizeof(wire::Slot) + arena_bytes;
  int fd = static_cast<int>(Real().syscall(
      SYS_memfd_create, "closeaudit-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0) return false;
  if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
    Real().close(fd);
    return false;
  }
  // The collector maps this file too; sealing its size means no process can
  // shrink it under the collector and make it fault.
  fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) {
    Real().close(fd);
    return false;
  }
  auto* header = static_cast<wire::RingHeader*>(mem);
  header->magic = wire::kRingMagic;
  header->version = wire::kWireVersion;
  header->slot_bytes = sizeof(wire::Slot);
  header->slot_count = slot_count;
  header->arena_offset =
      wire::kRingHeaderBytes + uint64_t{slot_count} * sizeof(wire::Slot);
  header->arena_bytes = arena_bytes;
  header->arena_used = 8;  // offset 0 means "no blob"
  // The memfd lives only until the hello that hands it over has been tried
  // (see Register in transport.h), in the same call into the shim.
  struct stat st;
  fd_inode_ = fstat(fd, &st) == 0 ? st.st_ino : 0;
  static std::atomic<uint32_t> generations{0};
  generation_ = generations.fetch_add(1, std::memory_order_relaxed) + 1;
  header_ = header;
  slots_ = reinterpret_cast<wire::Slot*>(static_cast<uint8_t*>(mem) +
                                         wire::kRingHeaderBytes);
  arena_ = static_cast<uint8_t*>(mem) + header->arena_offset;
  slot_count_ = slot_count;
  shift_ = ring::Log2(slot_count);
  arena_bytes_ = arena_bytes;
  total_bytes_ = total;
  fd_ = fd;
  return true;
}

void RingWriter::Abandon() {
  if (header_) munmap(header_, total_bytes_);
  Forget();
}

void RingWriter::Forget() {
  header_ = nullptr;
  slots_ = nullptr;
  arena_ = nullptr;
  fd_ = -1;  // a fork child's copy of the fd, if any, is closed by the caller
}

uint64_t RingWriter::written() const {
  if (!header_) return 0;
  return ring::Atomic(header_->write_pos).load(std::memory_order_relaxed);
}

uint64_t RingWriter::dropped() const {
  if (!header_) return 0;
  return ring::Atomic(header_->dropped_events).load(std::memory_order_relaxed);
}

void RingWriter::CountDropped(uint64_t n) {
  if (header_) {
    ring::Atomic(header_->dropped_events).fetch_add(n, std::memory_order_relaxed);
  }
}

uint64_t RingWriter::consumer_heartbeat() const {
  if (!header_) return 0;
  return ring::Atomic(header_->consumer_heartbeat_ns)
      .load(std::memory_order_relaxed);
}

bool RingWriter::FdStillOurs() const {
  struct stat st;
  return fd_ >= 0 && fstat(fd_, &st) == 0 && st.st_ino == fd_inode_;
}

int RingWriter::ReleaseFd() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

bool RingWriter::Push(const wire::Event& event) {
  if (!header_) return false;
  return ring::Push(header_, slots_, slot_count_, shift_, &event);
}

uint32_t RingWriter::AllocBlob(uint32_t bytes, void** out) {
  if (!header_ || bytes > arena_bytes_) return 0;  // also keeps AlignBlob from wrapping
  bytes = wire::AlignBlob(bytes);
  uint64_t offset = ring::Atomic(header_->arena_used)
                        .fetch_add(bytes, std::memory_order_relaxed);
  if (offset + bytes > arena_bytes_) {
    ring::Atomic(header_->dropped_blobs).fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  *out = arena_ + offset;
  return static_cast<uint32_t>(offset);
}

}  // namespace closeaudit::shim
