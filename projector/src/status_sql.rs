//! Status rules rendered as SQL, from the same definitions the Rust code uses
//! (`herald_schemas::status`), so the read model's statements and the projector's in-memory
//! folding cannot disagree. The text is built once and is static afterwards, so statements
//! stay prepared and partial indexes (`WHERE status IN ('pending', 'retrying')`) still match.

use herald_schemas::{DeliveriesCondition, DeliveryStatus, EventStatus};
use std::fmt::Write;

/// `'a', 'b'`: the statuses' words as SQL string literals, for an `IN (…)` list.
pub fn in_list(statuses: &[DeliveryStatus]) -> String {
    statuses
        .iter()
        // The words are lowercase letters and underscores: nothing to escape.
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`EventStatus::RULE`] as an aggregate `CASE` over a group of `deliveries` rows (columns
/// `status` and `attempt_count`), e.g. `SELECT event_id, <this> FROM deliveries GROUP BY
/// event_id`.
pub fn event_status_case() -> String {
    let mut sql = String::from("CASE");
    for (condition, status) in EventStatus::RULE {
        let test = match condition {
            DeliveriesCondition::EveryStatusIn([single]) => {
                format!("bool_and(status = '{}')", single.as_str())
            }
            DeliveriesCondition::EveryStatusIn(statuses) => {
                format!("bool_and(status IN ({}))", in_list(statuses))
            }
            DeliveriesCondition::AnyAttemptMade => "bool_or(attempt_count > 0)".to_owned(),
        };
        // Writing to a String cannot fail.
        let _ = write!(sql, " WHEN {test} THEN '{}'", status.as_str());
    }
    let _ = write!(sql, " ELSE '{}' END", EventStatus::OTHERWISE.as_str());
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_event_status_case_reads_like_hand_written_sql() {
        assert_eq!(
            event_status_case(),
            "CASE WHEN bool_and(status = 'succeeded') THEN 'delivered' \
             WHEN bool_and(status IN ('succeeded', 'failed', 'dead_lettered', 'expired')) THEN 'failed' \
             WHEN bool_or(attempt_count > 0) THEN 'delivering' \
             ELSE 'pending' END"
        );
        assert_eq!(
            in_list(&DeliveryStatus::UNFINISHED),
            "'pending', 'retrying'"
        );
    }

    /// Every event of one to three deliveries, each delivery any status with or without
    /// attempts: the generated SQL, run by the stack's Postgres, and the Rust rule agree.
    #[tokio::test]
    async fn sql_and_rust_derive_the_same_event_status() {
        let url = std::env::var("HERALD_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://herald:herald@127.0.0.1:15432/herald".to_owned());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("Postgres of the local stack (scripts/stack.sh up)");

        let deliveries: Vec<(DeliveryStatus, u32)> = DeliveryStatus::ALL
            .into_iter()
            .flat_map(|status| [(status, 0), (status, 2)])
            .collect();
        let mut events: Vec<Vec<(DeliveryStatus, u32)>> = Vec::new();
        for (first, &one) in deliveries.iter().enumerate() {
            events.push(vec![one]);
            for (second, &two) in deliveries.iter().enumerate().skip(first) {
                events.push(vec![one, two]);
                for &three in &deliveries[second..] {
                    events.push(vec![one, two, three]);
                }
            }
        }
        let (mut group, mut status, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
        for (index, event) in events.iter().enumerate() {
            for &(delivery_status, attempt_count) in event {
                group.push(index as i32);
                status.push(delivery_status.as_str());
                attempts.push(attempt_count as i32);
            }
        }
        let sql = format!(
            "SELECT group_id, {} AS status \
             FROM UNNEST($1::int4[], $2::text[], $3::int4[]) AS d(group_id, status, attempt_count) \
             GROUP BY group_id",
            event_status_case()
        );
        let derived: BTreeMap<i32, String> = sqlx::query_as::<_, (i32, String)>(&sql)
            .bind(&group)
            .bind(&status)
            .bind(&attempts)
            .fetch_all(&pool)
            .await
            .expect("the generated CASE runs")
            .into_iter()
            .collect();

        assert_eq!(derived.len(), events.len());
        for (index, event) in events.iter().enumerate() {
            let in_sql = derived.get(&(index as i32)).map(String::as_str);
            let in_rust = EventStatus::of_deliveries(event).as_str();
            assert_eq!(in_sql, Some(in_rust), "deliveries {event:?}");
        }
    }
}
