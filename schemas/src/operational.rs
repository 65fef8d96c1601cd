//! Herald's own events (`herald.…`), delivered to a tenant's endpoints like any other event
//! (an endpoint disabled, its breaker opened or closed, a dead letter, an objective burning):
//! what each one says, and which log message calls for which.
//!
//! Two rules keep them safe to subscribe to:
//! - only an endpoint that lists an operational type explicitly receives it
//!   (`herald_rules::routing`), so an endpoint without a filter never gets them;
//! - a failing operational delivery says nothing: it neither counts towards its endpoint's
//!   circuit breaker nor disables the endpoint on 410 (`delivery/`), and its dead letter is
//!   not announced ([`OperationalEvent::announcing`]); objectives are measured without them.
//!   Every operational event is therefore caused by deliveries of producers' events, and one
//!   never leads to another.
//!
//! A receiver gets `{"type": "herald.…", "timestamp": …, "data": <notice>}`, signed as usual.

use crate::ids::{AttemptId, EndpointId, EventId, TenantId};
use crate::messages::{AttemptOutcome, ErrorClass};
use crate::objectives::{EndpointSlo, SloAlert};
use crate::LogMessage;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Types under this prefix are Herald's; producers may not submit them.
pub const PREFIX: &str = "herald.";

/// Whether `event_type` is in Herald's reserved namespace (a type Herald emits or not).
pub fn is_operational(event_type: &str) -> bool {
    event_type.starts_with(PREFIX)
}

/// `herald.endpoint.disabled`: the endpoint receives nothing until it is enabled again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointDisabledNotice {
    pub endpoint_id: EndpointId,
    /// Why, e.g. "the receiver answered 410 Gone at …".
    pub reason: String,
    pub disabled_at: DateTime<Utc>,
}

/// `herald.endpoint.circuit_opened`: the endpoint failed too often in a row; deliveries to it
/// wait (their deadlines still run) until `until`, when one probe is let through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CircuitOpenedNotice {
    pub endpoint_id: EndpointId,
    pub opened_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub consecutive_failures: u32,
}

/// `herald.endpoint.circuit_closed`: a probe succeeded and deliveries flow again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CircuitClosedNotice {
    pub endpoint_id: EndpointId,
    pub closed_at: DateTime<Utc>,
}

/// `herald.delivery.dead_lettered`: an event's delivery to an endpoint exhausted its retries
/// or its deadline; nothing more is sent unless it is replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetteredNotice {
    pub event_id: EventId,
    pub event_type: String,
    pub endpoint_id: EndpointId,
    /// The last attempt, as listed at `/v1/events/{event_id}/attempts`.
    pub attempt_id: AttemptId,
    /// Attempts made or recorded for this delivery, the last one included.
    pub attempts: u32,
    pub dead_lettered_at: DateTime<Utc>,
    pub last_error: LastError,
}

/// How the last attempt of a dead-lettered delivery failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LastError {
    /// The error class as the API words it (`http_5xx`, `timeout`, `connection`, …).
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The receiver's status code, when it answered at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

/// `herald.endpoint.slo_burn`: the endpoint's error budget is burning faster than its
/// objective allows (a multi-window burn-rate alert started, or a slow one turned fast).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SloBurnNotice {
    pub endpoint_id: EndpointId,
    /// `fast`: 1 h and 5 min both at 14.4 times the sustainable failure rate or more;
    /// `slow`: 6 h and 30 min both at 6 times or more.
    pub alert: SloAlert,
    pub objective: EndpointSlo,
    /// Over the alert's long window (1 h or 6 h).
    pub burn_rate: f64,
    /// Over its short window (5 min or 30 min).
    pub burn_rate_short: f64,
    /// The share of the error budget over the objective's window still unspent.
    pub budget_remaining: f64,
    pub detected_at: DateTime<Utc>,
}

/// One operational event, as a receiver gets its `type` and `data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum OperationalEvent {
    #[serde(rename = "herald.endpoint.disabled")]
    EndpointDisabled(EndpointDisabledNotice),
    #[serde(rename = "herald.endpoint.circuit_opened")]
    CircuitOpened(CircuitOpenedNotice),
    #[serde(rename = "herald.endpoint.circuit_closed")]
    CircuitClosed(CircuitClosedNotice),
    #[serde(rename = "herald.delivery.dead_lettered")]
    DeliveryDeadLettered(DeadLetteredNotice),
    #[serde(rename = "herald.endpoint.slo_burn")]
    SloBurn(SloBurnNotice),
}

impl OperationalEvent {
    /// Every type Herald emits, as endpoints list them in `events`.
    pub const TYPE_NAMES: [&'static str; 5] = [
        "herald.endpoint.disabled",
        "herald.endpoint.circuit_opened",
        "herald.endpoint.circuit_closed",
        "herald.delivery.dead_lettered",
        "herald.endpoint.slo_burn",
    ];

