//! HELLO: version, authentication (tenant), admission (connection limits,
//! one session per device), and the WELCOME that answers it.

use std::sync::Arc;
use std::time::Duration;

use awp_protocol::{ErrorCode, Frame, Hello, SUPPORTED_VERSIONS, Welcome};
use awp_store::Origin;

use super::*;

impl Session {
    pub(super) fn on_hello(&mut self, hello: Hello, now: Now, out: &mut Vec<Action>) {
        let Some(version) = hello.choose_version(SUPPORTED_VERSIONS) else {
            let message = format!(
                "no common version: client speaks {}..={}, server speaks 1",
                hello.min_version, hello.max_version
            );
            return self.fail(ErrorCode::UnsupportedVersion, &message, out);
        };
        // Kept past this HELLO only as the session's proof, in the admission
        // registry (to check it again when a reload changes credentials).
        let peer_certs = self.peer_certs.take();
        let tenants = self.tenants.load_full();
        let authentication = match tenants.authenticate(&hello, self.tls, peer_certs.as_deref(), now.unix_ms / 1000) {
            Ok(authentication) => authentication,
            Err(failure) => {
                // The operator learns why (sampled: anybody can cause it);
                // the agent learns nothing that tells causes apart.
                let known = tenants.contains(&hello.tenant_id);
                out.push(Action::Note(Note::AuthFailed(
                    failure.reason(),
                    known.then(|| hello.tenant_id.clone()),
                )));
                let agent = self.agent;
                crate::telemetry::logs::pre_auth(|| {
                    tracing::info!(
                        agent = %agent,
                        tenant = %crate::telemetry::logs::Escaped(&hello.tenant_id),
                        device = %crate::telemetry::logs::Escaped(&hello.device_id),
                        reason = failure.reason(),
                        detail = %failure,
                        "HELLO did not authenticate"
                    )
                });
                return self.fail_logged(ErrorCode::AuthFailed, "authentication failed", out);
            }
        };
        // Kept to check again if a reload swaps the registry meanwhile.
        let proof = authentication.proof.clone();
        let tenant = authentication.tenant;
        // Valid through the second `until` (a token's expiry and a
        // certificate's notAfter are both inclusive).
        let credentials_end = authentication.until.map(|until| {
            let left_ms = until.saturating_add(1).saturating_mul(1000).saturating_sub(now.unix_ms);
            now.mono + Duration::from_millis(left_ms)
        });
        let Some(budget) = self.budget.tenant(&tenant.id) else {
            // Every configured tenant has a share; answered, never a panic.
            return self.fail(ErrorCode::Internal, "no memory budget for this tenant", out);
        };
        // A place among the authenticated connections; an older session of
        // this device is told to go away.
        let mailbox = self.mailbox.get_or_insert_with(Arc::default);
        match self.admission.admit(
            &tenant.id,
            &hello.device_id,
            mailbox,
            crate::admit::admission::Session {
                proof: authentication.proof,
                tls: self.tls,
            },
        ) {
            Ok(admitted) => {
                self.admitted = Some(Box::new(Authenticated {
                    _admitted: admitted,
                    device_quota: tenant.quota.load().device(&hello.device_id),
                    credentials_end,
                }));
            }
            Err(refusal) => {
                out.push(Action::Note(Note::ConnectionRefused));
                return self.fail(ErrorCode::ServerBusy, &refusal.to_string(), out);
            }
        }
        // A reload may have swapped the registry since the check above
        // (removed the tenant, a secret, a CA; brought a CRL). It checks the
        // sessions it finds admitted after the swap; one admitted after its
        // check sees the new registry here and is checked against it: no
        // revoked credential slips between the two.
        let current = self.tenants.load();
        if !Arc::ptr_eq(&current, &tenants)
            && !current.still_valid(&tenant.id, &hello.device_id, &proof, self.tls, now.unix_ms / 1000)
        {
            self.admitted = None;
            let reason = if current.contains(&tenant.id) {
                "bad_token"
            } else {
                "unknown_tenant"
            };
            out.push(Action::Note(Note::AuthFailed(
                reason,
                current.contains(&tenant.id).then(|| tenant.id.clone()),
            )));
            return self.fail(ErrorCode::AuthFailed, "authentication failed", out);
        }
        drop(current);
        drop(tenants);
        let compression = hello.compression.intersect(self.settings.limits.accepted_compression);
        self.decode_limits.accepted_compression = compression;
        let limits = &self.settings.limits;
        out.push(Action::Send(Frame::Welcome(Welcome {
            version,
            session_id: self.session_id,
            max_frame_len: limits.max_frame_len.into(),
            max_batch_records: limits.max_batch_records.into(),
            max_inflight: self.settings.max_inflight.into(),
            heartbeat_ms: self.settings.heartbeat.as_millis() as u64,
            compression,
        })));
        tracing::debug!(agent = %self.agent, tenant = %tenant.id, device = %hello.device_id, "session authenticated");
        self.peer = Some(Peer {
            tenant,
            origin: Arc::new(Origin {
                device_id: hello.device_id,
                platform: hello.platform,
                agent_version: hello.agent_version,
            }),
            budget,
        });
        self.state = State::Ready;
    }
}
