//! Replays: a tenant asking for an event's deliveries again (`delivery.replay_requested.v1`),
//! and replays of a time range from the log (`replay.started`, `.progressed`, `.finished`), with
//! the rule of which deliveries such a replay makes.

use crate::ids::{EndpointId, EventId, ReplayId, TenantId};
use crate::messages::EventAccepted;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A tenant asked for deliveries of an accepted event to be made again (e.g. after they were
/// dead-lettered). Delivery answers by scheduling one attempt per listed delivery.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReplayRequested {
    pub event_id: EventId,
    pub tenant_id: TenantId,
    /// The log stream sequence of the event's `EventAccepted`.
    pub event_sequence: u64,
    pub deliveries: Vec<ReplayedDelivery>,
    pub requested_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReplayedDelivery {
    pub endpoint_id: EndpointId,
    /// The number the replayed attempt will carry.
    pub attempt_number: u32,
}

/// To which endpoints a replay from the log delivers an event again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// To the endpoints the event was routed to when it was accepted (its `endpoint_ids`).
    AsThen,
    /// To the tenant's endpoints enabled now whose event-type filter matches the event.
    AsNow,
}

impl ReplayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AsThen => "as_then",
            Self::AsNow => "as_now",
        }
    }
}

/// A tenant asked for its accepted events in `[since, until)` to be delivered again, read
/// from the log. Delivery answers by reading the tenant's events in log order and scheduling
/// the selected deliveries, recording `replay.progressed.v1` as it goes and
/// `replay.finished.v1` at the end.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReplayStarted {
    pub replay_id: ReplayId,
    pub tenant_id: TenantId,
    /// Events accepted at or after this time.
    pub since: DateTime<Utc>,
    /// Events accepted before this time.
    pub until: DateTime<Utc>,
    pub mode: ReplayMode,
    /// Only deliveries to this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<EndpointId>,
    /// Only events of these types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// At most this many events a second are replayed.
    pub events_per_second: u32,
    pub started_at: DateTime<Utc>,
}

impl ReplayStarted {
    /// Whether `event` is one this replay delivers again (tenant, acceptance time, type).
    pub fn covers(&self, event: &EventAccepted) -> bool {
        event.tenant_id == self.tenant_id
            && event.accepted_at >= self.since
            && event.accepted_at < self.until
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
    }

    /// The endpoints `event` is delivered to again: for `as_then` the ones it was routed to,
    /// for `as_now` `subscribed_now` (the tenant's enabled endpoints whose filter matches the
    /// event's type, in `endpoint_id` order); narrowed to `endpoint_id` when given. Empty for
    /// an event the replay does not cover.
    pub fn targets(&self, event: &EventAccepted, subscribed_now: &[EndpointId]) -> Vec<EndpointId> {
        if !self.covers(event) {
            return Vec::new();
        }
        let candidates = match self.mode {
            ReplayMode::AsThen => &event.endpoint_ids,
            ReplayMode::AsNow => subscribed_now,
        };
        candidates
            .iter()
            .copied()
            .filter(|endpoint_id| self.endpoint_id.is_none_or(|only| only == *endpoint_id))
            .collect()
    }
}

/// A replay from the log went as far as `through_sequence`: every selected delivery of the
/// tenant's events up to that log stream sequence is scheduled. Counts are since the start.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReplayProgressed {
    pub replay_id: ReplayId,
    pub tenant_id: TenantId,
    /// The `<NS>_LOG` stream sequence of the last event handled; a resumed replay reads on
    /// after it.
    pub through_sequence: u64,
    /// Events delivered again so far (those with at least one selected delivery).
    pub events_replayed: u64,
    /// Deliveries scheduled so far.
    pub deliveries_scheduled: u64,
    pub progressed_at: DateTime<Utc>,
}

/// A replay from the log scheduled its last delivery. Counts are the whole replay's.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReplayFinished {
    pub replay_id: ReplayId,
    pub tenant_id: TenantId,
    /// The `<NS>_LOG` stream sequence of the last event read (0 when none was).
    pub through_sequence: u64,
    pub events_replayed: u64,
    pub deliveries_scheduled: u64,
    pub finished_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::value::RawValue;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, minute, 0)
            .single()
            .expect("valid time")
    }

    fn event(
        tenant_id: TenantId,
        minute: u32,
        event_type: &str,
        endpoints: &[EndpointId],
    ) -> EventAccepted {
        EventAccepted {
            event_id: EventId::generate(),
            tenant_id,
            event_type: event_type.to_owned(),
            payload: RawValue::from_string("{}".to_owned()).expect("json"),
            idempotency_key: None,
            accepted_at: at(minute),
            trace_id: "0af7651916cd43dd8448eb211c80319c".to_owned(),
            endpoint_ids: endpoints.to_vec(),
            target_endpoints: None,
            deliver_after: None,
            expires_at: None,
        }
    }

    fn replay(tenant_id: TenantId, mode: ReplayMode) -> ReplayStarted {
        ReplayStarted {
            replay_id: ReplayId::generate(),
            tenant_id,
            since: at(10),
            until: at(20),
            mode,
            endpoint_id: None,
            event_types: None,
            events_per_second: 100,
            started_at: at(30),
        }
    }

    #[test]
    fn a_replay_covers_its_tenants_events_in_its_half_open_range() {
        let tenant = TenantId::generate();
        let then = [EndpointId::generate(), EndpointId::generate()];
        let now = [EndpointId::generate()];
        let as_then = replay(tenant, ReplayMode::AsThen);
        assert_eq!(as_then.targets(&event(tenant, 10, "a", &then), &now), then);
        assert!(as_then
            .targets(&event(tenant, 9, "a", &then), &now)
            .is_empty());
        assert!(as_then
            .targets(&event(tenant, 20, "a", &then), &now)
            .is_empty());
        assert!(as_then
            .targets(&event(TenantId::generate(), 15, "a", &then), &now)
            .is_empty());
        let as_now = replay(tenant, ReplayMode::AsNow);
        assert_eq!(as_now.targets(&event(tenant, 19, "a", &then), &now), now);
    }

    #[test]
    fn endpoint_and_event_types_narrow_a_replay() {
        let tenant = TenantId::generate();
        let then = [EndpointId::generate(), EndpointId::generate()];
        let mut narrowed = replay(tenant, ReplayMode::AsThen);
        narrowed.endpoint_id = Some(then[1]);
        narrowed.event_types = Some(vec!["b".to_owned()]);
        assert_eq!(
            narrowed.targets(&event(tenant, 15, "b", &then), &[]),
            [then[1]]
        );
        assert!(narrowed
            .targets(&event(tenant, 15, "a", &then), &[])
            .is_empty());
        assert!(narrowed
            .targets(&event(tenant, 15, "b", &then[..1]), &[])
            .is_empty());
    }
}
