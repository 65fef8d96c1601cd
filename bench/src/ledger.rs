//! The exact account of a run: every accepted event against every arrival at the endpoints
//! that should have had it. accepted × endpoints = delivered + missing; arrivals of events
//! never accepted and duplicates are counted apart. A run whose ledger does not balance
//! (something missing, or something arrived that was never accepted) is void.

use crate::load::{Routing, SentEvent};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Ledger {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Arrivals of events that were never answered 202.
    pub unexpected: u64,
    pub balanced: bool,
}

/// One delivery to a counted endpoint, in seconds from the run's origin.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    pub endpoint: u32,
    pub due: f64,
    pub arrived: f64,
}

impl Delivery {
    pub fn latency_ms(&self) -> f64 {
        (self.arrived - self.due).max(0.0) * 1000.0
    }
}

/// One ingest request, in seconds from the run's origin.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub due: f64,
    pub sent: f64,
    pub answered: f64,
    pub accepted: bool,
}

impl Answer {
    pub fn latency_ms(&self) -> f64 {
        (self.answered - self.due).max(0.0) * 1000.0
    }

    /// How late the generator sent it: the part of `latency_ms` that is the probe's own.
    pub fn sent_late_ms(&self) -> f64 {
        (self.sent - self.due).max(0.0) * 1000.0
    }
}

pub struct Account {
    pub ledger: Ledger,
    /// Sorted by arrival.
    pub deliveries: Vec<Delivery>,
    /// Sorted by due time.
    pub answers: Vec<Answer>,
}

/// `counted` says which endpoints are expected to receive what is routed to them (those
/// the scenario makes fail are left out of the ledger).
pub fn account(
    origin: Instant,
    sent: &[SentEvent],
    arrivals: &HashMap<(u32, String), Instant>,
    duplicates: u64,
    routing: Routing,
    endpoints: usize,
    counted: &dyn Fn(usize) -> bool,
) -> Account {
    let seconds = |at: Instant| at.saturating_duration_since(origin).as_secs_f64();
    let mut ledger = Ledger {
        sent: sent.len() as u64,
        duplicates,
        ..Ledger::default()
    };
    let mut deliveries = Vec::with_capacity(arrivals.len());
    let mut answers = Vec::with_capacity(sent.len());
    let mut accepted_ids = HashSet::with_capacity(sent.len());
    for event in sent {
        answers.push(Answer {
            due: seconds(event.due),
            sent: seconds(event.sent),
            answered: seconds(event.answered),
            accepted: event.event_id.is_some(),
        });
        let Some(event_id) = &event.event_id else {
            ledger.rejected += 1;
            continue;
        };
        ledger.accepted += 1;
        accepted_ids.insert(event_id.as_str());
        for endpoint in routing.endpoints_of(event.index, endpoints) {
            if !counted(endpoint) {
                continue;
            }
            ledger.expected_deliveries += 1;
            match arrivals.get(&(endpoint as u32, event_id.clone())) {
                Some(&arrived) => {
                    ledger.delivered += 1;
                    deliveries.push(Delivery {
                        endpoint: endpoint as u32,
                        due: seconds(event.due),
                        arrived: seconds(arrived),
                    });
                }
                None => ledger.missing += 1,
            }
        }
    }
    ledger.unexpected = arrivals
        .keys()
        .filter(|(_, id)| !accepted_ids.contains(id.as_str()))
        .count() as u64;
    ledger.balanced = ledger.missing == 0
        && ledger.unexpected == 0
        && ledger.expected_deliveries == ledger.delivered + ledger.missing;
    deliveries.sort_by(|a, b| a.arrived.total_cmp(&b.arrived));
    answers.sort_by(|a, b| a.due.total_cmp(&b.due));
    Account {
        ledger,
        deliveries,
        answers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sent(origin: Instant, index: u64, id: Option<&str>) -> SentEvent {
        SentEvent {
            index,
            due: origin + Duration::from_millis(index),
            sent: origin + Duration::from_millis(index),
            answered: origin + Duration::from_millis(index + 1),
            event_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn a_missing_delivery_or_a_stray_arrival_voids_the_run() {
        let origin = Instant::now();
        let events = [
            sent(origin, 0, Some("a")),
            sent(origin, 1, Some("b")),
            sent(origin, 2, None),
        ];
        let at = origin + Duration::from_millis(10);
        let mut arrivals: HashMap<(u32, String), Instant> = HashMap::new();
        for endpoint in 0..2 {
            arrivals.insert((endpoint, "a".into()), at);
            arrivals.insert((endpoint, "b".into()), at);
        }
        let all = |_: usize| true;
        let balanced = account(origin, &events, &arrivals, 0, Routing::All, 2, &all);
        assert!(balanced.ledger.balanced);
        assert_eq!(balanced.ledger.delivered, 4);
        assert_eq!(balanced.ledger.rejected, 1);

        arrivals.remove(&(1, "b".into()));
        let missing = account(origin, &events, &arrivals, 0, Routing::All, 2, &all);
        assert_eq!(missing.ledger.missing, 1);
        assert!(!missing.ledger.balanced);

        // Endpoint 1 is left out of the count: its missing delivery does not matter.
        let only_first = |endpoint: usize| endpoint == 0;
        let excluded = account(origin, &events, &arrivals, 0, Routing::All, 2, &only_first);
        assert!(excluded.ledger.balanced);

        arrivals.insert((1, "b".into()), at);
        arrivals.insert((0, "never-accepted".into()), at);
        let stray = account(origin, &events, &arrivals, 0, Routing::All, 2, &all);
        assert_eq!(stray.ledger.unexpected, 1);
        assert!(!stray.ledger.balanced);
    }
}
