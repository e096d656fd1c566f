//! Sampling a group's lag again and again with one client.

use std::time::{Duration, Instant};

use orderflow_runtime::KafkaConfig;

use super::handle::GroupHandle;
use super::records::RecordReader;
use super::timed_sample;
use crate::error::GroupError;
use crate::model::LagSample;

/// One client kept open to sample a group's lag on the same topics again and again (the lag
/// exporter of analytics-service, [`watch_lag`]). The topics' partitions are looked up once,
/// when it is opened; the reader of the records at the committed offsets (lag in seconds)
/// is opened once too and reused.
pub struct LagProbe {
    handle: GroupHandle,
    parts: Vec<(String, i32)>,
    reader: RecordReader,
    timeout: Duration,
}

impl LagProbe {
    /// Fails when a topic does not exist (yet).
    pub fn open(
        kafka: &KafkaConfig,
        group: &str,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<Self, GroupError> {
        let handle = GroupHandle::open(kafka, group, timeout)?;
        let parts = handle.partitions(topics)?;
        let reader = RecordReader::open(kafka)?;
        Ok(Self {
            handle,
            parts,
            reader,
            timeout,
        })
    }

    pub fn group(&self) -> &str {
        &self.handle.group
    }

    /// The group's lag on every partition now, in records and in seconds, with the time it
    /// was taken.
    pub fn sample(&self) -> Result<LagSample, GroupError> {
        let partitions = self.handle.lag(&self.parts)?;
        Ok(timed_sample(&self.reader, partitions, self.timeout))
    }
}

/// How [`watch_lag`] samples.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Time between the starts of two samples.
    pub interval: Duration,
    /// Stop at the first sample with total lag 0.
    pub until_zero: bool,
    /// Stop after this long (`None`: only `until_zero` or an error stops).
    pub timeout: Option<Duration>,
}

/// Why [`watch_lag`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// A sample had total lag 0 (only with `until_zero`), after this many ms.
    Drained { after_ms: u64, samples: usize },
    /// `timeout` passed first; `last_total` is the last sample's total lag.
    TimedOut { last_total: i64, samples: usize },
}

/// Sample `group`'s lag on `topics` every `opts.interval` with one client, handing each
/// sample to `on_sample`, until the lag is 0 (`until_zero`) or `opts.timeout` passes.
/// `request_timeout` bounds each broker request.
pub fn watch_lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    opts: &WatchOptions,
    request_timeout: Duration,
    mut on_sample: impl FnMut(&LagSample),
) -> Result<WatchEnd, GroupError> {
    let start = Instant::now();
    let deadline = opts.timeout.map(|t| start + t);
    let probe = LagProbe::open(kafka, group, topics, request_timeout)?;
    let mut samples = 0usize;
    loop {
        let tick = Instant::now();
        let sample = probe.sample()?;
        samples += 1;
        on_sample(&sample);
        if opts.until_zero && sample.total == 0 {
            return Ok(WatchEnd::Drained {
                after_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                samples,
            });
        }
        let next = tick + opts.interval;
        if deadline.is_some_and(|d| next > d) {
            return Ok(WatchEnd::TimedOut {
                last_total: sample.total,
                samples,
            });
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
