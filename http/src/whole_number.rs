//! Integer body fields that also take a whole number written with a fraction (`3600.0`).
//! JSON Schema calls `3600.0` an integer and generated clients (JavaScript above all) send
//! it, while serde's integer types refuse it; `3600.5` and out-of-range values are still
//! refused, naming the field.
//!
//! `#[serde(default, deserialize_with = "herald_http::whole_number::optional")]`

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// For an `Option<T>` field: `null` or absent (with `#[serde(default)]`) is `None`.
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    deserializer.deserialize_option(OptionalWhole(PhantomData))
}

/// For a required integer field.
pub fn required<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    deserializer.deserialize_any(Whole(PhantomData))
}

struct Whole<T>(PhantomData<T>);

impl<T: TryFrom<i128>> Whole<T> {
    fn fit<E: de::Error>(value: i128) -> Result<T, E> {
        T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))
    }
}

impl<'de, T: TryFrom<i128>> Visitor<'de> for Whole<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        Self::fit(i128::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Self::fit(i128::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        // Beyond 2^63 an f64 is out of every range these fields have anyway.
        if value.fract() != 0.0 || !value.is_finite() || value.abs() >= 9.2e18 {
            return Err(E::invalid_type(de::Unexpected::Float(value), &self));
        }
        Self::fit(value as i128)
    }
}

struct OptionalWhole<T>(PhantomData<T>);

impl<'de, T: TryFrom<i128>> Visitor<'de> for OptionalWhole<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a whole number or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        required(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "super::optional")]
        seconds: Option<u32>,
        #[serde(deserialize_with = "super::required")]
        count: u16,
    }

    fn parse(json: &str) -> Result<Fields, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn whole_numbers_with_or_without_a_fraction() {
        let fields = parse(r#"{"seconds": 3600.0, "count": 2}"#).expect("3600.0");
        assert_eq!((fields.seconds, fields.count), (Some(3600), 2));
        let fields = parse(r#"{"seconds": null, "count": 7.0}"#).expect("null");
        assert_eq!((fields.seconds, fields.count), (None, 7));
        let fields = parse(r#"{"count": 1e2}"#).expect("absent");
        assert_eq!((fields.seconds, fields.count), (None, 100));
    }

    #[test]
    fn fractions_and_out_of_range_are_refused() {
        for json in [
            r#"{"count": 1.5}"#,
            r#"{"count": -1}"#,
            r#"{"count": 70000}"#,
            r#"{"count": "2"}"#,
            r#"{"count": 1e300}"#,
            r#"{"seconds": -1.0, "count": 1}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }
}
