//! Subject and stream names. Every name is derived from a [`Namespace`] so that several
//! Herald installations (or test runs) can share one NATS server without seeing each other.
//!
//! | stream          | subjects                         | holds                                   |
//! |-----------------|----------------------------------|-----------------------------------------|
//! | `<NS>_LOG`      | `<ns>.events.<tenant_id>`        | `event.accepted.v1`                     |
//! |                 | `<ns>.attempts.<tenant_id>`      | `attempt.recorded.v2`, `delivery.deferred.v1` |
//! |                 | `<ns>.config.<tenant_id>`        | `tenant.created.v1`, `endpoint.*.v1`    |
//! |                 | `<ns>.replays.<tenant_id>`       | `delivery.replay_requested.v1`, `replay.*.v1` |
//! | `<NS>_RETRIES`  | `<ns>.retries.<delay_tier>`      | `retry.due.v1` (work queue)             |
//! |                 | `<ns>.retries.busy.<endpoint_id>` | `retry.due.v1`: a busy endpoint's backlog |
//!
//! Events and attempts share one stream so that a single consumer sees an event before any
//! of its attempts: projections never have to wait for the other half of a story.

use crate::ids::{EndpointId, TenantId};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace(String);

#[derive(Debug, thiserror::Error)]
#[error("namespace must be 1-32 characters of a-z, 0-9 and _ starting with a letter, got `{0}`")]
pub struct InvalidNamespace(String);

impl Namespace {
    pub fn new(name: &str) -> Result<Self, InvalidNamespace> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidNamespace(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn log_stream(&self) -> String {
        format!("{}_LOG", self.0.to_ascii_uppercase())
    }

    /// The Postgres projector's checkpoint (in `projector_checkpoints`): how far into the log
    /// stream the Postgres read model is. Delivery reads it to know how current that model is.
    pub fn postgres_checkpoint(&self) -> String {
        format!("postgres/{}", self.log_stream())
    }

    pub fn retry_stream(&self) -> String {
        format!("{}_RETRIES", self.0.to_ascii_uppercase())
    }

    pub fn log_subjects(&self) -> Vec<String> {
        ["events", "attempts", "config", "replays"]
            .iter()
            .map(|kind| format!("{}.{kind}.>", self.0))
            .collect()
    }

    pub fn events_filter(&self) -> String {
        format!("{}.events.>", self.0)
    }

    pub fn attempts_filter(&self) -> String {
        format!("{}.attempts.>", self.0)
    }

    pub fn config_filter(&self) -> String {
        format!("{}.config.>", self.0)
    }

    pub fn replays_filter(&self) -> String {
        format!("{}.replays.>", self.0)
    }

    pub fn replay_subject(&self, tenant_id: TenantId) -> String {
        format!("{}.replays.{tenant_id}", self.0)
    }

    pub fn retries_filter(&self) -> String {
        format!("{}.retries.>", self.0)
    }

    pub fn event_subject(&self, tenant_id: TenantId) -> String {
        format!("{}.events.{tenant_id}", self.0)
    }

    pub fn attempt_subject(&self, tenant_id: TenantId) -> String {
        format!("{}.attempts.{tenant_id}", self.0)
    }

    pub fn config_subject(&self, tenant_id: TenantId) -> String {
        format!("{}.config.{tenant_id}", self.0)
    }

    /// Retries wait on a subject per delay tier; see `delivery::retry_queue`.
    pub fn retry_subject(&self, tier_name: &str) -> String {
        format!("{}.retries.{tier_name}", self.0)
    }

    /// A busy endpoint's backlog, taken at the endpoint's pace; see `delivery::busy_backlogs`.
    pub fn busy_backlog_subject(&self, endpoint_id: EndpointId) -> String {
        format!("{}.retries.busy.{endpoint_id}", self.0)
    }

    /// Every endpoint's busy backlog (one token per endpoint).
    pub fn busy_backlogs_filter(&self) -> String {
        format!("{}.retries.busy.*", self.0)
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self("herald".to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_namespace() {
        let namespace = Namespace::new("herald").expect("valid");
        let tenant = TenantId::generate();
        assert_eq!(namespace.log_stream(), "HERALD_LOG");
        assert_eq!(
            namespace.event_subject(tenant),
            format!("herald.events.{tenant}")
        );
        assert!(namespace
            .log_subjects()
            .contains(&"herald.attempts.>".to_owned()));
    }

    #[test]
    fn namespaces_that_would_break_subjects_are_refused() {
        for bad in ["", "Herald", "a.b", "a>", "1abc", "a b"] {
            assert!(Namespace::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
