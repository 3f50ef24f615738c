// failover::verify_proof (a server's answer to the client's proof request) on arbitrary bytes,
// against the public key of service ORDERS and a fixed nonce.
// Property: an answer is accepted only if it carries exactly the signature the service key makes
// for its epoch (Ed25519 signatures are deterministic, and libsodium refuses non-canonical ones:
// no second signature for the same message passes), and the epoch returned is the one signed.
#include <cstring>

#include "cluster/member_auth.hpp"
#include "failover/server_proof.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "tests/fuzz/fuzz_keys.hpp"
#include "transport/frame.hpp"

using namespace viaduct;

namespace {
const cluster::ClusterKey& cluster_key() {
  return fuzz::fixed_cluster_key();
}
constexpr std::string_view kName = fuzz::kFuzzServiceName;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const failover::PublicKey public_key = cluster_key().service_public_key(kName);
  static const failover::ProofNonce nonce = fuzz::fixed_proof_nonce();
  auto in = fuzz::bytes_of(data, size);

  auto epoch = failover::verify_proof(in, public_key, kName, nonce);
  if (!epoch) {
    FUZZ_CHECK(epoch.status().code() == Code::kMalformed ||
               epoch.status().code() == Code::kUnauthenticated);
    return 0;
  }
  FUZZ_CHECK(in.size() == failover::kProofAnswerBytes);
  FUZZ_CHECK(epoch.value() == transport::load_le<std::uint64_t>(in.data() + 8));
  std::array<std::byte, failover::kProofAnswerBytes> signed_answer;
  cluster_key().sign_proof(kName, nonce, epoch.value(), signed_answer);
  FUZZ_CHECK(std::memcmp(signed_answer.data() + 16, in.data() + 16, failover::kSignatureBytes) ==
             0);
  // The same answer for another nonce or another name proves nothing.
  failover::ProofNonce other = nonce;
  other[0] ^= std::byte{1};
  FUZZ_CHECK(!failover::verify_proof(in, public_key, kName, other));
  FUZZ_CHECK(!failover::verify_proof(in, public_key, "ORDERZ", nonce));
  return 0;
}
