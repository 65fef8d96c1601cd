use super::*;
use proptest::prelude::*;

fn at(now: DateTime<Utc>, offset_ms: i64) -> DateTime<Utc> {
    now + chrono::Duration::milliseconds(offset_ms)
}

/// Asks every gate the checks ask for, answering from `answers` (a gate missing there
/// passes), and returns the gates asked in order and the verdict the walk ended with.
fn walk(mut checks: Checks, answers: &[(Gate, Answer)]) -> (Vec<Gate>, Verdict) {
    let mut asked = Vec::new();
    for _ in 0..=Gate::ORDER.len() {
        match checks.next() {
            Verdict::Ask(gate) => {
                asked.push(gate);
                let answer = answers
                    .iter()
                    .find(|(answered, _)| *answered == gate)
                    .map(|(_, answer)| *answer)
                    .unwrap_or(Answer::Pass);
                checks.answer(gate, answer);
            }
            verdict => return (asked, verdict),
        }
    }
    panic!("the checks asked more gates than there are: {asked:?}");
}

fn gate() -> impl Strategy<Value = Gate> {
    prop::sample::select(Gate::ORDER.to_vec())
}

fn endpoint() -> impl Strategy<Value = EndpointState> {
    prop_oneof![
        Just(EndpointState::Unavailable),
        any::<bool>().prop_map(|rate_limited| EndpointState::Available { rate_limited }),
    ]
}

fn optional_offset() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(-100_000i64..100_000)
}

prop_compose! {
    fn any_checks()(
        expires in optional_offset(),
        deliver_after in optional_offset(),
        endpoint in endpoint(),
        charged in any::<bool>(),
    ) -> Checks {
        let now = Utc::now();
        Checks::new(
            now,
            expires.map(|ms| at(now, ms)),
            deliver_after.map(|ms| at(now, ms)),
            endpoint,
            charged,
        )
    }
}

fn due_now(endpoint: EndpointState, charged: bool) -> Checks {
    Checks::new(Utc::now(), None, None, endpoint, charged)
}

