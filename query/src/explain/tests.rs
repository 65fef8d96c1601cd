use super::*;
use herald_schemas::EndpointId;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

fn event() -> EventFacts {
    EventFacts {
        event_id: Uuid::now_v7(),
        event_type: "order.created".to_owned(),
        accepted_at: at("2026-11-26T12:00:00Z"),
        log_sequence: 10,
        target_endpoints: None,
        deliver_after: None,
        expires_at: None,
    }
}

fn endpoint() -> EndpointRecord {
    EndpointRecord {
        endpoint_id: EndpointId::generate(),
        url: "https://example.com/hook".to_owned(),
        event_types: None,
        enabled: true,
        disabled_reason: None,
        description: None,
        rate_limit: None,
        retry_policy: None,
        ordered: false,
        header_names: Vec::new(),
        signature_scheme: "v1".to_owned(),
        public_key: None,
        slo: None,
        created_at: at("2026-11-01T00:00:00Z"),
        updated_at: at("2026-11-01T00:00:00Z"),
    }
}

fn pending() -> DeliveryFacts {
    DeliveryFacts {
        endpoint_id: Uuid::now_v7(),
        status: "pending".to_owned(),
        next_attempt_at: Some(at("2026-11-26T12:00:00Z")),
        ..DeliveryFacts::default()
    }
}

#[test]
fn a_left_out_endpoint_gets_the_first_reason_that_applies() {
    let event = event();
    let later = EndpointRecord {
        created_at: at("2026-11-26T12:00:01Z"),
        updated_at: at("2026-11-26T12:00:01Z"),
        ..endpoint()
    };
    assert_eq!(not_routed(&event, &later).0, "created_later");

    let targeted = EventFacts {
        target_endpoints: Some(vec![Uuid::now_v7()]),
        ..event.clone()
    };
    assert_eq!(not_routed(&targeted, &endpoint()).0, "not_targeted");

    let filtered = EndpointRecord {
        event_types: Some(vec!["invoice.paid".to_owned()]),
        ..endpoint()
    };
    assert_eq!(not_routed(&event, &filtered).0, "type_filter");

    let disabled = EndpointRecord {
        enabled: false,
        disabled_reason: Some("the receiver answered 410 Gone".to_owned()),
        ..endpoint()
    };
    let (reason, detail) = not_routed(&event, &disabled);
    assert_eq!(reason, "disabled");
    assert!(detail.contains("410 Gone"), "{detail}");

    let changed = EndpointRecord {
        updated_at: at("2026-11-26T13:00:00Z"),
        ..endpoint()
    };
    assert_eq!(not_routed(&event, &changed).0, "changed_since");

    let just_made = EndpointRecord {
        created_at: at("2026-11-26T11:59:59Z"),
        updated_at: at("2026-11-26T11:59:59Z"),
        ..endpoint()
    };
    assert_eq!(not_routed(&event, &just_made).0, "routing_cache");
    assert_eq!(not_routed(&event, &endpoint()).0, "unknown");
}

#[test]
fn a_routed_delivery_says_what_it_waits_for() {
    let now = at("2026-11-26T12:00:05Z");
    let event = event();
    let endpoint = endpoint();
    let nothing_pending = EndpointNow::default();
    let kind = |event: &EventFacts, delivery: &DeliveryFacts, now_state: &EndpointNow| {
        waiting_for(event, delivery, Some(&endpoint), now_state, now).kind
    };

    let done = DeliveryFacts {
        status: "succeeded".to_owned(),
        attempt_count: 1,
        last_http_status: Some(200),
        ..pending()
    };
    assert_eq!(kind(&event, &done, &nothing_pending), "nothing");
    assert_eq!(kind(&event, &pending(), &nothing_pending), "in_flight");

    let scheduled = EventFacts {
        deliver_after: Some(at("2026-11-27T00:00:00Z")),
        ..event.clone()
    };
    assert_eq!(kind(&scheduled, &pending(), &nothing_pending), "scheduled");

    let behind = EndpointNow {
        lane_ahead: Some(LaneAhead {
            event_id: Uuid::now_v7(),
            status: "retrying".to_owned(),
            next_attempt_at: Some(at("2026-11-26T12:01:00Z")),
        }),
        ..EndpointNow::default()
    };
    assert_eq!(kind(&event, &pending(), &behind), "ordered_lane");

    for (reason, expected) in [
        ("rate_limited", "rate_limited"),
        ("circuit_open", "breaker_open"),
        ("retry_budget", "retry_budget"),
        ("endpoint_busy", "endpoint_busy"),
    ] {
        let deferred = DeliveryFacts {
            deferral_reason: Some(reason.to_owned()),
            next_attempt_at: Some(at("2026-11-26T12:00:30Z")),
            ..pending()
        };
        let waiting = waiting_for(&event, &deferred, Some(&endpoint), &nothing_pending, now);
        assert_eq!(waiting.kind, expected);
        assert_eq!(waiting.until, Some(at("2026-11-26T12:00:30Z")));
    }
    // A deferral whose time has passed no longer holds the delivery back.
    let stale = DeliveryFacts {
        deferral_reason: Some("rate_limited".to_owned()),
        next_attempt_at: Some(at("2026-11-26T12:00:01Z")),
        ..pending()
    };
    assert_eq!(kind(&event, &stale, &nothing_pending), "in_flight");

    let open = EndpointNow {
        breaker_open_until: Some(at("2026-11-26T12:00:20Z")),
        ..EndpointNow::default()
    };
    assert_eq!(kind(&event, &pending(), &open), "breaker_open");

    let retrying = DeliveryFacts {
        status: "retrying".to_owned(),
        attempt_count: 2,
        last_http_status: Some(503),
        next_attempt_at: Some(at("2026-11-26T12:00:40Z")),
        ..pending()
    };
    let waiting = waiting_for(&event, &retrying, Some(&endpoint), &nothing_pending, now);
    assert_eq!(waiting.kind, "retry");
    assert!(waiting.detail.contains("HTTP 503"), "{}", waiting.detail);

    let disabled = EndpointRecord {
        enabled: false,
        ..endpoint.clone()
    };
    let waiting = waiting_for(&event, &pending(), Some(&disabled), &nothing_pending, now);
    assert_eq!(waiting.kind, "endpoint_disabled");
    let waiting = waiting_for(&event, &pending(), None, &nothing_pending, now);
    assert_eq!(waiting.kind, "endpoint_disabled");
}
