//! The names analytics uses as its own, all derived from its consumer group
//! (`CONSUMER_GROUP`, default `analytics`): a copy running as `analytics-shadow-<request>`
//! (a shadow replay) shares nothing with the live one but the topics it reads. Every topic
//! it owns is `<group>-<suffix>` and every group id it uses begins with `<group>-`, so the
//! replay-controller removes a shadow with the prefix `<group>-` and promotes it by copying
//! `<shadow group>-<suffix>` onto `<live group>-<suffix>`.

use orderflow_events::{analytics_snapshots_topic, ALL_TOPICS};

/// analytics' own consumer group and the names derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnNames {
    /// The consumer group: consumed, committed, its commits read at start-up, its lag sampled.
    pub group: String,
    /// The compacted state topic: `<group>-snapshots`.
    pub snapshots: String,
}

impl OwnNames {
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_string(),
            snapshots: analytics_snapshots_topic(group),
        }
    }

    /// The client id of the reader of the snapshot topic at start-up (its group id is
    /// `<client id>-reader`: `<group>-snapshots-reader`).
    pub fn snapshots_reader(&self) -> String {
        format!("{}-snapshots", self.group)
    }

    /// The client id of the reader that rebuilds the state from the log
    /// (`<group>-rebuild-reader`).
    pub fn rebuild_reader(&self) -> String {
        format!("{}-rebuild", self.group)
    }

    /// Whether the snapshot topic is one of orderflow's topics, created by every service at
    /// start-up; otherwise analytics creates it (compacted) itself.
    pub fn snapshots_created_by_all(&self) -> bool {
        ALL_TOPICS.contains(&self.snapshots.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_events::{GROUP_ANALYTICS, TOPIC_ANALYTICS_SNAPSHOTS};

    #[test]
    fn the_default_group_keeps_the_names_of_before() {
        let n = OwnNames::new(GROUP_ANALYTICS);
        assert_eq!(n.group, "analytics");
        assert_eq!(n.snapshots, TOPIC_ANALYTICS_SNAPSHOTS);
        assert_eq!(n.snapshots_reader(), "analytics-snapshots");
        assert_eq!(n.rebuild_reader(), "analytics-rebuild");
        assert!(n.snapshots_created_by_all());
    }

    #[test]
    fn a_shadow_owns_names_under_its_group() {
        let n = OwnNames::new("analytics-shadow-s1");
        assert_eq!(n.group, "analytics-shadow-s1");
        assert_eq!(n.snapshots, "analytics-shadow-s1-snapshots");
        for owned in [
            n.snapshots.clone(),
            n.snapshots_reader(),
            n.rebuild_reader(),
        ] {
            assert!(owned.starts_with("analytics-shadow-s1-"), "{owned}");
        }
        assert!(!n.snapshots_created_by_all());
    }
}
