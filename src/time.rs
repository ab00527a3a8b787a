//! Conversions between Kubernetes timestamps (`Time`, `MicroTime`: jiff inside) and the chrono times
//! the planner works in. Out-of-range values (impossible in practice) become `None`.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    i64::try_from(t.as_nanosecond())
        .ok()
        .map(DateTime::from_timestamp_nanos)
}

fn to_timestamp(t: DateTime<Utc>) -> Option<Timestamp> {
    Timestamp::from_nanosecond(t.timestamp_nanos_opt()?.into()).ok()
}

pub fn time_to_chrono(t: &Time) -> Option<DateTime<Utc>> {
    from_timestamp(&t.0)
}

pub fn micro_to_chrono(t: &MicroTime) -> Option<DateTime<Utc>> {
    from_timestamp(&t.0)
}

pub fn chrono_to_time(t: DateTime<Utc>) -> Option<Time> {
    to_timestamp(t).map(Time)
}

pub fn chrono_to_micro(t: DateTime<Utc>) -> Option<MicroTime> {
    to_timestamp(t).map(MicroTime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_keep_nanoseconds() {
        let t = DateTime::from_timestamp_nanos(1_800_000_000_123_456_789);
        assert_eq!(chrono_to_time(t).as_ref().and_then(time_to_chrono), Some(t));
        assert_eq!(
            chrono_to_micro(t).as_ref().and_then(micro_to_chrono),
            Some(t)
        );
    }
}
