// transport::decode_hello (the channel hello in connect / accept private data) on arbitrary bytes.
// Property: decode(encode(x)) == x, and the encoding matches the input except the reserved u16
// and the padding after the application bytes (rdma_cm pads private data), which decode ignores.
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "transport/frame.hpp"

using namespace viaduct::transport;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = viaduct::fuzz::bytes_of(data, size);
  ChannelHello hello;
  if (!decode_hello(in, &hello).is_ok()) return 0;

  FUZZ_CHECK(hello.recv_slots >= 2);
  FUZZ_CHECK(hello.app.size() <= size - kHelloBytes);
  FUZZ_CHECK(hello.app.data() == in.data() + kHelloBytes);

  std::vector<std::byte> out(kHelloBytes + hello.app.size());
  FUZZ_CHECK(encode_hello(hello, out) == out.size());
  FUZZ_CHECK(viaduct::fuzz::same_bytes(std::span(out).first(14), in.first(14)));
  FUZZ_CHECK(viaduct::fuzz::same_bytes(std::span(out).subspan(kHelloBytes), hello.app));

  ChannelHello again;
  FUZZ_CHECK(decode_hello(out, &again).is_ok());
  FUZZ_CHECK(again.recv_slots == hello.recv_slots);
  FUZZ_CHECK(again.eager_threshold == hello.eager_threshold);
  FUZZ_CHECK(viaduct::fuzz::same_bytes(again.app, hello.app));
  return 0;
}
