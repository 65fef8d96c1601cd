//! Where deliveries and events stand, as the read model stores them and the API shows them.
//!
//! Both are derived from the log: a delivery's status from the outcome of its latest attempt,
//! an event's status from its deliveries by [`EventStatus::RULE`]. The words are part of
//! Herald's contract, like the message names; every crate spells them through these types.

use crate::messages::AttemptOutcome;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where one delivery (one event to one endpoint) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// No attempt was made yet.
    Pending,
    /// An attempt failed and another one is scheduled.
    Retrying,
    /// The receiver accepted it.
    Succeeded,
    /// An attempt failed in a way retrying cannot fix.
    Failed,
    /// Every attempt the retry policy allows failed.
    DeadLettered,
    /// The event's `expires_at` passed before it succeeded.
    Expired,
}

impl DeliveryStatus {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::DeadLettered,
        Self::Expired,
    ];

    /// Deliveries still being made: another attempt is due.
    pub const UNFINISHED: [Self; 2] = [Self::Pending, Self::Retrying];

    /// Deliveries that are over: no further attempt follows unless one is replayed.
    pub const FINAL: [Self; 4] = [
        Self::Succeeded,
        Self::Failed,
        Self::DeadLettered,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
            Self::Expired => "expired",
        }
    }

    /// Whether the delivery is over (see [`Self::FINAL`]).
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }
}

/// A delivery's status after an attempt with this outcome.
impl From<AttemptOutcome> for DeliveryStatus {
    fn from(outcome: AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Succeeded => Self::Succeeded,
            AttemptOutcome::RetryScheduled => Self::Retrying,
            AttemptOutcome::Failed => Self::Failed,
            AttemptOutcome::DeadLettered => Self::DeadLettered,
            AttemptOutcome::Expired => Self::Expired,
        }
    }
}

/// Where an event stands, over all its deliveries (see [`EventStatus::RULE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// No attempt was made yet.
    Pending,
    /// Attempts were made and some delivery is not over.
    Delivering,
    /// Every delivery succeeded (or the event reached no endpoint).
    Delivered,
    /// Every delivery is over and at least one did not succeed.
    Failed,
}

/// A condition on an event's deliveries, one clause of [`EventStatus::RULE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveriesCondition {
    /// Every delivery has one of these statuses (true of no deliveries at all).
    EveryStatusIn(&'static [DeliveryStatus]),
    /// At least one attempt was made on some delivery.
    AnyAttemptMade,
}

impl DeliveriesCondition {
    /// Whether the condition holds for these deliveries, given as (status, attempts made).
    pub fn holds(self, deliveries: &[(DeliveryStatus, u32)]) -> bool {
        match self {
            Self::EveryStatusIn(statuses) => deliveries
                .iter()
                .all(|(status, _)| statuses.contains(status)),
            Self::AnyAttemptMade => deliveries.iter().any(|&(_, attempts)| attempts > 0),
        }
    }
}

impl EventStatus {
    pub const ALL: [Self; 4] = [
        Self::Pending,
        Self::Delivering,
        Self::Delivered,
        Self::Failed,
    ];

    /// The one rule that derives an event's status from its deliveries: the status of the
    /// first clause whose condition holds, else [`Self::OTHERWISE`]. The projector applies it
    /// in Rust ([`Self::of_deliveries`]) and in SQL (generated from this table).
    pub const RULE: [(DeliveriesCondition, Self); 3] = [
        (
            DeliveriesCondition::EveryStatusIn(&[DeliveryStatus::Succeeded]),
            Self::Delivered,
        ),
        (
            DeliveriesCondition::EveryStatusIn(&DeliveryStatus::FINAL),
            Self::Failed,
        ),
        (DeliveriesCondition::AnyAttemptMade, Self::Delivering),
    ];

    /// The status when no clause of [`Self::RULE`] holds.
    pub const OTHERWISE: Self = Self::Pending;

    /// [`Self::RULE`] applied to an event's deliveries, given as (status, attempts made).
    pub fn of_deliveries(deliveries: &[(DeliveryStatus, u32)]) -> Self {
        Self::RULE
            .iter()
            .find(|(condition, _)| condition.holds(deliveries))
            .map_or(Self::OTHERWISE, |&(_, status)| status)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// A word that names none of the values of a status or outcome.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{word}` is not {what}")]
pub struct UnknownWord {
    /// What the word should have named, e.g. "a delivery status".
    pub what: &'static str,
    pub word: String,
}

/// `Display` and `FromStr` through `as_str` and `ALL`, so each word is written once.
macro_rules! words {
    ($($type:ty => $what:literal),+ $(,)?) => {$(
        impl fmt::Display for $type {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = UnknownWord;

            fn from_str(word: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|value| value.as_str() == word)
                    .ok_or_else(|| UnknownWord {
                        what: $what,
                        word: word.to_owned(),
                    })
            }
        }
    )+};
}

words! {
    DeliveryStatus => "a delivery status",
    EventStatus => "an event status",
    AttemptOutcome => "an attempt outcome",
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_word<T: Serialize>(value: T) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(word)) => word,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn words_agree_with_serde_and_parse_back() {
        for status in DeliveryStatus::ALL {
            assert_eq!(serde_word(status), status.as_str());
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
        }
        for status in EventStatus::ALL {
            assert_eq!(serde_word(status), status.as_str());
            assert_eq!(status.as_str().parse::<EventStatus>(), Ok(status));
        }
        for outcome in AttemptOutcome::ALL {
            assert_eq!(serde_word(outcome), outcome.as_str());
            assert_eq!(outcome.as_str().parse::<AttemptOutcome>(), Ok(outcome));
        }
        let error = "delivered"
            .parse::<DeliveryStatus>()
            .expect_err("an event word");
        assert_eq!(error.to_string(), "`delivered` is not a delivery status");
    }

    #[test]
    fn final_and_unfinished_statuses_split_all_of_them() {
        for status in DeliveryStatus::ALL {
            assert_ne!(
                DeliveryStatus::FINAL.contains(&status),
                DeliveryStatus::UNFINISHED.contains(&status),
                "{status}"
            );
            assert_eq!(status.is_final(), DeliveryStatus::FINAL.contains(&status));
        }
    }

    #[test]
    fn a_delivery_is_final_exactly_when_its_last_outcome_is() {
        for outcome in AttemptOutcome::ALL {
            assert_eq!(DeliveryStatus::from(outcome).is_final(), outcome.is_final());
        }
    }

    #[test]
    fn event_status_follows_its_deliveries() {
        use DeliveryStatus::{DeadLettered, Pending, Retrying, Succeeded};
        let of = EventStatus::of_deliveries;
        assert_eq!(
            of(&[(Succeeded, 1), (Succeeded, 2)]),
            EventStatus::Delivered
        );
        assert_eq!(
            of(&[(Succeeded, 1), (DeadLettered, 18)]),
            EventStatus::Failed
        );
        assert_eq!(of(&[(Succeeded, 1), (Pending, 0)]), EventStatus::Delivering);
        assert_eq!(of(&[(Retrying, 1)]), EventStatus::Delivering);
        assert_eq!(of(&[(Pending, 0), (Pending, 0)]), EventStatus::Pending);
        // An event that reaches no endpoint has nothing left to do.
        assert_eq!(of(&[]), EventStatus::Delivered);
    }
}
