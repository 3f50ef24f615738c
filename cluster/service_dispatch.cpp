#include "cluster/service_dispatch.hpp"

#include <cstring>

#include "failover/request_header.hpp"

namespace viaduct::cluster {

void ServiceServer::Dispatcher::on_request(transport::Channel& channel,
                                           const transport::IncomingRequest& request) {
  if (is_partner_channel(channel)) {
    owner_->on_member_request(channel, request);
    return;
  }
  if (owner_->role_.role != Role::kActive) {
    (void)channel.respond(request.request_id, {}, kAppStatusNotActive);
    return;
  }
  // Paused with an in-sync passive (may_be_replaced_): requests are still executed, but their
  // answers wait for the passive's acknowledgement as always, and this instance does not serve
  // alone until it has heard the passive again (a passive that took over refuses the replicas,
  // and we step down). Refusing here instead made a starved loop on a busy host bounce its
  // clients (132 failovers in 120 s beside stress-ng).
  failover::RequestHeader header;
  if (!failover::decode_request_header(request.payload, &header)) {
    (void)channel.respond(request.request_id, {}, kAppStatusBadRequest);
    return;
  }
  if (!owner_->client_ids_.bind(channel, header.client_id)) {
    (void)channel.respond(request.request_id, {}, kAppStatusBadRequest);
    owner_->doomed_.push_back(&channel);  // one connection, one client
    return;
  }
  if (header.seq == failover::kControlSeq) {
    answer_control(channel, request.request_id,
                   request.payload.subspan(failover::kRequestHeaderBytes));
    return;
  }
  if (const auto* cached = owner_->replies_.find(header.client_id, header.seq)) {
    // Executed before (the answer was lost in a failover): answer again, do not execute again.
    // Behind answers still waiting for the partner, it waits too: it may be one of them.
    if (owner_->replica_.held() == 0) {
      (void)channel.respond(request.request_id, cached->response, cached->app_status);
    } else {
      owner_->replica_.hold(channel, request.request_id, cached->app_status, cached->response);
    }
    return;
  }
  auto& response = owner_->response_;
  response.clear();
  auto app_request = request.payload.subspan(failover::kRequestHeaderBytes);
  std::uint32_t status = owner_->app_->handle(app_request, response);
  owner_->replies_.store(header.client_id, header.seq, status, response);
  owner_->answer_or_hold(channel, request.request_id, header.client_id, header.seq, app_request,
                         status);
}

void ServiceServer::Dispatcher::answer_control(transport::Channel& channel,
                                               std::uint64_t request_id,
                                               std::span<const std::byte> op) {
  if (op.size() == 1 && op[0] == failover::kControlPartnerAddress) {
    const std::string& uri = owner_->config_.partner_uri;
    (void)channel.respond(request_id, std::as_bytes(std::span(uri.data(), uri.size())));
  } else if (op.size() == 1 + failover::kProofNonceBytes && op[0] == failover::kControlProve &&
             owner_->config_.cluster_key != nullptr) {
    failover::ProofNonce nonce;
    std::memcpy(nonce.data(), op.data() + 1, nonce.size());
    std::array<std::byte, failover::kProofAnswerBytes> proof;
    owner_->config_.cluster_key->sign_proof(owner_->config_.name, nonce, owner_->role_.epoch,
                                            proof);
    ++owner_->stats_.proofs;
    (void)channel.respond(request_id, proof);
  } else if (op.size() == 1 && op[0] == failover::kControlEpoch) {
    std::array<std::byte, 8> epoch;
    transport::store_le<std::uint64_t>(epoch.data(), owner_->role_.epoch);
    (void)channel.respond(request_id, epoch);
  } else {
    (void)channel.respond(request_id, {}, kAppStatusBadRequest);
  }
}

}  // namespace viaduct::cluster
