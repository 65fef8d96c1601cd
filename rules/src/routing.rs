//! Which endpoints an event type reaches: the routing rule that ingest applies to every new
//! event (`command/src/routing.rs`), operational events included, and a replay from the log
//! applies to today's endpoints (`as_now`, in `query/src/log_replay.rs` and
//! `delivery/src/log_replays.rs`).

use herald_schemas::operational;

/// Whether an endpoint subscribed to `event_types` receives events of `event_type`: `None`
/// subscribes to every producer type, a list only to its members (exact, case-sensitive
/// names). Herald's own `herald.…` types reach only endpoints that list them: an endpoint
/// without a filter was made for the producer's events and must not start receiving
/// Herald's.
pub fn subscribes(event_types: Option<&[String]>, event_type: &str) -> bool {
    match event_types {
        None => !operational::is_operational(event_type),
        Some(types) => types.iter().any(|accepted| accepted == event_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_schemas::OperationalEvent;
    use proptest::prelude::*;

    #[test]
    fn absent_filter_accepts_every_type_and_a_list_only_its_members() {
        let some = vec!["invoice.paid".to_owned(), "user.created".to_owned()];
        assert!(subscribes(None, "anything"));
        assert!(subscribes(Some(&some), "user.created"));
        assert!(!subscribes(Some(&some), "invoice.created"));
        assert!(!subscribes(Some(&some), "invoice"));
        assert!(!subscribes(Some(&[]), "invoice.paid"));
    }

    const DEAD_LETTERED: &str = "herald.delivery.dead_lettered";
    const DISABLED: &str = "herald.endpoint.disabled";

    #[test]
    fn operational_types_reach_only_endpoints_that_list_them() {
        let listed = vec![DEAD_LETTERED.to_owned()];
        assert!(!subscribes(None, DEAD_LETTERED));
        assert!(subscribes(Some(&listed), DEAD_LETTERED));
        assert!(!subscribes(Some(&listed), DISABLED));
    }

    fn event_type() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,6}\\.[a-z_]{1,8}",
            proptest::sample::select(OperationalEvent::TYPE_NAMES.to_vec()).prop_map(str::to_owned),
        ]
    }

    proptest! {
        /// A listed type is received and an unlisted one is not, whatever the namespace; an
        /// endpoint without a list receives exactly the producers' types.
        #[test]
        fn a_list_decides_and_no_list_means_every_producer_type(
            listed in proptest::collection::vec(event_type(), 0..6),
            candidate in event_type(),
        ) {
            prop_assert_eq!(subscribes(Some(&listed), &candidate), listed.contains(&candidate));
            prop_assert_eq!(
                subscribes(None, &candidate),
                !candidate.starts_with(operational::PREFIX)
            );
        }
    }
}