proptest! {
    #[test]
    fn an_expired_event_is_expired_whatever_else_holds(
        checks in any_checks(), expired_ms_ago in 0i64..100_000,
        waits in prop::collection::vec((gate(), 1i64..10_000), 0..5),
    ) {
        let mut checks = checks;
        checks.expires_at = Some(at(checks.now, -expired_ms_ago));
        let answers: Vec<_> = waits
            .iter()
            .map(|(gate, ms)| (*gate, Answer::WaitUntil(at(checks.now, *ms))))
            .collect();
        let (asked, verdict) = walk(checks.clone(), &answers);
        prop_assert!(asked.is_empty());
        prop_assert_eq!(verdict, Verdict::Expire { expired_at: checks.expires_at.expect("set above") });
    }

    #[test]
    fn a_delivery_scheduled_for_later_waits_for_its_time_and_takes_nothing(
        checks in any_checks(), later_ms in 51i64..1_000_000,
    ) {
        let mut checks = checks;
        checks.expires_at = None;
        checks.deliver_after = Some(at(checks.now, later_ms));
        let (asked, verdict) = walk(checks.clone(), &[]);
        prop_assert!(asked.is_empty());
        prop_assert_eq!(verdict, Verdict::Defer { until: checks.deliver_after.expect("set above"), reason: None });
    }

    #[test]
    fn nothing_is_sent_to_an_unavailable_endpoint(checks in any_checks()) {
        let mut checks = checks;
        checks.expires_at = None;
        checks.deliver_after = None;
        checks.endpoint = EndpointState::Unavailable;
        let (asked, verdict) = walk(checks, &[]);
        prop_assert!(asked.is_empty());
        prop_assert_eq!(verdict, Verdict::EndpointUnavailable);
    }

    #[test]
    fn when_every_gate_passes_each_applicable_gate_is_asked_once_in_order_then_it_sends(
        rate_limited in any::<bool>(), charged in any::<bool>(),
    ) {
        let checks = due_now(EndpointState::Available { rate_limited }, charged);
        // Written out rather than taken from `Gate::ORDER`: the order is what is tested.
        let order = [
            Gate::CircuitOpen,
            Gate::RetryBudget,
            Gate::EndpointSlot,
            Gate::RateLimit,
            Gate::BreakerAdmission,
        ];
        let expected: Vec<Gate> = order
            .into_iter()
            .filter(|gate| match gate {
                Gate::RetryBudget => charged,
                Gate::RateLimit => rate_limited,
                _ => true,
            })
            .collect();
        let (asked, verdict) = walk(checks, &[]);
        prop_assert_eq!(asked, expected);
        prop_assert_eq!(verdict, Verdict::Send);
    }

    /// A gate that makes the delivery wait ends the checks there: no later gate takes a
    /// token, a slot or the breaker's probe for a delivery that is not sent.
    #[test]
    fn the_first_gate_that_says_wait_stops_the_checks_there(
        rate_limited in any::<bool>(), charged in any::<bool>(),
        waits in prop::collection::vec((gate(), 1i64..10_000_000), 1..5),
    ) {
        let checks = due_now(EndpointState::Available { rate_limited }, charged);
        let answers: Vec<_> = waits
            .iter()
            .map(|(gate, ms)| (*gate, Answer::WaitUntil(at(checks.now, *ms))))
            .collect();
        let (asked, verdict) = walk(checks.clone(), &answers);
        let first_wait = asked.iter().position(|gate| answers.iter().any(|(g, _)| g == gate));
        match first_wait {
            None => prop_assert_eq!(verdict, Verdict::Send),
            Some(position) => {
                prop_assert_eq!(position, asked.len() - 1, "gates asked after a wait: {:?}", asked);
                let gate = asked[position];
                let Some((_, Answer::WaitUntil(until))) = answers.iter().find(|(g, _)| *g == gate) else {
                    unreachable!()
                };
                let expected = match gate {
                    Gate::RateLimit => Verdict::Defer { until: *until, reason: Some(DeferralReason::RateLimited) },
                    Gate::RetryBudget => Verdict::Park { until: *until, reason: DeferralReason::RetryBudget },
                    Gate::EndpointSlot => Verdict::Park { until: *until, reason: DeferralReason::EndpointBusy },
                    Gate::CircuitOpen | Gate::BreakerAdmission => Verdict::Park { until: *until, reason: DeferralReason::CircuitOpen },
                };
                prop_assert_eq!(verdict, expected);
            }
        }
    }

    #[test]
    fn a_send_means_every_applicable_gate_was_asked_and_passed(
        checks in any_checks(),
        answers in prop::collection::vec((gate(), prop::option::of(1i64..10_000)), 0..5),
    ) {
        let answers: Vec<_> = answers
            .into_iter()
            .map(|(gate, wait)| (gate, wait.map_or(Answer::Pass, |ms| Answer::WaitUntil(at(checks.now, ms)))))
            .collect();
        let (asked, verdict) = walk(checks.clone(), &answers);
        if verdict == Verdict::Send {
            for gate in Gate::ORDER.into_iter().filter(|gate| checks.applies(*gate)) {
                prop_assert!(asked.contains(&gate));
                let answer = answers.iter().find(|(g, _)| *g == gate).map(|(_, a)| *a);
                prop_assert!(matches!(answer, None | Some(Answer::Pass)));
            }
            prop_assert!(checks.expires_at.is_none_or(|at| checks.now < at));
            prop_assert!(checks.endpoint != EndpointState::Unavailable);
        }
    }

    #[test]
    fn a_parked_delivery_waits_only_within_its_deadline(
        reason in prop_oneof![
            Just(DeferralReason::CircuitOpen),
            Just(DeferralReason::RetryBudget),
            Just(DeferralReason::EndpointBusy),
            Just(DeferralReason::RateLimited),
        ],
        until_ms in 0i64..1_000_000, deadline_ms in 0i64..1_000_000, spread_ms in 0u32..30_000,
    ) {
        let now = Utc::now();
        let (until, deadline) = (at(now, until_ms), at(now, deadline_ms));
        match parked(reason, until, deadline, spread_ms) {
            Parked::Until(due_at) => {
                prop_assert!(due_at <= deadline);
                prop_assert!(due_at >= until);
                let spread = chrono::Duration::from_std(MAX_BREAKER_SPREAD).expect("fits");
                prop_assert!(due_at - until < spread);
                if reason != DeferralReason::CircuitOpen {
                    prop_assert_eq!(due_at, until);
                }
            }
            Parked::DeadLettered { class, .. } => {
                prop_assert!(until > deadline || reason == DeferralReason::CircuitOpen);
                let expected = match reason {
                    DeferralReason::CircuitOpen => ErrorClass::CircuitOpen,
                    DeferralReason::EndpointBusy => ErrorClass::EndpointBusy,
                    _ => ErrorClass::RetryBudget,
                };
                prop_assert_eq!(class, expected);
            }
        }
    }
}

#[test]
fn a_delivery_due_within_the_slack_is_not_deferred() {
    let now = Utc::now();
    let checks = Checks::new(
        now,
        None,
        Some(at(now, 50)),
        EndpointState::Available {
            rate_limited: false,
        },
        false,
    );
    assert_eq!(checks.next(), Verdict::Ask(Gate::CircuitOpen));
}

proptest! {
    /// Spread about as long as parked, within bounds: the deliveries an open breaker gathers
    /// over its open time come back over a comparable time, not in one half-second wave.
    #[test]
    fn parked_deliveries_are_spread_about_as_long_as_they_waited(parked_ms in 0u64..10_000_000) {
        let parked_for = Duration::from_millis(parked_ms);
        let spread = breaker_spread(parked_for);
        prop_assert!(spread >= BREAKER_SPREAD && spread <= MAX_BREAKER_SPREAD);
        if parked_for >= BREAKER_SPREAD && parked_for <= MAX_BREAKER_SPREAD {
            prop_assert_eq!(spread, parked_for);
        }
    }
}
