// The member handshake (cluster/member_auth.hpp) on arbitrary bytes, from both sides.
//
// Input: a sequence of messages, each a length byte and that many bytes. The acceptor's side
// (MemberHandshake::answer) reads them in turn, as the requests of one member connection, until
// it fails (the server then closes the connection); the connector's side
// (member_handshake_step2) takes the first message as the acceptor's answer to its step 1.
// Properties: nothing is ever authenticated without the key (the acceptor's nonce is fresh each
// run, so no input can carry a MAC for it); the acceptor answers step 1 with exactly a nonce and
// a MAC, and step 2 with nothing; the connector goes on only with an answer whose MAC the key
// made, and its step 2 is then the one the acceptor accepts.
#include <cstring>

#include "cluster/member_auth.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "tests/fuzz/fuzz_keys.hpp"

using namespace viaduct::cluster;

namespace {

const ClusterKey& cluster_key() {
  return viaduct::fuzz::fixed_cluster_key();
}
constexpr std::string_view kName = viaduct::fuzz::kFuzzServiceName;

// Once: the honest handshake authenticates, so that "never authenticated" above is not vacuous.
bool honest_handshake_authenticates() {
  MemberNonce nonce_c{};
  nonce_c[0] = std::byte{1};
  MemberHandshake acceptor;
  auto answer1 = acceptor.answer(member_handshake_step1(nonce_c), cluster_key(), kName);
  if (!answer1) return false;
  auto step2 = member_handshake_step2(*answer1, cluster_key(), kName, nonce_c);
  if (!step2) return false;
  return acceptor.answer(step2.value(), cluster_key(), kName) && acceptor.authenticated();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool honest_ok = honest_handshake_authenticates();
  FUZZ_CHECK(honest_ok);
  auto in = viaduct::fuzz::bytes_of(data, size);
  const ClusterKey& key = cluster_key();

  MemberHandshake acceptor;
  std::size_t at = 0;
  while (at < in.size()) {
    std::size_t len = std::to_integer<std::size_t>(in[at++]);
    auto message = in.subspan(at, std::min(len, in.size() - at));
    at += message.size();
    bool was_challenged_with_step1 = message.size() == kMemberStep1Bytes;
    auto reply = acceptor.answer(message, key, kName);
    if (!reply) break;
    FUZZ_CHECK(MemberHandshake::is_handshake(message));
    FUZZ_CHECK(!acceptor.authenticated());
    FUZZ_CHECK(was_challenged_with_step1);
    FUZZ_CHECK(reply->size() == kMemberAnswer1Bytes);
  }
  FUZZ_CHECK(!acceptor.authenticated());

  // The connector, with a fixed nonce: the first message as the acceptor's answer.
  const MemberNonce nonce_c = viaduct::fuzz::fixed_member_nonce();
  std::size_t len = in.empty() ? 0 : std::to_integer<std::size_t>(in[0]);
  auto answer1 = in.empty() ? in : in.subspan(1, std::min(len, in.size() - 1));
  auto step2 = member_handshake_step2(answer1, key, kName, nonce_c);
  if (step2) {
    FUZZ_CHECK(answer1.size() == kMemberAnswer1Bytes);
    // What the key made: the acceptor's MAC over this nonce pair is the one in the answer...
    std::array<std::byte, 3 + 1 + 6 + 2 * kMemberNonceBytes> transcript{};
    std::memcpy(transcript.data(), "acc", 3);
    transcript[3] = static_cast<std::byte>(kName.size());
    std::memcpy(transcript.data() + 4, kName.data(), kName.size());
    std::memcpy(transcript.data() + 10, nonce_c.data(), kMemberNonceBytes);
    std::memcpy(transcript.data() + 10 + kMemberNonceBytes, answer1.data(), kMemberNonceBytes);
    FUZZ_CHECK(key.verify(transcript, answer1.subspan(kMemberNonceBytes)));
    // ...and the step 2 the connector then sends is a handshake message of the right size.
    FUZZ_CHECK(MemberHandshake::is_handshake(step2.value()));
  } else {
    FUZZ_CHECK(step2.status().code() == viaduct::Code::kUnauthenticated);
  }
  return 0;
}
