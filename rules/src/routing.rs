//! Which endpoints an event type reaches: the routing rule that ingest applies to every new
//! event (`command/src/routing.rs`) and a replay from the log applies to today's endpoints
//! (`as_now`, in `query/src/log_replay.rs` and `delivery/src/log_replays.rs`).

/// Whether an endpoint subscribed to `event_types` receives events of `event_type`: `None`
/// subscribes to every type, a list only to its members (exact, case-sensitive names).
pub fn subscribes(event_types: Option<&[String]>, event_type: &str) -> bool {
    event_types.is_none_or(|types| types.iter().any(|accepted| accepted == event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_filter_accepts_every_type_and_a_list_only_its_members() {
        let some = vec!["invoice.paid".to_owned(), "user.created".to_owned()];
        assert!(subscribes(None, "anything"));
        assert!(subscribes(Some(&some), "user.created"));
        assert!(!subscribes(Some(&some), "invoice.created"));
        assert!(!subscribes(Some(&some), "invoice"));
        assert!(!subscribes(Some(&[]), "invoice.paid"));
    }
}