    pub fn type_name(&self) -> &'static str {
        let index = match self {
            Self::EndpointDisabled(_) => 0,
            Self::CircuitOpened(_) => 1,
            Self::CircuitClosed(_) => 2,
            Self::DeliveryDeadLettered(_) => 3,
            Self::SloBurn(_) => 4,
        };
        Self::TYPE_NAMES[index]
    }

    /// The operational event `message` calls for, with the tenant it belongs to; `None` for
    /// messages that call for none, and for the dead letter of an operational event (which
    /// would otherwise announce itself).
    pub fn announcing(message: &LogMessage) -> Option<(TenantId, Self)> {
        let announced = match message {
            LogMessage::EndpointDisabled(disabled) => (
                disabled.tenant_id,
                Self::EndpointDisabled(EndpointDisabledNotice {
                    endpoint_id: disabled.endpoint_id,
                    reason: disabled.reason.clone(),
                    disabled_at: disabled.disabled_at,
                }),
            ),
            LogMessage::EndpointCircuitOpened(opened) => (
                opened.tenant_id,
                Self::CircuitOpened(CircuitOpenedNotice {
                    endpoint_id: opened.endpoint_id,
                    opened_at: opened.opened_at,
                    until: opened.until,
                    consecutive_failures: opened.consecutive_failures,
                }),
            ),
            LogMessage::EndpointCircuitClosed(closed) => (
                closed.tenant_id,
                Self::CircuitClosed(CircuitClosedNotice {
                    endpoint_id: closed.endpoint_id,
                    closed_at: closed.closed_at,
                }),
            ),
            LogMessage::AttemptRecorded(attempt)
                if attempt.outcome == AttemptOutcome::DeadLettered
                    && !is_operational(&attempt.event_type) =>
            {
                (
                    attempt.tenant_id,
                    Self::DeliveryDeadLettered(DeadLetteredNotice {
                        event_id: attempt.event_id,
                        event_type: attempt.event_type.clone(),
                        endpoint_id: attempt.endpoint_id,
                        attempt_id: attempt.attempt_id,
                        attempts: attempt.attempt_number,
                        dead_lettered_at: attempt.finished_at,
                        last_error: LastError {
                            // A dead letter always failed; the class is there but for
                            // records older than the rule that made it so.
                            class: attempt
                                .error_class
                                .unwrap_or(ErrorClass::HttpInvalid)
                                .as_str()
                                .to_owned(),
                            message: attempt.error_message.clone(),
                            http_status: attempt.http_status,
                        },
                    }),
                )
            }
            LogMessage::EndpointSloBurning(burning) => (
                burning.tenant_id,
                Self::SloBurn(SloBurnNotice {
                    endpoint_id: burning.endpoint_id,
                    alert: burning.alert,
                    objective: burning.objective,
                    burn_rate: burning.burn_rate_long,
                    burn_rate_short: burning.burn_rate_short,
                    budget_remaining: burning.budget_remaining,
                    detected_at: burning.detected_at,
                }),
            ),
            _ => return None,
        };
        Some(announced)
    }

    /// When what it announces happened.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            Self::EndpointDisabled(notice) => notice.disabled_at,
            Self::CircuitOpened(notice) => notice.opened_at,
            Self::CircuitClosed(notice) => notice.closed_at,
            Self::DeliveryDeadLettered(notice) => notice.dead_lettered_at,
            Self::SloBurn(notice) => notice.detected_at,
        }
    }

    /// The event's id, derived from what it announces: the same fact read twice (a
    /// redelivered log message, two processes) gets the same id, which the log and the read
    /// model keep once. Time-ordered like every id, by when the fact happened.
    pub fn event_id(&self) -> EventId {
        let (source, kind) = match self {
            Self::EndpointDisabled(notice) => (notice.endpoint_id.as_uuid(), 1u8),
            Self::CircuitOpened(notice) => (notice.endpoint_id.as_uuid(), 2),
            Self::CircuitClosed(notice) => (notice.endpoint_id.as_uuid(), 3),
            Self::DeliveryDeadLettered(notice) => (notice.attempt_id.as_uuid(), 4),
            Self::SloBurn(notice) => (notice.endpoint_id.as_uuid(), 5),
        };
        let bytes = source.as_bytes();
        let mut random = [0u8; 10];
        random.copy_from_slice(&bytes[6..16]);
        random[0] ^= kind;
        let millis = u64::try_from(self.occurred_at().timestamp_millis()).unwrap_or_default();
        EventId(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// The `data` a receiver gets, as JSON.
    pub fn data(&self) -> serde_json::Value {
        let encoded = serde_json::to_value(self).unwrap_or_default();
        encoded.get("data").cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{
        AttemptRecorded, EndpointCircuitClosed, EndpointCircuitOpened, EndpointDisabled,
    };
    use crate::Actor;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, second)
            .single()
            .expect("valid time")
    }

    fn dead_letter(event_type: &str, attempt_number: u32) -> AttemptRecorded {
        AttemptRecorded {
            attempt_id: AttemptId::generate(),
            event_id: EventId::generate(),
            endpoint_id: EndpointId::generate(),
            tenant_id: TenantId::generate(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".to_owned(),
            event_type: event_type.to_owned(),
            attempt_number,
            event_accepted_at: at(0),
            scheduled_at: at(1),
            started_at: at(1),
            finished_at: at(2),
            http_status: Some(503),
            error_class: Some(ErrorClass::Http5xx),
            error_message: Some("503 Service Unavailable".to_owned()),
            latency_ms: 3,
            response_body_hash: None,
            outcome: AttemptOutcome::DeadLettered,
            next_attempt_at: None,
            request_bytes: 0,
            response_bytes: 0,
        }
    }

    #[test]
    fn type_names_are_the_serialized_tags_and_all_reserved() {
        let endpoint_id = EndpointId::generate();
        let events = [
            OperationalEvent::EndpointDisabled(EndpointDisabledNotice {
                endpoint_id,
                reason: "gone".to_owned(),
                disabled_at: at(1),
            }),
            OperationalEvent::CircuitOpened(CircuitOpenedNotice {
                endpoint_id,
                opened_at: at(1),
                until: at(6),
                consecutive_failures: 5,
            }),
            OperationalEvent::CircuitClosed(CircuitClosedNotice {
                endpoint_id,
                closed_at: at(7),
            }),
            OperationalEvent::announcing(&LogMessage::AttemptRecorded(dead_letter("a.b", 3)))
                .expect("announced")
                .1,
            OperationalEvent::SloBurn(SloBurnNotice {
                endpoint_id,
                alert: SloAlert::Fast,
                objective: EndpointSlo {
                    success_rate: 0.99,
                    window_days: 30,
                },
                burn_rate: 100.0,
                burn_rate_short: 100.0,
                budget_remaining: 0.5,
                detected_at: at(9),
            }),
        ];
        assert_eq!(events.len(), OperationalEvent::TYPE_NAMES.len());
        for (event, name) in events.iter().zip(OperationalEvent::TYPE_NAMES) {
            assert_eq!(event.type_name(), name);
            let encoded = serde_json::to_value(event).expect("encodes");
            assert_eq!(encoded["type"], name);
            assert_eq!(encoded["data"], event.data());
            assert!(is_operational(name));
        }
        assert!(!is_operational("heraldry.updated"));
    }

    #[test]
    fn dead_letters_of_producer_events_are_announced_and_of_operational_events_not() {
        let record = dead_letter("invoice.paid", 4);
        let (tenant_id, event) =
            OperationalEvent::announcing(&LogMessage::AttemptRecorded(record.clone()))
                .expect("announced");
        assert_eq!(tenant_id, record.tenant_id);
        let OperationalEvent::DeliveryDeadLettered(notice) = &event else {
            panic!("not a dead letter: {event:?}");
        };
        assert_eq!(notice.attempts, 4);
        assert_eq!(notice.last_error.http_status, Some(503));
        for event_type in OperationalEvent::TYPE_NAMES {
            let own = dead_letter(event_type, 4);
            assert!(OperationalEvent::announcing(&LogMessage::AttemptRecorded(own)).is_none());
        }
        let mut retried = record;
        retried.outcome = AttemptOutcome::RetryScheduled;
        assert!(OperationalEvent::announcing(&LogMessage::AttemptRecorded(retried)).is_none());
    }

    #[test]
    fn the_same_fact_gets_the_same_id_and_different_facts_different_ids() {
        let tenant_id = TenantId::generate();
        let endpoint_id = EndpointId::generate();
        let opened = |second| {
            LogMessage::EndpointCircuitOpened(EndpointCircuitOpened {
                endpoint_id,
                tenant_id,
                opened_at: at(second),
                until: at(second + 5),
                consecutive_failures: 5,
            })
        };
        let id = |message: &LogMessage| {
            OperationalEvent::announcing(message)
                .expect("announced")
                .1
                .event_id()
        };
        assert_eq!(id(&opened(1)), id(&opened(1)));
        assert_ne!(id(&opened(1)), id(&opened(2)));
        let closed = LogMessage::EndpointCircuitClosed(EndpointCircuitClosed {
            endpoint_id,
            tenant_id,
            closed_at: at(1),
        });
        let disabled = LogMessage::EndpointDisabled(EndpointDisabled {
            endpoint_id,
            tenant_id,
            reason: "gone".to_owned(),
            disabled_at: at(1),
            actor: Actor::Herald,
        });
        assert_ne!(id(&opened(1)), id(&closed));
        assert_ne!(id(&closed), id(&disabled));
        let record = dead_letter("a.b", 2);
        let replayed = dead_letter("a.b", 3);
        assert_eq!(
            id(&LogMessage::AttemptRecorded(record.clone())),
            id(&LogMessage::AttemptRecorded(record.clone()))
        );
        assert_ne!(
            id(&LogMessage::AttemptRecorded(record)),
            id(&LogMessage::AttemptRecorded(replayed))
        );
        assert_eq!(id(&opened(1)).as_uuid().get_version_num(), 7);
    }
}
