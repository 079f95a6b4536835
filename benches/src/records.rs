//! Audit records the size and shape of those Warden writes for the bench's request: what the
//! audit micro benches append and what the durability floor (`hyper-audit`) records.

use warden::audit::event::{AuditEvent, AuditOutcome, AuditPrincipal, EventKind};

/// The decision record for one allowed chat completion by the bench agent.
pub fn decision() -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::Decision);
    event.request_id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into();
    event.decision_id = "dec-0193a1b2c3d47e5f".into();
    event.principal = AuditPrincipal {
        kind: "agent".into(),
        id: "bench".into(),
        issuer: "warden".into(),
    };
    event.action = "llm:chat".into();
    event.resource = r#"Model::"openai/gpt-4o-mini""#.into();
    event.route = "openai".into();
    event.source_ip = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    event.decision = "allow".into();
    event.policies = vec!["baseline-allow-chat".into()];
    event
}

/// The outcome record that follows [`decision`]: `status` from the upstream.
pub fn outcome(status: u16) -> AuditEvent {
    let mut event = decision();
    event.kind = EventKind::Outcome;
    event.decision = "".into();
    event.policies.clear();
    event.outcome = Some(AuditOutcome {
        status,
        ..Default::default()
    });
    event
}
