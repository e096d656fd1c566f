//! Lag in time, exact: on a partition where the group is behind, how old the next record it
//! reads is — now minus the timestamp of the record at the committed offset. That record is
//! read from Kafka (see `groups::records`), never interpolated from offsets and rates (an
//! interpolation is wrong exactly when it matters, during a replay, where old records are
//! read at a new rate). Pure: nothing here talks to Kafka.

use crate::model::PartitionLag;

/// What reading at a partition's next offset found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRecord {
    /// The record the group reads next, with its timestamp (Unix ms; CreateTime or
    /// LogAppendTime, as the topic stamps them).
    At(i64),
    /// No record to read between the committed offset and the end: what is left are
    /// transaction markers or aborted records, which a `read_committed` consumer never
    /// sees, so the group is caught up in time.
    Nothing,
}

/// The offset of the next record the group reads on `p`: its committed offset, or the low
/// watermark when it never committed there or its offset fell below it (records deleted;
/// its consumer starts at the oldest record held).
pub fn next_offset(p: &PartitionLag) -> i64 {
    p.committed.unwrap_or(p.low_watermark).max(p.low_watermark)
}

/// The partition's lag in seconds at `now_ms`: 0 when the group is caught up (`lag` 0, no
/// read needed) or only markers / aborted records are left; otherwise `now_ms` minus the
/// next record's timestamp, in ms precision, never negative (a record stamped ahead of this
/// clock counts 0). `None` when the record could not be read.
pub fn lag_seconds(lag: i64, next: Option<NextRecord>, now_ms: i64) -> Option<f64> {
    if lag <= 0 {
        return Some(0.0);
    }
    match next? {
        NextRecord::Nothing => Some(0.0),
        NextRecord::At(ts_ms) => Some(ms_to_seconds(now_ms.saturating_sub(ts_ms).max(0))),
    }
}

/// Milliseconds as seconds (exact to the ms).
pub fn ms_to_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The largest lag in seconds over `partitions` whose lag in seconds is known; `None`
/// when none is.
pub fn max_lag_seconds(partitions: &[PartitionLag]) -> Option<f64> {
    partitions
        .iter()
        .filter_map(|p| p.lag_seconds)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))
}

impl PartitionLag {
    /// Set the lag in seconds from what reading at the next offset found (`None`: not read
    /// or not in time), at `now_ms`.
    pub fn with_time(mut self, next: Option<NextRecord>, now_ms: i64) -> Self {
        self.next_record_ms = match next {
            Some(NextRecord::At(ts)) if self.lag > 0 => Some(ts),
            _ => None,
        };
        self.lag_seconds = lag_seconds(self.lag, next, now_ms);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::p;

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn zero_when_caught_up_without_reading() {
        assert_eq!(lag_seconds(0, None, NOW), Some(0.0));
        // caught up: whatever a read found does not matter
        assert_eq!(
            lag_seconds(0, Some(NextRecord::At(NOW - 5_000)), NOW),
            Some(0.0)
        );
    }

    #[test]
    fn now_minus_the_next_records_timestamp_otherwise() {
        assert_eq!(
            lag_seconds(3, Some(NextRecord::At(NOW - 12_345)), NOW),
            Some(12.345)
        );
        // an hour-old record during a replay is an hour of lag, whatever the rate
        assert_eq!(
            lag_seconds(1, Some(NextRecord::At(NOW - 3_600_000)), NOW),
            Some(3600.0)
        );
        // a record stamped ahead of our clock: 0, never negative
        assert_eq!(
            lag_seconds(1, Some(NextRecord::At(NOW + 900)), NOW),
            Some(0.0)
        );
        // only markers / aborted records left: caught up in time
        assert_eq!(lag_seconds(1, Some(NextRecord::Nothing), NOW), Some(0.0));
        // not read: unknown, not 0
        assert_eq!(lag_seconds(5, None, NOW), None);
    }

    #[test]
    fn the_next_offset_is_the_committed_one_or_the_oldest_held() {
        assert_eq!(next_offset(&p("orders", 0, Some(40), 10, 100)), 40);
        assert_eq!(next_offset(&p("orders", 0, None, 10, 100)), 10);
        // committed below the log start offset (records deleted): the oldest held
        assert_eq!(next_offset(&p("orders", 0, Some(2), 10, 100)), 10);
    }

    #[test]
    fn with_time_and_the_maximum() {
        let a = p("orders", 0, Some(40), 0, 100).with_time(Some(NextRecord::At(NOW - 2_000)), NOW);
        assert_eq!(
            (a.lag_seconds, a.next_record_ms),
            (Some(2.0), Some(NOW - 2_000))
        );
        let b = p("orders", 1, Some(7), 0, 7).with_time(None, NOW);
        assert_eq!((b.lag_seconds, b.next_record_ms), (Some(0.0), None));
        let c = p("orders", 2, Some(1), 0, 9).with_time(None, NOW);
        assert_eq!(c.lag_seconds, None);
        assert_eq!(
            max_lag_seconds(&[a.clone(), b.clone(), c.clone()]),
            Some(2.0)
        );
        assert_eq!(max_lag_seconds(&[c]), None);
        assert_eq!(max_lag_seconds(&[b]), Some(0.0));
        assert_eq!(max_lag_seconds(&[]), None);
    }
}
