//! Shadow replay on the local control plane (kube-apiserver + etcd, stand-in kubelets) and
//! Apache Kafka: a shadow, then its promotion, ends on the numbers an in-place replay to the
//! same target gives, and the live analytics API answers the whole time.
//!
//! No kube-proxy runs here, so the test plays the Service `analytics` (selector
//! `app: analytics`) as kube-proxy would: each poll goes to an endpoint of a Deployment whose
//! pod labels match the selector and whose process answers `/readyz` with 200. A poll that
//! finds no such endpoint, or gets a non-2xx from `/api/metrics`, is a failure.

#[path = "../common/mod.rs"]
mod common;
mod shop;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{
    apply_rr, create_probe, event_reasons_with, metrics_when, phase, refuse_phase, rr,
    start_controller, wait_rr,
};
use orderflow_testkit::wait;
use replay_controller::crd::Phase;
use shop::{decided, numbers, play_the_service, poller_stop, Polls, Shop, COPY};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_then_promote_equals_an_in_place_replay_and_the_live_api_never_stops(
) -> anyhow::Result<()> {
    let shop = Shop::start("shadow").await?;
    let (env, live, copy, all) = (&shop.env, &shop.live, &shop.copy, &shop.all);
    let (c, ns) = (env.client.clone(), "default");
    let polls = Arc::new(Polls::default());
    let poller = play_the_service(
        c.clone(),
        ns.to_string(),
        vec![("analytics", live.clone()), (COPY, copy.clone())],
        polls.clone(),
    );
    let ctl = start_controller(env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;
    let spec = |strategy: &str| shop.spec(strategy);
    apply_rr(&c, ns, rr("s1", spec("Shadow"))).await?;
    let shadowing = wait_rr(
        &c,
        ns,
        "s1",
        "Shadowing with numbers",
        Duration::from_secs(120),
        |o| {
            phase(o).is_final()
                || (phase(o) == Phase::Shadowing
                    && o.status
                        .as_ref()
                        .and_then(|s| s.shadow.as_ref())
                        .and_then(|s| s.metrics.as_ref())
                        .and_then(|m| m.shadow.as_ref())
                        .is_some_and(|m| {
                            m.orders_total == 500 && m.reserved_total + m.failed_total == 500
                        }))
        },
    )
    .await?;
    assert_eq!(
        phase(&shadowing),
        Phase::Shadowing,
        "{:?}",
        shadowing.status
    );
    let sh = shadowing
        .status
        .clone()
        .and_then(|s| s.shadow)
        .unwrap_or_default();
    assert_eq!(sh.consumer_group, COPY);
    let m = sh.metrics.clone().unwrap_or_default();
    assert_eq!(
        m.live.map(|l| l.orders_total),
        Some(1700),
        "the live numbers beside"
    );
    // the copy itself counts the replay: the 500 orders after the target
    let replayed = metrics_when(copy, "the copy to count 500 orders", |m| {
        m["orders_total"] == 500 && decided(m) == 500
    })
    .await?;
    // the live analytics was never scaled nor restarted, and still counts everything
    assert_eq!(live.seen(), vec![1]);
    let live_now = metrics_when(live, "live analytics unchanged", |m| {
        m["orders_total"] == 1700
    })
    .await?;
    assert_eq!(numbers(&live_now), numbers(all));

    shop.promote("s1").await?;
    let done = wait_rr(&c, ns, "s1", "promoted", Duration::from_secs(120), |o| {
        phase(o).is_final()
    })
    .await?;
    assert_eq!(phase(&done), Phase::Succeeded, "{:?}", done.status);
    let sh = done
        .status
        .clone()
        .and_then(|s| s.shadow)
        .unwrap_or_default();
    assert!(
        sh.serving_at.is_some() && sh.promoted_at.is_some() && sh.removed_at.is_some(),
        "{sh:?}"
    );
    let promoted = metrics_when(live, "live analytics on the shadow's numbers", |m| {
        m["orders_total"] == 500 && decided(m) == 500
    })
    .await?;
    assert_eq!(
        numbers(&promoted),
        numbers(&replayed),
        "the live state is the shadow's"
    );
    poller_stop(&polls);
    let failures = poller.await?;
    assert_eq!(
        polls.failed.load(Ordering::SeqCst),
        0,
        "the Service did not answer: {failures:?}"
    );
    assert!(polls.ok.load(Ordering::SeqCst) > 20);

    shop.shadow_removed().await?;

    // an in-place replay to the same target gives the same numbers
    apply_rr(&c, ns, rr("in-place", spec("InPlace"))).await?;
    let done = wait_rr(&c, ns, "in-place", "done", Duration::from_secs(120), |o| {
        phase(o).is_final()
    })
    .await?;
    assert_eq!(phase(&done), Phase::Succeeded, "{:?}", done.status);
    let in_place = metrics_when(live, "live analytics after the in-place replay", |m| {
        m["orders_total"] == 500 && decided(m) == 500
    })
    .await?;
    assert_eq!(numbers(&in_place), numbers(&promoted));

    ctl.stop(Duration::from_secs(10)).await?;
    shop.shutdown().await;
    Ok(())
}

/// The controller SIGKILLed in each shadow step, held there by refusing the status write
/// that leaves it (kill_phases/main.rs explains the technique): the restarted controller resumes,
/// and nothing is made twice. Held points, in order:
/// - entering ShadowCatchingUp refused: the shadow group is reset (recorded) and the copy
///   created; the restart finds its own copy and neither resets nor creates again;
/// - entering Shadowing refused: the copy caught up; the restart follows it again;
/// - Shadowing itself, where a shadow rests;
/// - entering Restoring refused: the copy serves with the live labels, analytics is at 0,
///   the shadow's commits and state are copied onto the live ones but not recorded; the
///   restart copies again (nothing new) and restores analytics once;
/// - entering Succeeded refused: the live group caught up and the shadow is removed but not
///   recorded; the restart finds nothing left to remove.
///
/// Then: one Event per phase, analytics scaled down and up once, the copy created once, the
/// live numbers the shadow's, and the shadow gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_killed_in_each_shadow_step_resumes_without_doing_anything_twice(
) -> anyhow::Result<()> {
    let shop = Shop::start("shadow-kill").await?;
    let env = &shop.env;
    let (c, ns) = (env.client.clone(), "default");
    create_probe(env).await?;
    let vars = [("WATCH_NAMESPACE", ns.to_string())];
    let mut ctl = start_controller(env, &vars).await?;
    let held = |p: Phase| move |o: &replay_controller::ReplayRequest| phase(o) == p;
    let hold = |refused: Phase, before: Phase| async move {
        refuse_phase(env, refused, true).await?;
        anyhow::Ok(before)
    };

    // ShadowStarting, held after the copy is created
    hold(Phase::ShadowCatchingUp, Phase::ShadowStarting).await?;
    apply_rr(&c, ns, rr("s1", shop.spec("Shadow"))).await?;
    wait::until(
        "the copy to run",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let up = shop.copy.url().is_some();
            async move { up.then_some(()) }
        },
    )
    .await?;
    let at = wait_rr(
        &c,
        ns,
        "s1",
        "ShadowStarting with the reset recorded",
        Duration::from_secs(60),
        |o| {
            held(Phase::ShadowStarting)(o)
                && o.status
                    .as_ref()
                    .and_then(|s| s.shadow.as_ref())
                    .is_some_and(|s| s.reset_at.is_some())
        },
    )
    .await?;
    ctl.kill();
    refuse_phase(env, Phase::ShadowCatchingUp, false).await?;
    // ShadowCatchingUp, held once caught up
    hold(Phase::Shadowing, Phase::ShadowCatchingUp).await?;
    ctl = start_controller(env, &vars).await?;
    let caught = wait_rr(
        &c,
        ns,
        "s1",
        "ShadowCatchingUp caught up",
        Duration::from_secs(60),
        |o| held(Phase::ShadowCatchingUp)(o),
    )
    .await?;
    assert_eq!(
        caught.status.as_ref().and_then(|s| s.started_at.clone()),
        at.status.as_ref().and_then(|s| s.started_at.clone()),
        "the restart resumed the request"
    );
    metrics_when(&shop.copy, "the copy to count 500 orders", |m| {
        m["orders_total"] == 500
    })
    .await?;
    event_reasons_with(&c, ns, "s1", "ShadowCatchingUp").await?;
    ctl.kill();
    refuse_phase(env, Phase::Shadowing, false).await?;
    ctl = start_controller(env, &vars).await?;
    wait_rr(
        &c,
        ns,
        "s1",
        "Shadowing",
        Duration::from_secs(60),
        held(Phase::Shadowing),
    )
    .await?;
    // Shadowing: at rest once its Event is posted (the status write comes first: a kill
    // between the two loses the Event, see the module docs of src/reconcile/mod.rs)
    event_reasons_with(&c, ns, "s1", "Shadowing").await?;
    ctl.kill();
    ctl = start_controller(env, &vars).await?;
    // Promoting, held with the copies made
    hold(Phase::Restoring, Phase::Promoting).await?;
    shop.promote("s1").await?;
    wait::until(
        "analytics to stop for the promotion",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let stopped = shop.live.url().is_none();
            async move { stopped.then_some(()) }
        },
    )
    .await?;
    let promoting = wait_rr(
        &c,
        ns,
        "s1",
        "Promoting, copies made",
        Duration::from_secs(60),
        held(Phase::Promoting),
    )
    .await?;
    assert!(promoting
        .status
        .as_ref()
        .and_then(|s| s.shadow.as_ref())
        .is_some_and(|s| s.serving_at.is_some()));
    // the copies are made within the step that is refused: wait for the live commits
    let kafka = env.broker.kafka();
    wait::until(
        "the live group to carry the shadow's commits",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let k = kafka.clone();
            async move {
                let (live, shadow) = tokio::task::spawn_blocking(move || {
                    let t = Duration::from_secs(5);
                    let topics = ["orders", "inventory-events"];
                    Some((
                        orderflowctl::committed_offsets(&k, "analytics", &topics, t).ok()?,
                        orderflowctl::committed_offsets(&k, COPY, &topics, t).ok()?,
                    ))
                })
                .await
                .ok()??;
                orderflowctl::copy_changes(&shadow, &live)
                    .is_empty()
                    .then_some(())
            }
        },
    )
    .await?;
    ctl.kill();
    refuse_phase(env, Phase::Restoring, false).await?;
    // CatchingUp, held with the shadow removed
    hold(Phase::Succeeded, Phase::CatchingUp).await?;
    ctl = start_controller(env, &vars).await?;
    wait::until(
        "the copy to be deleted",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let gone = shop.copy.url().is_none();
            async move { gone.then_some(()) }
        },
    )
    .await?;
    shop.shadow_removed().await?;
    let held_at = wait_rr(
        &c,
        ns,
        "s1",
        "still CatchingUp",
        Duration::from_secs(5),
        |o| held(Phase::CatchingUp)(o),
    )
    .await?;
    let removal = held_at
        .status
        .and_then(|s| s.shadow)
        .and_then(|s| s.removed_at);
    assert!(removal.is_none(), "the removal is not recorded yet");
    ctl.kill();
    refuse_phase(env, Phase::Succeeded, false).await?;
    ctl = start_controller(env, &vars).await?;

    let done = wait_rr(&c, ns, "s1", "Succeeded", Duration::from_secs(60), |o| {
        phase(o).is_final()
    })
    .await?;
    assert_eq!(phase(&done), Phase::Succeeded, "{:?}", done.status);
    let reasons = event_reasons_with(&c, ns, "s1", "Succeeded").await?;
    assert_eq!(
        reasons,
        [
            "ShadowStarting",
            "ShadowCatchingUp",
            "Shadowing",
            "Promoting",
            "Restoring",
            "CatchingUp",
            "Succeeded"
        ],
        "one Event per phase: {reasons:?}"
    );
    assert_eq!(
        shop.live.seen(),
        vec![1, 0, 1],
        "analytics scaled down and up once"
    );
    assert_eq!(
        shop.copy.seen(),
        vec![1, 0],
        "the copy created once, then deleted"
    );
    let promoted = metrics_when(&shop.live, "live analytics on the shadow's numbers", |m| {
        m["orders_total"] == 500 && decided(m) == 500
    })
    .await?;
    assert_eq!(promoted["orders_total"], 500);
    shop.shadow_removed().await?;
    ctl.stop(Duration::from_secs(10)).await?;
    shop.shutdown().await;
    Ok(())
}
