//! The controller SIGKILLed in every phase of a ReplayRequest, then started again: each
//! request still ends Succeeded once, with one reset of the analytics group's offsets (from
//! the offsets analytics had committed, to earliest), analytics' metrics recomputed identical,
//! and both deployments back at their replica counts (docs/replay-controller.md, Safety: "A
//! controller restart in any phase resumes the request: a deployment's previous replica count
//! is never lost, and a reset made just before a crash is recognised by the uid in its commit
//! metadata and not made again"; the rules are in the module docs of src/reconcile/mod.rs).
//!
//! One real kube-apiserver, one broker, one set of service processes (stand-ins for the
//! kubelet, see envtest/main.rs) and one controller process at a time; the requests run one after
//! another, each one only once the previous one's replay has been recomputed and committed.
//!
//! Every kill happens at a point the test has observed, never after a sleep:
//! - Pending and ScalingDown: a consumer outside the analytics Deployment keeps the group
//!   busy, so a request waits in ScalingDown (analytics scaled to 0) and a second request for
//!   the same group queues in Pending behind it; both are persisted, and the kill hits both.
//! - the other phases pass in milliseconds, so the API server is made to refuse the status
//!   write that would *leave* the phase (see [`refuse_phase`]): the controller has done the
//!   phase's work (scaled to 0 / reset the offsets / restored analytics / restored inventory)
//!   and retries the write, the status still names the phase, and the kill lands exactly in
//!   the window a crash between a side effect and its status write would. (A
//!   ValidatingAdmissionPolicy could refuse the same writes on the v1.33 test server, and a
//!   webhook would need a TLS server; the schema is simpler than either, and the controller
//!   needs no test hook.) The one point
//!   this cannot reach is "Resetting persisted, reset not yet made": nothing but the
//!   Resetting Event's POST sits between them. A restart from there runs the Resetting step,
//!   finds no commit naming the request and resets, as the restart held just before
//!   Resetting does here.
//! - HoldingLag lasts `holdSeconds`: the kill comes after the first lag sample, with
//!   inventory held at 0.
//! - Planned is where a dry run stays: killed there, the restarted controller leaves it as it
//!   is (same status, one Planned Event, nothing scaled or committed); executed afterwards
//!   (spec.dryRun false) it runs once.
//! - CatchingUp is held by refusing the HoldingLag write once the group has passed the high
//!   watermarks: the restarted controller follows the same targets and scales inventory once.

#[path = "../common/mod.rs"]
mod common;
mod world;

use std::time::{Duration, Instant};

