//! The load of the fault tests: HTTP clients posting single orders while the fault
//! happens, what they were told, and the check that every accepted order is on `orders`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderflow_events::{Event, DEFAULT_ITEMS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::{topics, wait, Service};
use serde_json::json;

/// What the clients posting orders saw.
#[derive(Default)]
pub struct Tally {
    pub accepted: Mutex<Vec<String>>,
    pub unavailable: AtomicU64,
    pub other: AtomicU64,
}

/// HTTP clients posting single orders until stopped, and what they were told.
pub struct Load {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` clients posting to order-service at `url`.
    pub fn start(url: String, clients: usize) -> Self {
        let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
        let clients = post_orders(url, clients, stop.clone(), tally.clone());
        Self {
            tally,
            stop,
            clients,
        }
    }

    /// Wait until `more` orders beyond those accepted so far are accepted.
    pub async fn accept(&self, more: usize, what: &str) -> anyhow::Result<()> {
        let target = accepted(&self.tally) + more;
        wait::until(
            what,
            Duration::from_secs(LOAD_DEADLINE_SECS),
            Duration::from_millis(20),
            || async { (accepted(&self.tally) >= target).then_some(()) },
        )
        .await
    }

    /// Stop the clients and wait for them to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            c.await?;
        }
        Ok(())
    }
}

/// How long the clients may take to get 1000 orders accepted, before and after a fault.
/// A bound, not a timing target: one order is one `acks=all` round trip, and with three
/// replicas on a loaded CI machine (two test lanes, each starting JVMs) 4 clients were seen
/// getting 902 orders accepted in 60 s.
const LOAD_DEADLINE_SECS: u64 = 240;

/// `clients` tasks posting single orders to `url` until `stop`.
fn post_orders(
    url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (url, stop, tally) = (url.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let item = DEFAULT_ITEMS[(c + i) % DEFAULT_ITEMS.len()];
                    let body =
                        json!({"item": item, "qty": 1 + (i % 3), "user_id": format!("client-{c}")});
                    let r = http
                        .post(format!("{url}/orders"))
                        .json(&body)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 202 => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if let Some(id) = v["order_id"].as_str() {
                                if let Ok(mut a) = tally.accepted.lock() {
                                    a.push(id.to_string());
                                }
                            }
                        }
                        Ok(r) if r.status().as_u16() == 503 => {
                            tally.unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            tally.other.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect()
}

pub fn accepted(tally: &Tally) -> usize {
    tally.accepted.lock().map(|a| a.len()).unwrap_or(0)
}

pub async fn ready_status(svc: &Service) -> u16 {
    svc.get("/readyz").await.map(|(s, _)| s).unwrap_or(0)
}

/// Every order answered 202 is on `orders` exactly once; returns how many records `orders`
/// holds (at least the accepted ones: a request answered 503 may still have reached Kafka,
/// as the outcome of a timed-out send is unknown to the client).
///
/// A request answered 503 because its send timed out *in flight* ("possibly persisted", in
/// librdkafka's words) during a leader change has been seen written twice: the same record
/// (same `event_id`) at consecutive offsets, once in about ten three-node runs. That is
/// allowed here for unaccepted orders only, and counted in the returned total; inventory
/// decides such an order once, by its id (checked by `check_topics_and_analytics`).
pub fn accepted_once_on_orders(kafka: &KafkaConfig, tally: &Tally) -> anyhow::Result<usize> {
    let ids: Vec<String> = tally.accepted.lock().map(|a| a.clone()).unwrap_or_default();
    let on_orders = topics::read_all(kafka, TOPIC_ORDERS)?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &on_orders {
        if let Some(Event::OrderPlaced(o)) = &r.event {
            *seen.entry(o.order_id.to_string()).or_default() += 1;
        }
    }
    let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    let doubled = ids.iter().filter(|id| seen.get(*id) > Some(&1)).count();
    assert_eq!(missing, 0, "accepted orders missing from {TOPIC_ORDERS}");
    assert_eq!(
        doubled, 0,
        "accepted orders on {TOPIC_ORDERS} more than once"
    );
    let unaccepted_twice = seen.values().filter(|n| **n > 1).count();
    if unaccepted_twice > 0 {
        println!("{unaccepted_twice} order(s) answered 503 are on {TOPIC_ORDERS} twice");
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "order ids are unique");
    assert!(on_orders.len() >= ids.len());
    Ok(on_orders.len())
}
