// transport::decode_frame on arbitrary bytes. Property: a frame that decodes re-encodes to exactly
// the same bytes (the decoder checks every header bit, so nothing is ignored), and what it accepts
// stays within the limits it was given.
#include <cstring>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "transport/frame.hpp"

namespace {

using namespace viaduct::transport;

// Small limits, so that short inputs reach both "over the eager threshold" and the rendezvous
// range checks.
constexpr std::uint32_t kMaxEager = 64;
constexpr std::uint64_t kMaxRendezvous = 1 << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  FrameHeader h;
  RendezvousRef ref;
  if (!decode_frame(in, kMaxEager, kMaxRendezvous, &h, &ref).is_ok()) return 0;

  FUZZ_CHECK(h.payload_len == size - kFrameHeaderBytes);
  bool rendezvous = (h.flags & kFlagRendezvous) != 0;
  if (rendezvous) {
    FUZZ_CHECK(h.payload_len == kRendezvousRefBytes);
    FUZZ_CHECK(ref.length > kMaxEager && ref.length <= kMaxRendezvous);
  } else {
    FUZZ_CHECK(h.payload_len <= kMaxEager);
  }

  std::vector<std::byte> out(kFrameHeaderBytes + h.payload_len);
  encode_header(h, out.data());
  if (rendezvous) {
    encode_rendezvous(ref, out.data() + kFrameHeaderBytes);
  } else if (h.payload_len != 0) {
    std::memcpy(out.data() + kFrameHeaderBytes, data + kFrameHeaderBytes, h.payload_len);
  }
  FUZZ_CHECK(viaduct::fuzz::same_bytes(out, in));
  return 0;
}
