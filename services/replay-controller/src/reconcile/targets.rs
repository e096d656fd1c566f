//! The reconciler's side of a request's target ([`crate::targets`]): an undo resolved by
//! reading the undone request, and the checks made against Kafka before anything changes:
//! a plan in Pending (before the deployment is scaled down) for every target that Kafka's
//! answer decides, and the retention guard (reason BeforeRetention) again just before the
//! reset.

use orderflowctl::{CommittedOffset, ResetTo};

use super::{Run, StepError};
use crate::targets::{self, Target};

/// A failure: reason and message.
pub(super) type Refusal = (&'static str, String);

impl Run<'_> {
    /// The request's reset target: from its spec, or for spec.undoOf the offsets the undone
    /// request recorded (read fresh from the API server). `Ok(Err(..))`: the request fails.
    pub(super) async fn target(&self) -> Result<Result<ResetTo, Refusal>, StepError> {
        match self.spec().validate() {
            Err(msg) => Ok(Err(("InvalidSpec", msg))),
            Ok(Target::Reset(to)) => Ok(Ok(to)),
            Ok(Target::Undo(name)) => {
                let undone = self.rrs.get_opt(&name).await?;
                Ok(targets::undo_offsets(self.spec(), undone.as_ref(), &name))
            }
        }
    }

    /// Plan the reset without committing and refuse what it shows: a timestamp or duration
    /// target before the oldest record held (unless spec.allowTruncated). With `all`, every
    /// target but earliest and latest is planned, so that Kafka's refusals (a shift where
    /// the group never committed, a partition that does not exist) fail the request before
    /// its deployment is scaled down; those come back as Kafka errors with a permanent reason.
    pub(super) async fn refusal(
        &self,
        to: &ResetTo,
        all: bool,
    ) -> Result<Option<Refusal>, StepError> {
        let spec = self.spec();
        let guarded = targets::guarded(spec, to);
        let planned = all && !matches!(to, ResetTo::Earliest | ResetTo::Latest);
        if !guarded && !planned {
            return Ok(None);
        }
        let plan = self
            .ctx
            .admin
            .plan(&spec.consumer_group, &spec.topics, to.clone())
            .await?;
        if !guarded {
            return Ok(None);
        }
        Ok(
            targets::before_retention(&spec.consumer_group, &targets::label(spec), &plan)
                .map(|m| (targets::BEFORE_RETENTION, m)),
        )
    }
}

/// The committed offsets a reset to `to` commits: those of the partitions an explicit list
/// names, or all.
pub(super) fn reset_partitions(
    to: &ResetTo,
    committed: Vec<CommittedOffset>,
) -> Vec<CommittedOffset> {
    match to {
        ResetTo::ToOffsets(list) => committed
            .into_iter()
            .filter(|c| {
                list.iter()
                    .any(|o| o.topic == c.topic && o.partition == c.partition)
            })
            .collect(),
        _ => committed,
    }
}