use common::{
    apply_rr, create_deployment, create_probe, event_reasons_with, events, metrics_when, phase,
    replicas, rr, setup, stand_ins, stray_consumer, wait_group_members, waiting_for_stray,
};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use orderflow_events::CommitMark;
use orderflow_testkit::{wait, Service, ServiceKind};
use replay_controller::crd::{Phase, ReplayRequest, Restore};
use serde_json::json;
use world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_killed_in_every_phase_resumes_and_replays_once() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let env = setup("kill").await?;
    let c = env.client.clone();
    create_deployment(&c, NS, "analytics", 1).await?;
    create_deployment(&c, NS, "inventory", 2).await?;
    create_probe(&env).await?;
    let logs = env.dir.join("logs");
    let (analytics, inventory) = stand_ins(&env, NS, &logs);
    let order = Service::start(ServiceKind::Order, &env.broker.bootstrap, &[], &logs).await?;
    let (status, _) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": ORDERS}),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(status, 200);
    let before = metrics_when(&analytics, "analytics to count every decided order", |m| {
        m["orders_total"] == ORDERS
            && m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0)
                == ORDERS
    })
    .await?;
    let mut w = World {
        analytics,
        inventory,
        before,
        env,
    };
    let kafka = w.kafka();
    let mut ctl = w.controller().await?;
    eprintln!("setup took {:.1?}", t0.elapsed());

    // 0. Planned: a dry run, planned and left alone (nothing scaled, no reset); the kill
    //    there and a restart change nothing; set to execute, it runs once.
    let t = Instant::now();
    let start = w.settled().await?;
    let mut dry = spec(1);
    dry["dryRun"] = json!(true);
    apply_rr(&c, NS, rr("kill-0", dry)).await?;
    let planned = w
        .wait("kill-0", "Planned", |o| phase(o) == Phase::Planned)
        .await?;
    let plan = planned.status.as_ref().and_then(|s| s.plan.clone());
    assert_eq!(plan.as_ref().map(|p| p.partitions.len()), Some(6));
    // at rest once its Event is posted (the status write comes first: a kill between the two
    // loses the Event, see the module docs of src/reconcile/mod.rs)
    event_reasons_with(&c, NS, "kill-0", "Planned").await?;
    ctl = w.crash(ctl).await?;
    // the restarted controller has looked at it (the only request it watches) ...
    wait::until(
        "the restarted controller to reconcile kill-0",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let ok = ctl
                .metric("orderflow_replay_reconciles_total", &[("result", "ok")])
                .await
                .unwrap_or(0.0);
            (ok >= 1.0).then_some(())
        },
    )
    .await?;
    // ... and left it as it was: same plan, one Planned Event, nothing scaled or committed
    let again = w
        .wait("kill-0", "still Planned", |o| phase(o) == Phase::Planned)
        .await?;
    assert_eq!(again.status, planned.status);
    assert_eq!(
        events(&c, NS, "kill-0")
            .await?
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>(),
        ["Planned"]
    );
    assert_eq!(w.analytics.seen().len(), start.analytics_seen);
    assert_eq!(group_offsets(&kafka).await, Some(start.ends.clone()));
    Api::<ReplayRequest>::namespaced(c.clone(), NS)
        .patch(
            "kill-0",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"dryRun": false}})),
        )
        .await?;
    w.succeeded_once("kill-0", Some(&start.ends), None).await?;
    w.restored(&start, &[0, 1], &[0, 2]).await?;
    eprintln!("Planned: {:.1?}", t.elapsed());

    // 1. Pending and ScalingDown, in one kill: "kill-1-a" waits in ScalingDown for a stray
    //    member of the group to leave (analytics already scaled to 0), "kill-1-b" for the
    //    same group is queued in Pending behind it.
    let t = Instant::now();
    let start = w.settled().await?;
    let (stop_stray, stray) = stray_consumer(&kafka)?;
    wait_group_members(&kafka, 2).await?;
    apply_rr(&c, NS, rr("kill-1-a", spec(1))).await?;
    let a = w
        .wait(
            "kill-1-a",
            "ScalingDown, waiting for the stray member",
            waiting_for_stray,
        )
        .await?;
    apply_rr(&c, NS, rr("kill-1-b", spec(1))).await?;
    w.wait("kill-1-b", "Pending behind kill-1-a", |o| {
        phase(o) == Phase::Pending
            && o.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .is_some_and(|m| m.contains("waiting for ReplayRequest kill-1-a"))
    })
    .await?;
    assert_eq!(replicas(&c, NS, "analytics").await?, 0);
    // kill-1-a's ScalingDown Event may follow the status write that shows it waiting
    event_reasons_with(&c, NS, "kill-1-a", "ScalingDown").await?;
    assert_eq!(
        a.status.as_ref().map(|s| s.restore.clone()),
        Some(vec![Restore {
            deployment: "analytics".to_string(),
            replicas: 1
        }])
    );
    ctl = w.crash(ctl).await?;
    // the new controller finds both where they were; the stray member leaves
    stop_stray.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stray.join();
    w.succeeded_once("kill-1-a", Some(&start.ends), Some(&a))
        .await?;
    // kill-1-b ran after kill-1-a had restored analytics, mid-rebuild: its `from` is wherever
    // analytics had got to
    w.succeeded_once("kill-1-b", None, None).await?;
    w.restored(&start, &[0, 1, 0, 1], &[0, 2, 0, 2]).await?;
    eprintln!("Pending + ScalingDown: {:.1?}", t.elapsed());

    // 2. Between ScalingDown and Resetting, analytics held at 0: scaled down, the group empty,
    //    the Resetting write refused.
    let t = Instant::now();
    let k = kafka.clone();
    let cl = c.clone();
    let (new_ctl, start, at_kill) = w
        .kill_refusing(
            ctl,
            "kill-2",
            Phase::Resetting,
            async |o: &ReplayRequest| {
                phase(o) == Phase::ScalingDown
                    && replicas(&cl, NS, "analytics").await.ok() == Some(0)
                    && group_is_empty(&k).await
            },
        )
        .await?;
    ctl = new_ctl;
    w.succeeded_once("kill-2", Some(&start.ends), Some(&at_kill))
        .await?;
    w.restored(&start, &[0, 1], &[0, 2]).await?;
    eprintln!("ScalingDown -> Resetting: {:.1?}", t.elapsed());

    // 3. Resetting: the offsets reset (every partition's commit names this request), the
    //    Restoring write refused. The new controller must find the reset, not make another.
    let t = Instant::now();
    let k = kafka.clone();
    let (new_ctl, start, at_kill) = w
        .kill_refusing(
            ctl,
            "kill-3",
            Phase::Restoring,
            async |o: &ReplayRequest| {
                let uid = o.uid().unwrap_or_default();
                phase(o) == Phase::Resetting
                    && commit_metadata(&k).await.is_some_and(|m| {
                        m.len() == 6
                            && m.iter().all(|m| {
                                CommitMark::of(m)
                                    .is_some_and(|m| m.reset_by_of().is_some_and(|b| b.by == uid))
                            })
                    })
            },
        )
        .await?;
    ctl = new_ctl;
    w.succeeded_once("kill-3", Some(&start.ends), Some(&at_kill))
        .await?;
    let restoring = events(&c, NS, "kill-3")
        .await?
        .into_iter()
        .find(|(reason, _)| reason == "Restoring")
        .map(|(_, note)| note)
        .unwrap_or_default();
    assert!(
        restoring.contains("found already made by this request"),
        "{restoring}"
    );
    w.restored(&start, &[0, 1], &[0, 2]).await?;
    eprintln!("Resetting: {:.1?}", t.elapsed());

    // 4. Restoring: analytics restored, the CatchingUp write refused (so the status still
    //    lists analytics to restore, and inventory is not scaled yet).
    let t = Instant::now();
    let cl = c.clone();
    let (new_ctl, start, at_kill) = w
        .kill_refusing(
            ctl,
            "kill-4",
            Phase::CatchingUp,
            async |o: &ReplayRequest| {
                phase(o) == Phase::Restoring
                    && o.status.as_ref().is_some_and(|s| {
                        s.restore
                            == [Restore {
                                deployment: "analytics".to_string(),
                                replicas: 1,
                            }]
                    })
                    && replicas(&cl, NS, "analytics").await.ok() == Some(1)
                    && replicas(&cl, NS, "inventory").await.ok() == Some(2)
            },
        )
        .await?;
    ctl = new_ctl;
    w.succeeded_once("kill-4", Some(&start.ends), Some(&at_kill))
        .await?;
    w.restored(&start, &[0, 1], &[0, 2]).await?;
    eprintln!("Restoring: {:.1?}", t.elapsed());

    // 4b. CatchingUp: analytics restored and past the high watermarks read at reset time, the
    //     HoldingLag write refused (inventory not scaled yet). The new controller follows the
    //     same targets (not read again) and scales inventory once.
    let t = Instant::now();
    let (cl, k) = (c.clone(), kafka.clone());
    let (new_ctl, start, at_kill) = w
        .kill_refusing(
            ctl,
            "kill-4b",
            Phase::HoldingLag,
            async |o: &ReplayRequest| {
                let Some(cu) = o.status.as_ref().and_then(|s| s.catch_up.clone()) else {
                    return false;
                };
                let passed = group_offsets(&k).await.is_some_and(|p| {
                    cu.partitions.iter().all(|t| {
                        p.iter().any(|p| {
                            p.topic == t.topic
                                && p.partition == t.partition
                                && p.committed.is_some_and(|c| c >= t.target)
                        })
                    })
                });
                phase(o) == Phase::CatchingUp
                    && o.status.as_ref().is_some_and(|s| s.restore.is_empty())
                    && passed
                    && replicas(&cl, NS, "analytics").await.ok() == Some(1)
                    && replicas(&cl, NS, "inventory").await.ok() == Some(2)
            },
        )
        .await?;
    ctl = new_ctl;
    let done = w
        .succeeded_once("kill-4b", Some(&start.ends), Some(&at_kill))
        .await?;
    let targets = |o: &ReplayRequest| {
        o.status
            .as_ref()
            .and_then(|s| s.catch_up.as_ref())
            .map(|c| (c.partitions.clone(), c.records_total))
    };
    assert_eq!(targets(&done), targets(&at_kill));
    w.restored(&start, &[0, 1], &[0, 2]).await?;
    eprintln!("CatchingUp: {:.1?}", t.elapsed());

    // 5. HoldingLag: inventory held at 0 (its process stopped) while more orders arrive,
    //    a lag sample of them taken.
    let t = Instant::now();
    let start = w.settled().await?;
    apply_rr(&c, NS, rr("kill-5", spec(10))).await?;
    w.wait("kill-5", "HoldingLag with a lag sample", |o| {
        phase(o) == Phase::HoldingLag
            && o.status
                .as_ref()
                .and_then(|s| s.lag.as_ref())
                .is_some_and(|l| !l.samples.is_empty())
    })
    .await?;
    wait::until(
        "the inventory stand-in to stop its process",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let stopped = w.inventory.url().is_none();
            async move { stopped.then_some(()) }
        },
    )
    .await?;
    assert_eq!(replicas(&c, NS, "inventory").await?, 0);
    let (status, _) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": LAG_ORDERS}),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(status, 200);
    let held = w
        .wait("kill-5", "a lag sample of the new orders", |o| {
            phase(o) == Phase::HoldingLag
                && o.status
                    .as_ref()
                    .and_then(|s| s.lag.as_ref())
                    .is_some_and(|l| l.peak >= LAG_ORDERS as i64)
        })
        .await?;
    assert_eq!(replicas(&c, NS, "inventory").await?, 0);
    let st = held.status.clone().unwrap_or_default();
    assert_eq!(
        st.restore,
        [Restore {
            deployment: "inventory".to_string(),
            replicas: 2
        }]
    );
    assert!(
        st.lag.as_ref().is_some_and(|l| l.restored_at.is_none()),
        "{:?}",
        st.lag
    );
    ctl = w.crash(ctl).await?;
    let done = w
        .succeeded_once("kill-5", Some(&start.ends), Some(&held))
        .await?;
    // the hold kept its end and its samples across the crash, and the lag drained after it
    let lag = done.status.and_then(|s| s.lag).unwrap_or_default();
    let lag_before = st.lag.clone().unwrap_or_default();
    assert_eq!(lag.hold_until, lag_before.hold_until);
    assert!(lag.peak >= LAG_ORDERS as i64, "{lag:?}");
    assert!(
        lag.samples.starts_with(&lag_before.samples),
        "{lag:?} / {lag_before:?}"
    );
    assert!(lag.restored_at.is_some(), "{lag:?}");
    w.restored(&start, &[0, 1], &[0, 2]).await?;
    // every order is counted now: the reference the next replay must recompute
    w.before = metrics_when(&w.analytics, "analytics to count the new orders", |m| {
        m["orders_total"] == ORDERS + LAG_ORDERS
            && m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0)
                == ORDERS + LAG_ORDERS
    })
    .await?;
    eprintln!("HoldingLag: {:.1?}", t.elapsed());

    // 6. Between HoldingLag and Succeeded: inventory restored, the lag drained, the
    //    Succeeded write refused.
    let t = Instant::now();
    let cl = c.clone();
    let (new_ctl, start, at_kill) = w
        .kill_refusing(
            ctl,
            "kill-6",
            Phase::Succeeded,
            async |o: &ReplayRequest| {
                phase(o) == Phase::HoldingLag
                    && o.status.as_ref().is_some_and(|s| {
                        s.restore.is_empty()
                            && s.lag.as_ref().is_some_and(|l| l.restored_at.is_some())
                    })
                    && replicas(&cl, NS, "inventory").await.ok() == Some(2)
            },
        )
        .await?;
    ctl = new_ctl;
    w.succeeded_once("kill-6", Some(&start.ends), Some(&at_kill))
        .await?;
    w.restored(&start, &[0, 1], &[0, 2]).await?;
    eprintln!("HoldingLag -> Succeeded: {:.1?}", t.elapsed());

    // the last replay recomputed too
    w.settled().await?;
    ctl.stop(Duration::from_secs(10)).await?;
    w.analytics.shutdown().await;
    w.inventory.shutdown().await;
    drop(order);
    eprintln!("total {:.1?}", t0.elapsed());
    w.env.passed();
    Ok(())
}
